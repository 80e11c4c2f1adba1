"""Import of the UCI Online Retail data set into contract tables (pricing.online_retail).

Tests on the real file use its first 30,000 lines and are skipped when the file is absent (it lives
beside the repo in ``../shared/datasets/online_retail/`` or wherever ``ONLINE_RETAIL_CSV`` points).
The synthetic tests always run.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pandas as pd
import pytest

from pricing.contract import TABLES
from pricing.io import read_raw_table
from pricing.online_retail import (
    DROP_RULES,
    SERVICE_CODES,
    ImportReport,
    category_of,
    import_online_retail,
    is_non_product,
    load_online_retail,
    to_contract_tables,
)

REPO = Path(__file__).resolve().parents[1]
FILE_NAME = "online_retail_2010-12_2011-12.csv.gz"
SLICE_LINES = 30_000


def dataset_path() -> Path | None:
    env = os.environ.get("ONLINE_RETAIL_CSV")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "datasets" / "online_retail" / FILE_NAME)
    return next((c for c in candidates if c.exists()), None)


@pytest.fixture(scope="module")
def src() -> Path:
    path = dataset_path()
    if path is None:
        pytest.skip(
            f"Online Retail file not found (../shared/datasets/online_retail/{FILE_NAME} or $ONLINE_RETAIL_CSV)"
        )
    return path


@pytest.fixture(scope="module")
def raw_slice(src: Path) -> pd.DataFrame:
    return load_online_retail(src, nrows=SLICE_LINES)


@pytest.fixture(scope="module")
def converted(raw_slice: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], ImportReport]:
    return to_contract_tables(raw_slice, cost_ratio=0.6)


# --------------------------------------------------------------------------------------------------
# helpers: contract checks shared by the slice and full-file tests
# --------------------------------------------------------------------------------------------------
def assert_contract_tables(tables: dict[str, pd.DataFrame], report: ImportReport) -> None:
    products, customers, orders = tables["products"], tables["customers"], tables["orders"]
    assert set(tables) == {"products", "customers", "orders"}
    for name, df in tables.items():
        spec = TABLES[name]
        assert [c for c in spec.column_names if c in df.columns] == list(df.columns), name
        assert all(c.name in df.columns for c in spec.columns if c.required), name
        for c in spec.columns:
            if c.name in df.columns and not c.nullable:
                assert df[c.name].notna().all(), f"{name}.{c.name} has nulls"
    # report adds up
    assert report.balanced
    assert report.input_lines == report.kept_lines + sum(report.dropped[r] for r in DROP_RULES)
    assert report.rows_written == {
        "products": len(products),
        "customers": len(customers),
        "orders": len(orders),
    }
    assert len(orders) == report.kept_lines
    # keys and references
    assert products["product_id"].is_unique
    assert customers["customer_id"].is_unique
    assert orders["product_id"].isin(products["product_id"]).all()
    assert orders["customer_id"].isin(customers["customer_id"]).all()
    assert set(products["product_id"]) == set(orders["product_id"])  # no product without a kept line
    assert set(customers["customer_id"]) == set(orders["customer_id"])
    assert orders["bundle_id"].isna().all()
    # prices and costs
    assert (products["unit_cost"] > 0).all()
    assert (products["list_price"] >= products["unit_cost"]).all()
    assert (orders["unit_price"] > 0).all()
    assert (orders["quantity"] >= 1).all()
    assert pd.api.types.is_integer_dtype(orders["quantity"])
    assert pd.api.types.is_float_dtype(orders["unit_price"])
    assert pd.api.types.is_datetime64_any_dtype(orders["order_time"])
    # ids are clean strings
    for df, col in (
        (products, "product_id"),
        (customers, "customer_id"),
        (orders, "order_id"),
        (orders, "customer_id"),
        (orders, "product_id"),
    ):
        values = df[col]
        assert values.map(type).eq(str).all(), col
        assert not values.str.endswith(".0").any(), col
        assert (values == values.str.strip()).all(), col
    assert customers["customer_id"].str.fullmatch(r"\d+").all()
    assert (products["product_id"] == products["product_id"].str.upper()).all()
    # nothing that should have been dropped survived
    assert not orders["order_id"].str.upper().str.startswith("C").any()
    pid = orders["product_id"]
    assert not pid.isin(SERVICE_CODES).any()
    assert pid.str.contains(r"\d").all()
    assert not pid.str.startswith("GIFT_").any()
    # signup date = first purchase
    first = orders.groupby("customer_id")["order_time"].min().dt.date
    assert (customers.set_index("customer_id")["signup_date"] == first).all()


# --------------------------------------------------------------------------------------------------
# real data: a 30k-line slice
# --------------------------------------------------------------------------------------------------
def test_slice_satisfies_contract(raw_slice, converted):
    tables, report = converted
    assert report.input_lines == SLICE_LINES == len(raw_slice)
    assert_contract_tables(tables, report)
    assert report.kept_lines > 0.5 * SLICE_LINES
    for rule in ("cancellation", "missing_customer", "non_product"):
        assert report.dropped[rule] > 0, rule  # the slice holds each kind of mess
    assert report.encoding == "utf-8"


def test_slice_drops_match_raw_lines(raw_slice, converted):
    """Independent recount of the drop rules on the raw text."""
    _, report = converted
    inv = raw_slice["InvoiceNo"].str.strip()
    qty = pd.to_numeric(raw_slice["Quantity"])
    cancel = inv.str.startswith("C") | (qty <= 0)
    assert report.matched["cancellation"] == int(cancel.sum())
    assert report.dropped["cancellation"] == int(cancel.sum())
    no_cust = raw_slice["CustomerID"].isna()
    assert report.matched["missing_customer"] == int(no_cust.sum())
    assert report.dropped["missing_customer"] == int((no_cust & ~cancel).sum())
    # every kept line comes from a raw line that passes all rules, in order
    kept = raw_slice[~cancel & ~no_cust]
    code = kept["StockCode"].str.strip().str.upper()
    service = is_non_product(code, kept["Description"])
    assert report.dropped["non_product"] == int(service.sum())
    kept = kept[~service]
    assert report.dropped["non_positive_price"] == int((pd.to_numeric(kept["UnitPrice"]) <= 0).sum())
    assert report.kept_lines == int((pd.to_numeric(kept["UnitPrice"]) > 0).sum())
    # POST lines with a customer are in the slice and are dropped as non-products
    assert report.non_product_codes.get("POST", 0) > 0


def test_slice_is_pure(raw_slice):
    before = raw_slice.copy()
    to_contract_tables(raw_slice)
    pd.testing.assert_frame_equal(raw_slice, before)


def test_slice_list_price_is_modal_price(raw_slice, converted):
    tables, _ = converted
    products, orders = tables["products"], tables["orders"]
    counts = orders.groupby(["product_id", "unit_price"]).size().rename("n").reset_index()
    top = counts.sort_values(["product_id", "n", "unit_price"], ascending=[True, False, False])
    modal = top.drop_duplicates("product_id").set_index("product_id")["unit_price"]
    lp = products.set_index("product_id")["list_price"]
    pd.testing.assert_series_equal(lp.sort_index(), modal.sort_index(), check_names=False)
    assert (products["unit_cost"] - (0.6 * products["list_price"]).round(4)).abs().max() < 1e-9
    assert products["category"].nunique() <= 13
    assert (products["category"] != "other").mean() > 0.6


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_written_files_readable(src, tmp_path, fmt):
    raw = load_online_retail(src, nrows=5_000)
    tables, _ = to_contract_tables(raw)
    # import_online_retail reads the whole file; write the slice the same way it does
    from pricing.io import write_table

    for name, df in tables.items():
        path = write_table(df, tmp_path, name, fmt=fmt)
        back = read_raw_table(path, name)
        assert len(back) == len(df)
        assert list(back.columns) == list(df.columns)
        for col in ("product_id", "customer_id", "order_id"):
            if col in back.columns:
                got = back[col].astype(str)
                assert not got.str.endswith(".0").any()
                assert got.tolist() == df[col].tolist()
    orders = read_raw_table(tmp_path / f"orders.{fmt}", "orders")
    assert orders["bundle_id"].isna().all()
    if fmt == "csv":
        assert orders["order_time"].iloc[0] == "2010-12-01 08:26:00"
        customers = read_raw_table(tmp_path / "customers.csv", "customers")
        assert customers["signup_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()


# --------------------------------------------------------------------------------------------------
# synthetic lines: every rule, exact counts
# --------------------------------------------------------------------------------------------------
COLS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]


def _raw(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLS, dtype=object).astype("string")
    return df.mask(df == "")


SYNTHETIC = _raw(
    [
        # kept
        (
            "536365",
            "85123A",
            "WHITE HANGING HEART T-LIGHT HOLDER",
            "6",
            "2010-12-01 08:26:00",
            "2.55",
            "17850.0",
            "United Kingdom",
        ),
        (
            "536366",
            "85123a",
            "WHITE HANGING HEART T-LIGHT HOLDER",
            "1",
            "2010-12-02 09:00:00",
            "2.95",
            "17850.0",
            "United Kingdom",
        ),
        (
            "536367",
            "85123A",
            "WHITE HANGING HEART T-LIGHT HOLDER",
            "2",
            "2010-12-03 10:00:00",
            "2.95",
            "12583.0",
            "France",
        ),
        (
            "536367",
            "85123A",
            "WHITE HANGING HEART T-LIGHT HOLDER",
            "2",
            "2010-12-03 10:00:00",
            "2.95",
            "12583.0",
            "France",
        ),
        (
            "536368",
            "22423",
            "REGENCY CAKESTAND 3 TIER",
            "1",
            "2010-12-04 11:00:00",
            "12.75",
            "12583",
            "Germany",
        ),
        (
            "536368",
            "22424",
            "LUNCH BAG RED RETROSPOT",
            "3",
            "2010-12-04 11:00:00",
            "1.65",
            "12583",
            "Germany",
        ),
        ("536369", "22425", "ODD THING", "3", "2010-12-05 11:00:00", "1.00", "13000.0", "Unspecified"),
        ("536369", "22425", "ODD THING", "3", "2010-12-05 11:00:00", "2.00", "13000.0", "Unspecified"),
        # malformed
        (
            "536370",
            "22423",
            "REGENCY CAKESTAND 3 TIER",
            "two",
            "2010-12-05 11:00:00",
            "12.75",
            "13000.0",
            "France",
        ),
        ("536370", "22423", "REGENCY CAKESTAND 3 TIER", "1", "not a date", "12.75", "13000.0", "France"),
        # cancellations
        (
            "C536371",
            "22423",
            "REGENCY CAKESTAND 3 TIER",
            "-1",
            "2010-12-06 11:00:00",
            "12.75",
            "17850.0",
            "United Kingdom",
        ),
        ("536372", "22423", "damaged", "-12", "2010-12-06 11:00:00", "0", "", "United Kingdom"),
        # missing customer (also a non-product: counted once, as missing customer)
        (
            "536373",
            "22423",
            "REGENCY CAKESTAND 3 TIER",
            "1",
            "2010-12-06 11:00:00",
            "24.96",
            "",
            "United Kingdom",
        ),
        ("536373", "DOT", "DOTCOM POSTAGE", "1", "2010-12-06 11:00:00", "500.0", "", "United Kingdom"),
        # non-products with a customer
        ("536374", "POST", "POSTAGE", "3", "2010-12-07 11:00:00", "18.0", "12583.0", "France"),
        ("536374", "C2", "CARRIAGE", "1", "2010-12-07 11:00:00", "50.0", "12583.0", "France"),
        (
            "536374",
            "gift_0001_20",
            "Dotcomgiftshop Gift Voucher £20.00",
            "1",
            "2010-12-07 11:00:00",
            "16.67",
            "12583.0",
            "France",
        ),
        ("536374", "23444", "Next Day Carriage", "1", "2010-12-07 11:00:00", "15.0", "12583.0", "France"),
        ("536374", "NEWFEE", "Some new fee", "1", "2010-12-07 11:00:00", "5.0", "12583.0", "France"),
        # non-positive price
        (
            "536375",
            "22423",
            "REGENCY CAKESTAND 3 TIER",
            "1",
            "2010-12-08 11:00:00",
            "0.0",
            "12583.0",
            "France",
        ),
    ]
)


def test_synthetic_counts_and_rules():
    tables, report = to_contract_tables(SYNTHETIC, cost_ratio=0.5)
    assert report.input_lines == 20
    assert report.dropped == {
        "malformed": 2,
        "cancellation": 2,
        "missing_customer": 2,
        "non_product": 5,
        "non_positive_price": 1,
    }
    assert report.kept_lines == 8
    assert report.matched["missing_customer"] == 3
    assert report.matched["non_product"] == 6
    assert report.non_product_codes == {"POST": 1, "C2": 1, "GIFT_0001_20": 1, "23444": 1, "NEWFEE": 1}
    assert_contract_tables(tables, report)

    products = tables["products"].set_index("product_id")
    assert sorted(products.index) == ["22423", "22424", "22425", "85123A"]  # 85123a merged into 85123A
    assert products.loc["85123A", "list_price"] == 2.95  # modal line price (3 of 4 lines), not the 2.55 break
    assert products.loc["22425", "list_price"] == 2.00  # tie -> higher price
    assert products.loc["22423", "unit_cost"] == pytest.approx(6.375)
    assert products.loc["85123A", "category"] == "candles_lights"
    assert products.loc["22424", "category"] == "bags"
    assert products.loc["22423", "category"] == "kitchen_dining"
    assert products.loc["22425", "category"] == "other"

    customers = tables["customers"].set_index("customer_id")
    assert sorted(customers.index) == ["12583", "13000", "17850"]
    assert (
        customers.loc["12583", "region"] == "France"
    )  # 2 France lines vs 2 Germany lines: tie -> alphabetical
    assert pd.isna(customers.loc["13000", "region"])  # Unspecified -> empty
    assert str(customers.loc["17850", "signup_date"]) == "2010-12-01"

    orders = tables["orders"]
    assert len(orders) == 8  # repeated (536367, 85123A) lines are kept as they are
    assert report.handled["kept_lines_repeating_an_order_product_pair"] == 2
    assert report.handled["of_which_exact_duplicate_lines"] == 1
    assert report.handled["kept_lines_with_stockcode_case_or_blanks_normalised"] == 1
    assert report.handled["customers_with_unspecified_region"] == 1
    assert report.handled["customers_with_several_countries"] == 1
    assert orders["order_time"].iloc[0] == pd.Timestamp("2010-12-01 08:26:00")

    md = report.to_markdown()
    for text in ("input lines: 20", "kept lines: 8", "| non_product |", "unit_cost = cost_ratio", "NEWFEE"):
        assert text in md


def test_cost_ratio_must_keep_list_price_above_cost():
    for bad in (0, -0.1, 1.2):
        with pytest.raises(ValueError, match="cost_ratio"):
            to_contract_tables(SYNTHETIC, cost_ratio=bad)
    tables, _ = to_contract_tables(SYNTHETIC, cost_ratio=1.0)
    p = tables["products"]
    assert (p["unit_cost"] == p["list_price"]).all()


def test_tiny_price_cost_is_not_rounded_to_zero():
    raw = _raw([("1", "10001", "TINY", "1", "2011-01-01 10:00:00", "0.0001", "1.0", "UK")])
    tables, _ = to_contract_tables(raw, cost_ratio=0.3)
    p = tables["products"].iloc[0]
    assert 0 < p["unit_cost"] <= p["list_price"]


@pytest.mark.parametrize(
    "description, category",
    [
        ("WHITE HANGING HEART T-LIGHT HOLDER", "candles_lights"),
        ("JUMBO BAG PINK POLKADOT", "bags"),
        ("SET OF 3 CAKE TINS PANTRY DESIGN", "kitchen_dining"),
        ("PACK OF 72 RETROSPOT CAKE CASES", "kitchen_dining"),
        ("ASSORTED COLOUR BIRD ORNAMENT", "decorations"),
        ("BISCUITS SMALL BOWL LIGHT BLUE", "kitchen_dining"),
        ("STRAWBERRY CERAMIC TRINKET BOX", "storage"),
        ("DIAMANTE EARRINGS PURPLE", "jewellery_accessories"),
        ("ROSE DU SUD CUSHION COVER", "home_decor"),
        ("SET OF 6 SOLDIER SKITTLES", "toys_games"),
        ("PACK OF 12 COLOURED PENCILS", "stationery_wrap"),
        ("GINGHAM HEART DOORSTOP RED", "home_decor"),
        ("SPACEBOY", "other"),
        ("", "other"),
        (None, "other"),
    ],
)
def test_category_of(description, category):
    assert category_of(description) == category


def test_non_product_detection():
    codes = pd.Series(
        ["POST", "M", "BANK CHARGES", "GIFT_0001_10", "DCGSSGIRL", "85123A", "22423", "23444", "C2"]
    )
    descs = pd.Series(
        [
            "POSTAGE",
            "Manual",
            "Bank Charges",
            "voucher",
            "GIRLS PARTY BAG",
            "X",
            "Y",
            "Next Day Carriage",
            "CARRIAGE",
        ]
    )
    assert is_non_product(codes, descs).tolist() == [True, True, True, True, True, False, False, True, True]


def test_load_reads_gzip_and_latin1(tmp_path):
    header = ",".join(COLS)
    line = "536365,GIFT_0001_10,Voucher £10,1,2010-12-01 08:26:00,8.33,17850.0,United Kingdom"
    latin = tmp_path / "retail_latin1.csv"
    latin.write_bytes(f"{header}\n{line}\n".encode("latin-1"))
    df = load_online_retail(latin)
    assert df.attrs["encoding"] == "latin-1"
    assert df["Description"].iloc[0] == "Voucher £10"
    gz = tmp_path / "retail.csv.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write(f"{header}\n{line}\n")
    df = load_online_retail(gz)
    assert df.attrs["encoding"] == "utf-8"
    assert df["CustomerID"].iloc[0] == "17850.0"  # text, untouched
    assert df["Description"].iloc[0] == "Voucher £10"


def test_load_accepts_online_retail_ii_names_and_us_dates(tmp_path):
    path = tmp_path / "ii.csv"
    path.write_text(
        "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom\n"
    )
    tables, report = to_contract_tables(load_online_retail(path))
    assert report.kept_lines == 1
    assert tables["orders"]["order_time"].iloc[0] == pd.Timestamp("2010-12-01 08:26:00")
    assert tables["customers"]["customer_id"].iloc[0] == "17850"


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not an Online Retail file"):
        load_online_retail(path)


# --------------------------------------------------------------------------------------------------
# the full file (about 5 s)
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_full_file_import(src, tmp_path):
    report = import_online_retail(src, tmp_path, cost_ratio=0.6, fmt="csv")
    assert report.input_lines == 541_909
    assert report.dropped == {
        "malformed": 0,
        "cancellation": 10_624,
        "missing_customer": 133_361,
        "non_product": 1_636,
        "non_positive_price": 33,
    }
    assert report.kept_lines == 396_255
    assert report.rows_written == {"products": 3_657, "customers": 4_334, "orders": 396_255}
    assert report.matched["missing_customer"] == 135_080  # as the dataset README says
    tables = {
        name: read_raw_table(tmp_path / f"{name}.csv", name) for name in ("products", "customers", "orders")
    }
    assert tables["products"]["product_id"].is_unique
    assert tables["customers"]["customer_id"].is_unique
    assert tables["orders"]["product_id"].isin(tables["products"]["product_id"]).all()
    assert tables["orders"]["customer_id"].isin(tables["customers"]["customer_id"]).all()
    p = tables["products"]
    assert (p["list_price"].astype(float) >= p["unit_cost"].astype(float)).all()
    assert (p["unit_cost"].astype(float) > 0).all()
    assert report.seconds is not None and report.seconds < 60
