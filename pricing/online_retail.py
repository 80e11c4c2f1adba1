"""Import the UCI *Online Retail* data set into contract v1 tables (products, customers, orders).

The UCI Online Retail file (Chen, Sain & Guo 2012, CC BY 4.0) holds 541,909 invoice lines of a UK
online gift shop, 2010-12-01 to 2011-12-09, with the columns ``InvoiceNo, StockCode, Description,
Quantity, InvoiceDate, UnitPrice, CustomerID, Country``. The shop has no bundles, offers, behaviour
events or competitor prices, so only the three required tables are produced.

Use::

    raw = load_online_retail("online_retail_2010-12_2011-12.csv.gz")
    tables, report = to_contract_tables(raw, cost_ratio=0.6)   # pure, no I/O
    report = import_online_retail(src, "data/online_retail")   # read + convert + write_table

Reading
    CSV or gzip CSV (by content, pandas infers the compression from the name). Every cell is read as
    text. UTF-8 is tried first (the shipped file is UTF-8: it contains "£" in the gift-voucher lines);
    on a decoding error the file is read as Latin-1 (the encoding of the widely copied Kaggle
    ``data.csv``). Column names of the *Online Retail II* release (``Invoice``, ``Price``,
    ``Customer ID``) are accepted as aliases. ``InvoiceDate`` is parsed as ISO 8601
    (``2010-12-01 08:26:00``); values that do not parse that way are tried as ``M/D/YYYY H:MM`` (the
    US layout of the Kaggle copy).

Lines dropped (each line is counted under the first rule it meets, in this order, so that
``input lines = kept lines + sum of dropped lines`` holds exactly):

1. ``malformed``: empty InvoiceNo or StockCode, or a Quantity / UnitPrice / InvoiceDate that does not
   parse. (None in the shipped file.)
2. ``cancellation``: InvoiceNo starting with ``C`` (a cancellation) or Quantity <= 0 (cancellations
   and stock adjustments without a ``C``).
3. ``missing_customer``: no CustomerID (guest or back-office lines: a customer id is required by the
   orders table).
4. ``non_product``: lines that are not the sale of a product. A StockCode is a non-product when
   (a) it is one of the known service codes :data:`SERVICE_CODES` (POST, DOT, M, D, S, B, C2, CRUK,
   PADS, BANK CHARGES, AMAZONFEE, ...), or (b) it contains no digit at all (every real product code of
   this shop starts with five digits; this catches new service codes too), or (c) it starts with
   ``GIFT_`` (gift vouchers ``gift_0001_10`` ... ``gift_0001_50``), or (d) the line's description is a
   known service description (:data:`SERVICE_DESCRIPTIONS`: POSTAGE, CARRIAGE, NEXT DAY CARRIAGE,
   MANUAL, DISCOUNT, ...), which catches services filed under a product-like code (``23444`` *Next
   Day Carriage*, ``23702`` *High Resolution Image*).
5. ``non_positive_price``: UnitPrice <= 0 (free samples, corrections, bad-debt adjustments).

The report also gives, for information, how many lines each rule matches on its own (rules overlap:
most cancellations and non-products also lack a CustomerID).

products
    ``product_id`` = StockCode stripped and upper-cased (the file spells some codes in lower case,
    e.g. ``85123a`` next to ``85123A``: they are the same item). Only products with at least one kept
    line are written.

    ``list_price`` = the **modal UnitPrice** of the item over its kept lines (each line counts once,
    whatever its quantity; ties go to the higher price). UnitPrice varies within an item because of
    quantity breaks (e.g. 2.95 per unit for small quantities, 2.55 from 32 up) and occasional price
    changes and one-off manual prices. The modal line price is the catalogue price most orders pay,
    i.e. the single-unit "list" price: it is robust to the rare manual prices that make the maximum
    useless (the maximum is up to 100x the median for some items), and unlike the median it is always
    a price that was really charged. Consequence: quantity-break lines are priced below list (a
    discount), and the few lines charged above the modal price are priced above list (counted in the
    report).

    ``unit_cost`` = ``cost_ratio`` x ``list_price`` (default 0.6), rounded to 4 decimals. **This is an
    assumption**: the data has no costs. ``0 < cost_ratio <= 1`` is required, so
    ``list_price >= unit_cost > 0`` holds.

    ``category``: one of a dozen product families found from the item's description (its modal
    description over the kept lines, ties alphabetical). The description is split into letter tokens
    (``T-LIGHT HOLDER`` -> ``T``, ``LIGHT``, ``HOLDER``); plural tokens are also looked up in the
    singular (``BAGS`` -> ``BAG``, ``BOXES`` -> ``BOX``, ``DOILIES`` -> ``DOILY``). The *last* token
    that is a keyword of a family decides (in English noun phrases the head noun comes last:
    ``LUNCH BAG RED RETROSPOT`` -> bags, ``HEART T-LIGHT HOLDER`` -> candles_lights,
    ``SET OF 3 CAKE TINS`` -> kitchen_dining). Items with no keyword get ``other``. The families and
    their keywords (:data:`CATEGORY_KEYWORDS`) were drawn from the ~400 most frequent nouns of the
    item descriptions of this file; colours, materials, motifs and sizes are deliberately not
    keywords, and ``LIGHT``/``DARK``/``PALE`` before a colour (``BOWL LIGHT BLUE``) is skipped. It is a
    heuristic: about 15% of the items (13% of the order lines) end up in ``other``, and some items
    land in a debatable family (a hot water bottle counts as kitchen_dining).

customers
    ``customer_id`` = CustomerID as an integer-looking string (``17850``, not ``17850.0``: the file
    stores the ids as floats). ``region`` = Country: the country on most of the customer's kept lines
    (ties alphabetical; a handful of customers order under two countries); ``Unspecified`` becomes
    empty (null). ``signup_date`` = date of the customer's first kept purchase (the data has no sign-up
    date). Only customers with at least one kept line are written.

orders
    One row per kept invoice line: ``order_id`` = InvoiceNo, ``order_time`` = InvoiceDate,
    ``customer_id``, ``product_id``, ``quantity`` (int >= 1), ``unit_price`` (UnitPrice, > 0) and an
    empty ``bundle_id`` (the shop sold no bundles). InvoiceDate is UK local time (GMT in winter, BST =
    UTC+1 from 2011-03-27 to 2011-10-30); it is **treated as UTC** and written naive, which the
    contract reads as UTC, so summer timestamps are one hour late. Lines are kept as they are: an
    invoice that lists the same StockCode on several lines keeps all of them (also exact duplicate
    lines, which may be real repeated scans; basket mining uses distinct products per order anyway),
    and the few invoices whose lines carry two different minutes keep each line's own time. Both are
    counted in the report.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pricing.io import write_table

#: The columns of the raw file.
RAW_COLUMNS: tuple[str, ...] = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)

#: Names of the *Online Retail II* release accepted for the same columns.
COLUMN_ALIASES: dict[str, str] = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}

#: StockCodes known to be services, fees or adjustments rather than products (upper case).
SERVICE_CODES: frozenset[str] = frozenset(
    {
        "POST",  # postage
        "DOT",  # dotcom postage
        "C2",  # carriage
        "M",  # manual (price corrections, ad-hoc lines)
        "D",  # discount
        "S",  # samples
        "B",  # adjust bad debt
        "CRUK",  # Cancer Research UK commission
        "PADS",  # "pads to match all cushions", charged at 0.001
        "BANK CHARGES",
        "AMAZONFEE",
    }
)

#: Descriptions (upper case, blanks collapsed) of service lines, whatever their StockCode.
SERVICE_DESCRIPTIONS: frozenset[str] = frozenset(
    {
        "POSTAGE",
        "DOTCOM POSTAGE",
        "CARRIAGE",
        "NEXT DAY CARRIAGE",
        "MANUAL",
        "DISCOUNT",
        "SAMPLES",
        "BANK CHARGES",
        "AMAZON FEE",
        "CRUK COMMISSION",
        "ADJUST BAD DEBT",
        "HIGH RESOLUTION IMAGE",
    }
)

#: Product families and the description keywords (singular, upper case) that put an item in them.
# fmt: off
CATEGORY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "bags": ("BAG", "HANDBAG", "WASHBAG", "TOTE", "SHOPPER", "PURSE", "WALLET", "BACKPACK", "RUCKSACK"),
    "candles_lights": (
        "CANDLE", "CANDLEHOLDER", "CANDLEPOT", "CANDLESTICK", "LIGHT", "TEALIGHT", "LANTERN", "LAMP",
        "LAMPSHADE", "CHANDELIER", "INCENSE", "VOTIVE", "NIGHTLIGHT",
    ),
    "jewellery_accessories": (
        "NECKLACE", "NECKL", "BRACELET", "EARRING", "RING", "KEYRING", "CHARM", "BEAD", "PENDANT", "BROOCH",
        "JEWEL", "JEWELLERY", "HAIR", "HAIRCLIP", "SLIDE", "SCARF", "UMBRELLA", "GLOVE", "SLIPPER", "SOCK",
        "WARMER", "HANDWARMER", "COMPACT",
    ),
    "kitchen_dining": (
        "MUG", "CUP", "SAUCER", "BOWL", "PLATE", "DISH", "JUG", "BEAKER", "TEAPOT", "CUTLERY", "SPOON",
        "FORK", "TRAY", "NAPKIN", "PLACEMAT", "COASTER", "CAKESTAND", "TIN", "JAR", "BOTTLE", "APRON",
        "MOULD", "KITCHEN", "BAKING", "BOARD", "TOWEL", "PAN", "SCALES", "DOILY", "LUNCHBOX", "GLASSES", "TUMBLER",
        "STRAW", "CAKE", "TEACUP", "CUTTER", "OVEN", "EGGCUP", "RECIPE", "CHOPSTICK", "BREADBIN",
    ),
    "stationery_wrap": (
        "CARD", "WRAP", "NOTEBOOK", "PENCIL", "PEN", "STICKER", "TISSUE", "RIBBON", "TAPE", "ENVELOPE",
        "CALENDAR", "SKETCHBOOK", "JOURNAL", "BOOK", "NOTEPAD", "ALBUM", "STATIONERY", "ERASER",
        "RULER", "TAG", "INVITE", "CHALK", "CRAYON", "STAMP", "SHARPENER", "MARKER", "CONFETTI",
    ),
    "decorations": (
        "DECORATION", "GARLAND", "BUNTING", "WREATH", "BAUBLE", "ORNAMENT", "TREE", "ANGEL", "STOCKING",
        "ADVENT", "CRACKER", "BALLOON", "BELL", "CHAIN", "MOBILE", "WINDMILL", "FLAG", "HANGER",
    ),
    "home_decor": (
        "SIGN", "PLAQUE", "FRAME", "MIRROR", "CLOCK", "HOOK", "CUSHION", "COVER", "DOORMAT", "MAT",
        "DOORSTOP", "DRAWER", "KNOB", "CABINET", "SHELF", "CURTAIN", "VASE", "PICTURE", "TILE",
        "THERMOMETER", "QUILT", "THROW", "BIN", "MAGNET", "DOORSIGN", "PEG", "RACK", "FAN", "BLANKET",
    ),
    "storage": (
        "BOX", "BASKET", "TRUNK", "CONTAINER", "STORAGE", "CHEST", "CRATE", "BUCKET", "ORGANISER", "TIDY",
        "HAMPER", "CADDY", "POUFFE",
    ),
    "toys_games": (
        "TOY", "GAME", "JIGSAW", "PUZZLE", "DOLL", "TEDDY", "SOLDIER", "KIT", "BALL", "SKITTLE", "DOMINO",
        "SPINNING", "YOYO", "PLAYHOUSE", "PUPPET", "KNITTING", "HARMONICA", "MASK", "BUBBLE", "ROCKET",
        "SNAKE", "LUDO", "MARBLE", "TATTOO", "CROCHET",
    ),
    "garden": (
        "PLANTER", "WATERING", "PARASOL", "BIRDHOUSE", "FEEDER", "TRUG", "SEED", "GNOME", "HERB",
        "GARDENING", "POTTING", "SHED", "BIRDBATH", "TROWEL",
    ),
    "bath_beauty": (
        "SOAP", "BATH", "FLANNEL", "COSMETIC", "MAKEUP", "LIPSTICK", "NAIL", "TOILETRY", "SPONGE", "BALM",
        "SCENT", "PERFUME",
    ),
}
# fmt: on

OTHER_CATEGORY = "other"

_SHADE_WORDS = frozenset({"LIGHT", "DARK", "PALE"})
_COLOUR_WORDS = frozenset(
    {"BLUE", "PINK", "GREEN", "RED", "YELLOW", "PURPLE", "GREY", "BROWN", "ORANGE", "IVORY", "GOLD", "LILAC"}
)

_KEYWORD_TO_CATEGORY: dict[str, str] = {kw: cat for cat, kws in CATEGORY_KEYWORDS.items() for kw in kws}

#: The order in which drop rules are applied (each line is counted under the first it meets).
DROP_RULES: tuple[str, ...] = (
    "malformed",
    "cancellation",
    "missing_customer",
    "non_product",
    "non_positive_price",
)

_DROP_RULE_TEXT: dict[str, str] = {
    "malformed": "empty InvoiceNo/StockCode or unparseable Quantity, UnitPrice or InvoiceDate",
    "cancellation": "InvoiceNo starts with C or Quantity <= 0",
    "missing_customer": "no CustomerID",
    "non_product": "service/fee/voucher StockCode or service description",
    "non_positive_price": "UnitPrice <= 0",
}

ASSUMPTIONS: tuple[str, ...] = (
    "unit_cost = cost_ratio x list_price: the data has no costs, the ratio is an assumption",
    "list_price = modal UnitPrice of the item over its kept lines (ties: higher price)",
    "InvoiceDate is UK local time (GMT/BST) and is treated as UTC (summer times are one hour late)",
    "signup_date = date of the customer's first kept purchase (the data has no sign-up date)",
    "region = the customer's most frequent Country (ties alphabetical); 'Unspecified' -> empty",
    "category = product family of the last family keyword in the item's modal description, else 'other'",
    "lines are kept as they are: repeated (InvoiceNo, StockCode) lines are not merged",
    "no bundles, offers, events or competitor prices: the shop has none",
)


@dataclass
class ImportReport:
    """What the import did: lines read, dropped per rule, handled, rows written, assumptions."""

    input_lines: int = 0
    kept_lines: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {r: 0 for r in DROP_RULES})
    matched: dict[str, int] = field(default_factory=dict)  # lines matching each rule on its own
    handled: dict[str, int] = field(default_factory=dict)  # kept lines / entities fixed or kept as is
    non_product_codes: dict[str, int] = field(default_factory=dict)  # dropped non-product lines by code
    rows_written: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)  # products per category
    cost_ratio: float = 0.6
    assumptions: list[str] = field(default_factory=lambda: list(ASSUMPTIONS))
    source: str | None = None
    encoding: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None

    @property
    def dropped_lines(self) -> int:
        return int(sum(self.dropped.values()))

    @property
    def balanced(self) -> bool:
        """True when every input line is either kept or counted under exactly one drop rule."""
        return self.input_lines == self.kept_lines + self.dropped_lines

    def to_markdown(self) -> str:
        lines = ["# Online Retail import", ""]
        if self.source:
            lines.append(
                f"- source: `{self.source}`" + (f" (encoding {self.encoding})" if self.encoding else "")
            )
        lines.append(f"- input lines: {self.input_lines:,}")
        lines.append(f"- kept lines: {self.kept_lines:,}")
        lines.append(f"- dropped lines: {self.dropped_lines:,}")
        lines.append(f"- cost ratio (assumed): {self.cost_ratio:g}")
        if self.seconds is not None:
            lines.append(f"- time: {self.seconds:.1f} s")
        lines += [
            "",
            "## Dropped lines (first matching rule, in this order)",
            "",
            "| rule | meaning | lines dropped | lines matching the rule alone |",
            "|---|---|---:|---:|",
        ]
        for rule in DROP_RULES:
            lines.append(
                f"| {rule} | {_DROP_RULE_TEXT[rule]} | {self.dropped.get(rule, 0):,} | {self.matched.get(rule, 0):,} |"
            )
        lines.append(f"| **total** | | **{self.dropped_lines:,}** | |")
        if self.non_product_codes:
            lines += [
                "",
                "## Non-product lines dropped, by StockCode",
                "",
                "| StockCode | lines |",
                "|---|---:|",
            ]
            lines += [f"| {code} | {n:,} |" for code, n in self.non_product_codes.items()]
        if self.handled:
            lines += ["", "## Handled and kept", "", "| what | count |", "|---|---:|"]
            lines += [f"| {k.replace('_', ' ')} | {v:,} |" for k, v in self.handled.items()]
        if self.rows_written:
            lines += ["", "## Rows written", "", "| table | rows | file |", "|---|---:|---|"]
            lines += [f"| {t} | {n:,} | {self.files.get(t, '')} |" for t, n in self.rows_written.items()]
        if self.categories:
            lines += ["", "## Products per category", "", "| category | products |", "|---|---:|"]
            lines += [f"| {c} | {n:,} |" for c, n in self.categories.items()]
        lines += ["", "## Assumptions", ""]
        lines += [f"- {a}" for a in self.assumptions]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
def load_online_retail(src: str | Path, nrows: int | None = None) -> pd.DataFrame:
    """Read the raw file (CSV or gzip CSV) with every cell as text; empty cells are null.

    UTF-8 first, Latin-1 on a decoding error; the encoding used and the source are kept in
    ``df.attrs`` (read by :func:`to_contract_tables` for the report). ``nrows`` reads only the first
    lines (tests).
    """
    path = Path(src)
    df = None
    used = None
    for enc in ("utf-8", "latin-1"):
        try:
            df = pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""], encoding=enc, nrows=nrows
            )
            used = enc
            break
        except UnicodeDecodeError:
            continue
    assert df is not None  # latin-1 decodes any byte string
    df.columns = [str(c).strip() for c in df.columns]
    df = df.rename(
        columns={k: v for k, v in COLUMN_ALIASES.items() if k in df.columns and v not in df.columns}
    )
    missing = [c for c in RAW_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name} is not an Online Retail file: missing column(s) {', '.join(missing)}")
    df.attrs["source"] = str(path)
    df.attrs["encoding"] = used
    return df


# --------------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------------
def _text(s: pd.Series) -> pd.Series:
    """Stripped text with empty -> null."""
    out = s.astype("string").str.strip()
    return out.mask(out == "")


def _parse_time(s: pd.Series) -> pd.Series:
    t = pd.to_datetime(s, format="ISO8601", errors="coerce")
    miss = t.isna() & s.notna()
    if miss.any():
        alt = pd.to_datetime(s[miss], format="%m/%d/%Y %H:%M", errors="coerce")
        t = t.where(~miss, alt)
    if isinstance(t.dtype, pd.DatetimeTZDtype):
        t = t.dt.tz_convert("UTC").dt.tz_localize(None)
    return t.astype("datetime64[s]")


def _clean_customer_id(s: pd.Series) -> pd.Series:
    """``17850.0`` -> ``17850`` (the file stores ids as floats); other ids are kept stripped."""
    return s.str.replace(r"^(\d+)\.0*$", r"\1", regex=True)


def is_non_product(code: pd.Series, description: pd.Series) -> pd.Series:
    """True where a line is a service, fee, voucher or adjustment rather than a product.

    ``code`` must already be stripped and upper-cased. See the module docstring for the rules.
    """
    code = code.astype("string")
    desc = description.astype("string").str.upper().str.split().str.join(" ")
    out = (
        code.isin(SERVICE_CODES)
        | ~code.str.contains(r"\d", regex=True)
        | code.str.startswith("GIFT_")
        | desc.isin(SERVICE_DESCRIPTIONS)
    )
    return out.fillna(False).astype(bool)


def _tokens(description: str) -> list[str]:
    return re.findall(r"[A-Z]+", str(description).upper())


def category_of(description: str | None) -> str:
    """Product family of a description: the last token that is a family keyword, else ``other``."""
    if description is None or (isinstance(description, float) and np.isnan(description)):
        return OTHER_CATEGORY
    toks = _tokens(description)
    for i in range(len(toks) - 1, -1, -1):
        tok = toks[i]
        if tok in _SHADE_WORDS and i + 1 < len(toks) and toks[i + 1] in _COLOUR_WORDS:
            continue  # "LIGHT BLUE" is a colour, not a light
        for cand in _singular_forms(tok):
            cat = _KEYWORD_TO_CATEGORY.get(cand)
            if cat is not None:
                return cat
    return OTHER_CATEGORY


def _singular_forms(tok: str) -> tuple[str, ...]:
    forms = [tok]
    if len(tok) > 3 and tok.endswith("IES"):
        forms.append(tok[:-3] + "Y")
    if len(tok) > 3 and tok.endswith("ES"):
        forms.append(tok[:-2])
    if len(tok) > 3 and tok.endswith("S") and not tok.endswith("SS"):
        forms.append(tok[:-1])
    return tuple(forms)


def _mode_per_key(df: pd.DataFrame, key: str, value: str, ascending_value: bool) -> pd.Series:
    """Most frequent ``value`` per ``key`` (rows count once); ties broken by sorting ``value``."""
    counts = df.groupby([key, value], observed=True, sort=False).size().rename("n").reset_index()
    counts = counts.sort_values([key, "n", value], ascending=[True, False, ascending_value], kind="mergesort")
    first = counts.drop_duplicates(key, keep="first")
    return first.set_index(key)[value]


def to_contract_tables(
    raw: pd.DataFrame, cost_ratio: float = 0.6
) -> tuple[dict[str, pd.DataFrame], ImportReport]:
    """Turn the raw Online Retail lines into contract tables ``products``, ``customers``, ``orders``.

    Pure: ``raw`` is not modified and nothing is written. See the module docstring for every rule.
    """
    if not (0 < cost_ratio <= 1):
        raise ValueError(
            f"cost_ratio must be in (0, 1] so that list_price >= unit_cost > 0, got {cost_ratio}"
        )
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"raw data lacks column(s) {', '.join(missing)}")
    report = ImportReport(
        cost_ratio=cost_ratio, source=raw.attrs.get("source"), encoding=raw.attrs.get("encoding")
    )
    n = len(raw)
    report.input_lines = n

    invoice = _text(raw["InvoiceNo"]).reset_index(drop=True)
    code_raw = raw["StockCode"].astype("string").reset_index(drop=True)
    code = _text(code_raw).str.upper()
    desc = _text(raw["Description"]).reset_index(drop=True)
    qty_num = pd.to_numeric(raw["Quantity"].reset_index(drop=True), errors="coerce")
    price = pd.to_numeric(raw["UnitPrice"].reset_index(drop=True), errors="coerce").astype("float64")
    when = _parse_time(raw["InvoiceDate"].reset_index(drop=True))
    customer = _clean_customer_id(_text(raw["CustomerID"]).reset_index(drop=True))
    country = _text(raw["Country"]).reset_index(drop=True)

    qty_ok = qty_num.notna() & (qty_num % 1 == 0)
    rules: dict[str, np.ndarray] = {
        "malformed": (invoice.isna() | code.isna() | ~qty_ok | price.isna() | when.isna()).to_numpy(
            dtype=bool, na_value=True
        ),
        "cancellation": (invoice.str.upper().str.startswith("C") | (qty_num <= 0)).to_numpy(
            dtype=bool, na_value=False
        ),
        "missing_customer": customer.isna().to_numpy(dtype=bool),
        "non_product": is_non_product(code, desc).to_numpy(dtype=bool) & code.notna().to_numpy(dtype=bool),
        "non_positive_price": (price <= 0).to_numpy(dtype=bool, na_value=False),
    }
    remaining = np.ones(n, dtype=bool)
    for rule in DROP_RULES:
        hit = rules[rule] & remaining
        report.dropped[rule] = int(hit.sum())
        report.matched[rule] = int(rules[rule].sum())
        if rule == "non_product":
            report.non_product_codes = {str(k): int(v) for k, v in code[hit].value_counts().items()}
        remaining &= ~hit
    keep = remaining
    report.kept_lines = int(keep.sum())

    lines = pd.DataFrame(
        {
            "order_id": invoice[keep].astype(str).to_numpy(),
            "order_time": when[keep].to_numpy(),
            "customer_id": customer[keep].astype(str).to_numpy(),
            "product_id": code[keep].astype(str).to_numpy(),
            "quantity": qty_num[keep].astype("int64").to_numpy(),
            "unit_price": price[keep].to_numpy(),
        }
    )
    lines_desc = desc[keep].fillna("").astype(str).to_numpy()
    lines_country = country[keep].fillna("").astype(str).to_numpy()

    # ---- products ------------------------------------------------------------------------------
    list_price = _mode_per_key(lines, "product_id", "unit_price", ascending_value=False)
    pdesc = _mode_per_key(
        pd.DataFrame({"product_id": lines["product_id"], "description": lines_desc}),
        "product_id",
        "description",
        ascending_value=True,
    )
    products = pd.DataFrame({"product_id": list_price.index.astype(str)})
    products["description"] = products["product_id"].map(pdesc)
    products["category"] = [category_of(d) for d in products["description"]]
    products["list_price"] = products["product_id"].map(list_price).astype("float64")
    cost = (products["list_price"] * cost_ratio).round(4)
    cost = cost.where(cost > 0, products["list_price"] * cost_ratio)  # tiny prices: do not round to 0
    products["unit_cost"] = np.minimum(cost, products["list_price"])
    products = products[["product_id", "category", "unit_cost", "list_price"]].sort_values("product_id")
    products = products.reset_index(drop=True)

    # ---- customers -----------------------------------------------------------------------------
    cframe = pd.DataFrame({"customer_id": lines["customer_id"], "country": lines_country})
    region = _mode_per_key(cframe, "customer_id", "country", ascending_value=True)
    first = lines.groupby("customer_id", sort=True)["order_time"].min()
    customers = pd.DataFrame({"customer_id": first.index.astype(str)})
    customers["signup_date"] = first.dt.floor("D").dt.date.to_numpy()
    reg = customers["customer_id"].map(region).astype("string")
    unspecified = (reg.isna() | reg.str.strip().isin(["", "Unspecified"])).fillna(True)
    customers["region"] = reg.mask(unspecified)
    customers = customers.reset_index(drop=True)

    # ---- orders --------------------------------------------------------------------------------
    orders = lines.copy()
    orders["bundle_id"] = pd.Series(pd.array([None] * len(orders), dtype="string"))
    orders = orders[
        ["order_id", "order_time", "customer_id", "product_id", "quantity", "unit_price", "bundle_id"]
    ]

    # ---- report: what was handled and kept -----------------------------------------------------
    changed_code = (code_raw.fillna("") != code.fillna(""))[keep]
    raw_cust = raw["CustomerID"].astype("string").str.strip().reset_index(drop=True)[keep]
    lp = orders["product_id"].map(list_price).to_numpy()
    repeated = orders.duplicated(["order_id", "product_id"], keep="first")
    exact = orders.duplicated(
        ["order_id", "product_id", "order_time", "quantity", "unit_price"], keep="first"
    )
    inv_times = orders.groupby("order_id")["order_time"].nunique()
    n_countries = cframe.groupby("customer_id")["country"].nunique()
    n_desc = pd.DataFrame({"p": lines["product_id"], "d": lines_desc}).groupby("p")["d"].nunique()
    n_price = lines.groupby("product_id")["unit_price"].nunique()
    report.handled = {
        "kept_lines_with_stockcode_case_or_blanks_normalised": int(changed_code.sum()),
        "kept_lines_with_customer_id_float_suffix_removed": int((raw_cust != customer[keep]).sum()),
        "kept_lines_repeating_an_order_product_pair": int(repeated.sum()),
        "of_which_exact_duplicate_lines": int(exact.sum()),
        "invoices_with_lines_at_several_times": int((inv_times > 1).sum()),
        "customers_with_several_countries": int((n_countries > 1).sum()),
        "customers_with_unspecified_region": int(unspecified.sum()),
        "products_with_several_descriptions": int((n_desc > 1).sum()),
        "products_with_several_unit_prices": int((n_price > 1).sum()),
        "order_lines_below_list_price": int((orders["unit_price"].to_numpy() < lp - 1e-9).sum()),
        "order_lines_above_list_price": int((orders["unit_price"].to_numpy() > lp + 1e-9).sum()),
    }
    report.categories = {str(k): int(v) for k, v in products["category"].value_counts().items()}
    tables = {"products": products, "customers": customers, "orders": orders.reset_index(drop=True)}
    report.rows_written = {t: len(df) for t, df in tables.items()}
    return tables, report


def import_online_retail(
    src: str | Path, out_dir: str | Path, cost_ratio: float = 0.6, fmt: str = "csv"
) -> ImportReport:
    """Read ``src``, convert it (:func:`to_contract_tables`) and write the tables into ``out_dir``."""
    t0 = time.perf_counter()
    raw = load_online_retail(src)
    tables, report = to_contract_tables(raw, cost_ratio=cost_ratio)
    for name in ("products", "customers", "orders"):
        report.files[name] = str(write_table(tables[name], out_dir, name, fmt=fmt))
    report.seconds = time.perf_counter() - t0
    return report
