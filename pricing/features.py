"""Point-in-time features for P(accept | customer, bundle, price, context).

Pure, typed and vectorised (numpy / pandas / pyarrow compute); no I/O, no orchestration, and no Python
loop over rows (the only loops run over feature blocks, windows, tokens or bundle item positions).

Three layers:

* :func:`fit_feature_builder` learns the little state that must come from *training* data only
  (events/orders strictly before ``before``): the search-token vocabulary, the category and region
  levels of the categorical features, the categories' global share of views and the co-purchase lift
  of the bundles' item pairs. The :class:`FeatureBuilder` is JSON-serialisable (logged beside the model).
* :func:`context_features` computes every feature that does not depend on the price, for requests
  ``(customer_id, bundle_id, time)``, using only rows strictly before each request's time (see
  "Point in time" below), plus the helper columns ``list_sum``, ``cost_sum``, ``competitor_sum``.
* :func:`price_features` derives the few price columns (:data:`PRICE_FEATURES`) from a context frame
  and a price vector; it is cheap, so a price ladder is scored without recomputing the context.
  :func:`assemble` puts context and price columns into the model matrix in ``builder.feature_names``
  order, categoricals with the builder's fixed levels.

Point in time
-------------
A row is visible to a request at time ``t`` when its timestamp is strictly earlier than ``t``:
``orders.order_time``, ``events.event_time`` and ``offers.offer_time`` (an offer's outcome counts as
known at its offer time; the request's own offer is never visible to itself). A competitor price of
``date`` D (a whole day) counts as known from D 00:00 UTC: it is visible when ``D 00:00 < t`` and used
when it is at most ``competitor_max_age_days`` older than the last day visible at ``t``. The static
tables (products, customers, bundles) are the current catalogue. Histories are kept as per-entity
sorted timelines with *per-entity* prefix sums, so a feature depends only on the entity's own rows
before ``t`` -- bit for bit: deleting or changing later rows (or other customers' rows) does not even
change rounding (tests/test_features.py checks exactly that).

The builder's own state (vocabulary, lift table, category view shares) is fitted once on data before
its cut-off, like any fitted preprocessing step; it is not recomputed per request.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from pricing.config import FeaturesConfig
from pricing.contract import BUNDLE_ITEM_SEP
from pricing.mining import baskets

__all__ = [
    "CATEGORICAL_FEATURES",
    "HELPER_COLUMNS",
    "NO_HISTORY_DAYS",
    "PRICE_FEATURES",
    "FeatureBuilder",
    "assemble",
    "context_features",
    "fit_feature_builder",
    "offer_training_frame",
    "price_features",
]

#: The only features that depend on the price, with the direction in which acceptance moves as the
#: feature grows (LightGBM ``monotone_constraints``; see :attr:`FeatureBuilder.monotone_constraints`).
#: For a fixed context each is strictly monotone in the price: ``price``; ``discount_pct = 1 - price /
#: list_sum`` (falls as the price rises, hence +1); ``price_to_competitor = price / competitor_sum``
#: (NaN when no competitor price is known); ``price_to_cost = price / cost_sum``.
PRICE_FEATURES: dict[str, int] = {"price": -1, "discount_pct": +1, "price_to_competitor": -1, "price_to_cost": -1}

#: Columns of :func:`context_features` needed by :func:`price_features` (float64, NaN when unknown).
#: They are model features too, so :func:`price_features` also works on an assembled X (float32 there).
HELPER_COLUMNS: tuple[str, ...] = ("list_sum", "cost_sum", "competitor_sum")

#: Categorical model columns (pandas 'category' with the builder's fixed levels).
CATEGORICAL_FEATURES: tuple[str, ...] = ("region", "bundle_main_category")

#: "Days since" value when there is no such event before the request.
NO_HISTORY_DAYS = 9999.0

_FORMAT_VERSION = 2  # 2: categoricals enter the model matrix as codes (see category_codes)
_US_PER_DAY = 86_400_000_000
_NAT = np.iinfo(np.int64).min
_TOKEN_SPLIT = r"[^\p{L}\p{N}_]+"  # tokens: runs of letters, digits and '_' (any script), lower-cased
_VOCAB_PRIOR = 5.0  # pseudo-searches shrinking a customer's token rate towards the global rate
_AFFINITY_PRIOR = 5.0  # pseudo-views shrinking a customer's category share towards the global share


# --------------------------------------------------------------------------------------------------
# small typed helpers
# --------------------------------------------------------------------------------------------------
def _us(values: Any) -> np.ndarray:
    """int64 microseconds since the epoch (UTC) of datetimes/dates; naive means UTC; NaT -> int64 min."""
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if not pd.api.types.is_datetime64_any_dtype(s):
        s = pd.to_datetime(s, utc=True)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s.astype("datetime64[us]").to_numpy().view(np.int64)


def _ts_us(ts: pd.Timestamp | str | None) -> int | None:
    if ts is None:
        return None
    t = pd.Timestamp(ts)
    t = t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t
    return int(t.value // 1000)  # Timestamp.value is in nanoseconds whatever the unit


def _codes(values: pd.Series, universe: pd.Index) -> np.ndarray:
    """Position of each value in ``universe`` (-1: null or unknown). Hashes each distinct value once."""
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    if len(uniq) == 0 or len(universe) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    m = universe.get_indexer(pd.Index(np.asarray(uniq, dtype=object)))
    return np.where(codes >= 0, m[codes], -1).astype(np.int64)


def _table(tables: dict[str, pd.DataFrame], name: str) -> pd.DataFrame | None:
    df = tables.get(name)
    return df if df is not None and len(df) else None


def _sanitize(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", str(name))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den == 0 (no history)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _expand(ptr: np.ndarray, values: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR lookup: for each position i of ``owner`` (row of the CSR, -1 = none) its ``values`` entries.

    Returns (index into ``owner``, value) pairs, grouped by position.
    """
    ok = owner >= 0
    o = np.where(ok, owner, 0)
    cnt = np.where(ok, ptr[o + 1] - ptr[o], 0)
    rows = np.repeat(np.arange(len(owner)), cnt)
    first = np.repeat(ptr[o] - (np.cumsum(cnt) - cnt), cnt)
    return rows, values[first + np.arange(len(rows))]


# --------------------------------------------------------------------------------------------------
# timelines: per-entity event histories answering many point-in-time window queries at once
# --------------------------------------------------------------------------------------------------
class _Probe:
    """Query points (entity code, time), with the two sort orders the timeline searches need."""

    def __init__(self, entity: np.ndarray, t: np.ndarray):
        self.entity = np.asarray(entity, dtype=np.int64)
        self.t = np.asarray(t, dtype=np.int64)
        self.t_order = np.argsort(self.t, kind="stable")
        self.e_order = np.lexsort((self.t, self.entity))

    def __len__(self) -> int:
        return len(self.t)


def _search(a: np.ndarray, v: np.ndarray, order: np.ndarray) -> np.ndarray:
    """np.searchsorted(a, v, 'left') with the needles visited in sorted order (much faster)."""
    out = np.empty(len(v), dtype=np.int64)
    if len(v):
        out[order] = np.searchsorted(a, v[order], side="left")
    return out


class _Timeline:
    """Events of one kind grouped by entity (customer, bundle, category...) and sorted by time.

    Answers, for query points (entity e, time t): which of e's events lie in ``[t - lookback, t)``,
    as positions ``[lo, hi)`` in the sorted arrays, plus sums of value columns over them. Value sums
    use per-entity prefix sums (integers: exact; floats: a cumulative sum restarted per entity), so a
    result depends only on that entity's events before t. Entity codes < 0 are dropped.
    """

    def __init__(self, entity: np.ndarray, time: np.ndarray, values: dict[str, np.ndarray] | None = None,
                 keep_values: tuple[str, ...] = ()):
        entity = np.asarray(entity, dtype=np.int64)
        time = np.asarray(time, dtype=np.int64)
        ok = (entity >= 0) & (time != _NAT)
        entity, time = entity[ok], time[ok]
        self.utimes, rank = np.unique(time, return_inverse=True)
        self.stride = int(len(self.utimes) + 1)
        n_ent = int(entity.max()) + 1 if len(entity) else 0
        if n_ent * self.stride >= 2**62:  # pragma: no cover - needs ~1e12 entity-times
            raise OverflowError("too many entities x distinct times for an int64 timeline key")
        key = entity * self.stride + rank.astype(np.int64)
        order = np.argsort(key, kind="stable")
        self.keys = key[order]
        self.time = time[order]
        self.entity = entity[order]
        self.n = len(self.keys)
        self.prefix: dict[str, np.ndarray] = {}
        self.kind: dict[str, str] = {}
        self.values: dict[str, np.ndarray] = {}
        for name, v in (values or {}).items():
            v = np.asarray(v)[ok][order]
            if name in keep_values:
                self.values[name] = v
            if np.issubdtype(v.dtype, np.integer) or v.dtype == bool:
                self.prefix[name] = np.concatenate([[0], np.cumsum(v, dtype=np.int64)])
                self.kind[name] = "int"
            else:  # restart the float cumulative sum at each entity: exact per-entity reproducibility
                v = np.nan_to_num(v.astype(np.float64), nan=0.0)
                self.prefix[name] = pd.Series(v).groupby(self.entity, sort=False).cumsum().to_numpy()
                self.kind[name] = "float"
        self._cache: dict[int, tuple[_Probe, np.ndarray, np.ndarray]] = {}

    def _pos(self, probe: _Probe, lookback_us: int | None) -> np.ndarray:
        if lookback_us is None:
            rank = np.zeros(len(probe), dtype=np.int64)
        else:
            rank = _search(self.utimes, probe.t - lookback_us, probe.t_order)
        return _search(self.keys, probe.entity * self.stride + rank, probe.e_order)

    def bounds(self, probe: _Probe, lookback_us: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start, lo, hi): the entity's events before t are [start, hi); those in [t - lookback, t) are [lo, hi)."""
        key = id(probe)  # the cache holds the probe itself, so its id cannot be reused meanwhile
        if key not in self._cache or self._cache[key][0] is not probe:
            self._cache[key] = (probe, self._pos(probe, None), self._pos(probe, 0))
        _, start, hi = self._cache[key]
        lo = start if lookback_us is None else np.maximum(self._pos(probe, lookback_us), start)
        return start, lo, hi

    def count(self, probe: _Probe, lookback_us: int | None = None) -> np.ndarray:
        _, lo, hi = self.bounds(probe, lookback_us)
        return (hi - lo).astype(np.float64)

    def sum(self, probe: _Probe, name: str, lookback_us: int | None = None) -> np.ndarray:
        start, lo, hi = self.bounds(probe, lookback_us)
        p = self.prefix[name]
        if self.kind[name] == "int":
            return (p[hi] - p[lo]).astype(np.float64)
        if self.n == 0:
            return np.zeros(len(probe))
        a = np.where(hi > start, p[np.maximum(hi - 1, 0)], 0.0)
        b = np.where(lo > start, p[np.maximum(lo - 1, 0)], 0.0)
        return a - b

    def last(self, probe: _Probe) -> tuple[np.ndarray, np.ndarray]:
        """(has, sorted position) of the entity's last event before t."""
        start, _, hi = self.bounds(probe)
        return hi > start, np.maximum(hi - 1, 0)


# --------------------------------------------------------------------------------------------------
# search tokens
# --------------------------------------------------------------------------------------------------
def _query_tokens(queries: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokenise distinct queries once: (query code per row or -1, pair query code, pair token).

    Pairs are distinct (query, token); tokens are lower-cased runs of letters/digits/'_'.
    """
    codes, uniq = pd.factorize(queries, use_na_sentinel=True)
    if len(uniq) == 0:
        return codes.astype(np.int64), np.array([], dtype=np.int64), np.array([], dtype=object)
    arr = pa.array(pd.array(np.asarray(uniq, dtype=object), dtype="string"), type=pa.string())
    parts = pc.split_pattern_regex(pc.utf8_lower(arr), _TOKEN_SPLIT)
    flat = pc.list_flatten(parts)
    parent = pc.list_parent_indices(parts)
    nonempty = pc.greater(pc.utf8_length(flat), 0)
    tok = np.asarray(flat.filter(nonempty).to_numpy(zero_copy_only=False), dtype=object)
    qid = parent.filter(nonempty).to_numpy().astype(np.int64)
    tcode, tuniq = pd.factorize(tok)
    _, first = np.unique(qid * max(len(tuniq), 1) + tcode, return_index=True)
    return codes.astype(np.int64), qid[first], tok[first]


def _binary_kl(r: np.ndarray, p: np.ndarray) -> np.ndarray:
    r = np.clip(r, 1e-12, 1 - 1e-12)
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return r * np.log(r / p) + (1 - r) * np.log((1 - r) / (1 - p))


def _learn_vocabulary(customer: pd.Series, query: pd.Series, k: int) -> list[str]:
    """Top-``k`` search tokens by how much they tell about *who* is searching.

    Score of token w: ``sum_c N_c * KL(r_cw || p_w)`` -- the information (in nats, over all searches)
    that knowing the customer c gives about "this search contains w". ``p_w`` is the share of all
    searches containing w, ``N_c`` the customer's number of searches and ``r_cw`` the customer's rate
    shrunk towards ``p_w`` by a few pseudo-searches (so a one-off typo scores ~0). Tokens everybody
    uses alike (stop words) score ~0 however frequent; frequent tokens concentrated on some customers
    (their tastes, their price attitude) score highest. Ties: more frequent, then alphabetical.
    No word list is involved; the vocabulary changes when the queries change.
    """
    if k <= 0 or len(query) == 0:
        return []
    qcode, pq, ptok = _query_tokens(query)
    ccode, cuniq = pd.factorize(customer, use_na_sentinel=True)
    ok = (qcode >= 0) & (ccode >= 0)
    if not ok.any() or len(ptok) == 0:
        return []
    qcode, ccode = qcode[ok], ccode[ok]
    tcode, vocab = pd.factorize(ptok)
    n_q = int(qcode.max()) + 1 if len(qcode) else 0
    n_q = max(n_q, int(pq.max()) + 1)
    s = sp.csr_matrix((np.ones(len(qcode)), (ccode, qcode)), shape=(len(cuniq), n_q))
    q = sp.csr_matrix((np.ones(len(pq)), (pq, tcode)), shape=(n_q, len(vocab)))
    n_total = float(len(qcode))
    n_c = np.asarray(s.sum(axis=1)).ravel()
    n_w = np.asarray(s.sum(axis=0) @ q).ravel()
    p_w = n_w / n_total
    cw = (s @ q).tocoo()
    a = _VOCAB_PRIOR
    nc = n_c[cw.row]
    pw = p_w[cw.col]
    pos = nc * (_binary_kl((cw.data + a * pw) / (nc + a), pw) - _binary_kl(a * pw / (nc + a), pw))
    score = np.bincount(cw.col, weights=pos, minlength=len(vocab))
    # customers without w (all customers, then the ones with w added back above): grouped by N_c
    vals, cnt = np.unique(n_c[n_c > 0], return_counts=True)
    for lo in range(0, len(vocab), 256):  # bounded memory: 256 tokens x distinct N_c at a time
        pw_b = p_w[lo : lo + 256, None]
        score[lo : lo + 256] += (cnt * vals * _binary_kl(a * pw_b / (vals + a), pw_b)).sum(axis=1)
    alpha = np.argsort(np.argsort(np.asarray(vocab, dtype=str), kind="stable"), kind="stable")
    order = np.lexsort((alpha, -n_w, -np.round(score, 9)))
    return [str(vocab[i]) for i in order[:k]]


# --------------------------------------------------------------------------------------------------
# calendar
# --------------------------------------------------------------------------------------------------
def _md(mmdd: str) -> tuple[int, int]:
    m, d = mmdd.split("-")
    return int(m), int(d)


def _calendar(t_us: np.ndarray, calendar: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Day of week (Mon=0), month, hour, and per season a 0/1 flag and the days to its next start (UTC)."""
    day = (t_us // _US_PER_DAY).astype("datetime64[D]")
    year = day.astype("datetime64[Y]")
    month0 = day.astype("datetime64[M]")
    month = (month0 - year.astype("datetime64[M]")).astype(np.int64) + 1
    dom = (day - month0).astype(np.int64) + 1
    md = month * 100 + dom
    out: dict[str, np.ndarray] = {
        "dow": (day.astype(np.int64) + 3) % 7,  # 1970-01-01 was a Thursday
        "month": month,
        "hour": (t_us // 3_600_000_000) % 24,
    }
    for season in calendar:
        name = _sanitize(season["name"])
        (sm, sd), (em, ed) = _md(season["start"]), _md(season["end"])
        s, e = sm * 100 + sd, em * 100 + ed
        out[f"season_{name}"] = ((md >= s) & (md <= e)) if s <= e else ((md >= s) | (md <= e))
        # next start on or after today; Feb 29 in a common year falls on Mar 1
        this = year.astype("datetime64[M]") + np.timedelta64(sm - 1, "M")
        this = this.astype("datetime64[D]") + np.timedelta64(sd - 1, "D")
        nxt = (year + np.timedelta64(1, "Y")).astype("datetime64[M]") + np.timedelta64(sm - 1, "M")
        nxt = nxt.astype("datetime64[D]") + np.timedelta64(sd - 1, "D")
        out[f"days_to_{name}"] = np.where(this >= day, this - day, nxt - day).astype(np.int64)
    return out


# --------------------------------------------------------------------------------------------------
# catalogue: products and bundles
# --------------------------------------------------------------------------------------------------
@dataclass
class _Catalog:
    products: pd.Index  # product ids
    list_price: np.ndarray
    unit_cost: np.ndarray
    categories: pd.Index  # sorted category names (current catalogue)
    product_cat: np.ndarray  # category code per product (-1 unknown)
    bundles: pd.Index  # bundle ids
    item_ptr: np.ndarray  # CSR over bundles -> product codes
    item_prod: np.ndarray
    cat_ptr: np.ndarray  # CSR over bundles -> distinct category codes
    cat_code: np.ndarray
    n_items: np.ndarray
    n_cats: np.ndarray
    list_sum: np.ndarray
    cost_sum: np.ndarray
    main_cat: np.ndarray  # category code with the largest list value in the bundle (-1 unknown)


def _split_items(bundles: pd.DataFrame) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """Bundle ids and their item ids: (ids, bundle position per item, item id per item)."""
    b = bundles.dropna(subset=["bundle_id"]).drop_duplicates("bundle_id")
    ids = pd.Index(b["bundle_id"].to_numpy())
    arr = pa.array(b["product_ids"].astype("string").array, type=pa.string())
    parts = pc.split_pattern(arr, BUNDLE_ITEM_SEP)
    flat = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    parent = pc.list_parent_indices(parts)
    keep = pc.greater(pc.utf8_length(flat), 0)
    items = np.asarray(flat.filter(keep).to_numpy(zero_copy_only=False), dtype=object)
    owner = parent.filter(keep).to_numpy().astype(np.int64)
    # distinct items per bundle, in the listed order
    _, first = np.unique(owner * (len(items) + 1) + pd.factorize(items)[0], return_index=True)
    first = np.sort(first)
    return ids, owner[first], items[first]


def _catalog(tables: dict[str, pd.DataFrame]) -> _Catalog:
    products = tables["products"].dropna(subset=["product_id"]).drop_duplicates("product_id")
    pids = pd.Index(products["product_id"].to_numpy())
    list_price = products["list_price"].to_numpy(dtype=np.float64, na_value=np.nan)
    unit_cost = products["unit_cost"].to_numpy(dtype=np.float64, na_value=np.nan)
    cats = pd.Index(sorted(products["category"].dropna().astype(str).unique()))
    product_cat = _codes(products["category"].astype("string"), cats) if len(cats) else np.full(len(pids), -1)
    bundles = _table(tables, "bundles")
    if bundles is None:
        bundles = pd.DataFrame({"bundle_id": pd.Series([], dtype="string"), "product_ids": pd.Series([], dtype="string")})
    bids, owner, items = _split_items(bundles)
    nb = len(bids)
    prod = _codes(pd.Series(items, dtype="string"), pids) if len(items) else np.array([], dtype=np.int64)
    item_ptr = np.zeros(nb + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=nb), out=item_ptr[1:])
    known = prod >= 0
    lp = np.where(known, list_price[np.maximum(prod, 0)], np.nan)
    uc = np.where(known, unit_cost[np.maximum(prod, 0)], np.nan)
    list_sum = np.bincount(owner, weights=lp, minlength=nb)  # NaN propagates: an unknown item -> NaN
    cost_sum = np.bincount(owner, weights=uc, minlength=nb)
    cat = np.where(known, product_cat[np.maximum(prod, 0)], -1)
    ncat = max(len(cats), 1)
    has = cat >= 0
    pair = np.unique(owner[has] * ncat + cat[has])
    pb, pc_ = pair // ncat, pair % ncat
    cat_ptr = np.zeros(nb + 1, dtype=np.int64)
    np.cumsum(np.bincount(pb, minlength=nb), out=cat_ptr[1:])
    # main category: most list value in the bundle; ties -> alphabetical
    pair_value = np.bincount(np.searchsorted(pair, owner[has] * ncat + cat[has]), weights=np.nan_to_num(lp[has]),
                             minlength=len(pair))
    order = np.lexsort((pc_, -pair_value, pb))
    main_cat = np.full(nb, -1, dtype=np.int64)
    ub, firsts = np.unique(pb[order], return_index=True)
    main_cat[ub] = pc_[order][firsts]
    return _Catalog(
        products=pids, list_price=list_price, unit_cost=unit_cost, categories=cats, product_cat=product_cat,
        bundles=bids, item_ptr=item_ptr, item_prod=prod, cat_ptr=cat_ptr, cat_code=pc_.astype(np.int64),
        n_items=np.diff(item_ptr), n_cats=np.diff(cat_ptr), list_sum=list_sum, cost_sum=cost_sum, main_cat=main_cat,
    )


def _bundle_pairs(cat: _Catalog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All item pairs (i < j by position) of every bundle: (bundle code, product code a, product code b)."""
    out_b, out_a, out_c = [], [], []
    n = cat.n_items
    max_items = int(n.max()) if len(n) else 0
    for i in range(max_items):  # loop over item positions (bundles have a handful of items)
        for j in range(i + 1, max_items):
            b = np.flatnonzero(n > j)
            out_b.append(b)
            out_a.append(cat.item_prod[cat.item_ptr[b] + i])
            out_c.append(cat.item_prod[cat.item_ptr[b] + j])
    if not out_b:
        e = np.array([], dtype=np.int64)
        return e, e, e
    return np.concatenate(out_b), np.concatenate(out_a), np.concatenate(out_c)


def _pair_keys(a: np.ndarray, b: np.ndarray) -> pd.Index:
    """Order-free key 'x|y' (x < y) of product-id pairs."""
    sa, sb = pd.Series(a, dtype="string"), pd.Series(b, dtype="string")
    lo = sa.where(sa <= sb, sb)
    hi = sb.where(sa <= sb, sa)
    return pd.Index((lo + BUNDLE_ITEM_SEP + hi).astype(object).to_numpy())


# --------------------------------------------------------------------------------------------------
# the builder
# --------------------------------------------------------------------------------------------------
@dataclass
class FeatureBuilder:
    """State fitted on training data only; JSON-serialisable. See :func:`fit_feature_builder`."""

    config: dict[str, Any]  # FeaturesConfig (JSON form)
    cutoff: str | None  # data strictly before this instant (ISO, UTC) was used; None: all data
    tokens: list[str]  # learned search vocabulary (order = score rank)
    categories: list[str]  # levels of bundle_main_category
    regions: list[str]  # levels of region
    category_view_share: dict[str, float]  # share of all views per category (training data)
    pair_lift: dict[str, float]  # 'a|b' (a < b) -> co-purchase lift of the bundles' item pairs
    n_baskets: int = 0  # baskets behind pair_lift
    version: int = _FORMAT_VERSION
    token_features: list[str] = field(init=False, repr=False)  # model column per token (derived)

    def __post_init__(self) -> None:
        self.token_features = _token_feature_names(self.tokens)

    # -- derived views --------------------------------------------------------------------------
    @property
    def features_config(self) -> FeaturesConfig:
        return FeaturesConfig.model_validate(self.config)

    @property
    def context_names(self) -> list[str]:
        """Non-price model columns, in model order."""
        cfg = self.features_config
        w = [int(x) for x in cfg.windows_days]
        names: list[str] = []
        names += [f"cust_{kind}_{d}d" for d in w for kind in ("orders", "spend")]
        names += ["cust_orders_all", "cust_spend_all", "cust_units_all", "cust_days_since_purchase",
                  "cust_discount_share", "cust_paid_to_list", "cust_avg_list_price"]
        names += [f"cust_{kind}_{d}d" for d in w for kind in ("views", "view_secs", "view_secs_mean")]
        names += ["cust_views_all", "cust_view_secs_all", "cust_view_secs_mean_all", "cust_carts_all",
                  "cust_searches_all", "cust_views_bundle_cats", "cust_carts_bundle_cats",
                  "cust_view_share_bundle_cats", "cust_cart_share_bundle_cats", "cust_buy_share_bundle_cats",
                  "cust_cat_affinity", "region", "cust_tenure_days", "cust_offers_seen", "cust_offers_accepted",
                  "cust_accept_rate", "cust_accepted_discount_mean", "cust_declined_discount_mean"]
        names += ["bundle_n_items", "list_sum", "cost_sum", "bundle_list_to_cost", "bundle_main_category",
                  "bundle_n_categories", "bundle_lift_mean", "bundle_lift_max", "bundle_offers_seen",
                  "bundle_accept_rate"]
        names += ["competitor_sum", "competitor_to_list", "competitor_coverage", "demand_cat_units",
                  "demand_item_units"]
        names += ["dow", "month", "hour"]
        seasons = [_sanitize(s.name) for s in cfg.calendar]
        names += [f"season_{s}" for s in seasons] + [f"days_to_{s}" for s in seasons]
        names += self.token_features
        return names

    @property
    def feature_names(self) -> list[str]:
        """Final model columns: context then price features, fixed order."""
        return self.context_names + list(PRICE_FEATURES)

    @property
    def categorical(self) -> list[str]:
        return list(CATEGORICAL_FEATURES)

    @property
    def monotone_constraints(self) -> list[int]:
        """LightGBM ``monotone_constraints`` aligned with :attr:`feature_names`."""
        return [PRICE_FEATURES.get(n, 0) for n in self.feature_names]

    def levels(self, column: str) -> list[str]:
        return {"region": self.regions, "bundle_main_category": self.categories}[column]

    # -- persistence ----------------------------------------------------------------------------
    def to_json(self) -> str:
        d = asdict(self)
        d.pop("token_features")
        return json.dumps(d, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, s: str) -> FeatureBuilder:
        d = json.loads(s)
        if d.get("version") != _FORMAT_VERSION:
            raise ValueError(f"FeatureBuilder format {d.get('version')} is not supported (expected {_FORMAT_VERSION})")
        d.pop("token_features", None)
        return cls(**d)


def _token_feature_names(tokens: list[str]) -> list[str]:
    names, seen = [], set()
    for i, tok in enumerate(tokens):
        n = f"search_{_sanitize(tok)}"
        if n in seen or not tok.isascii():
            n = f"search_{i:02d}_{_sanitize(tok)}"
        seen.add(n)
        names.append(n)
    return names


def fit_feature_builder(
    tables: dict[str, pd.DataFrame], cfg: FeaturesConfig, before: pd.Timestamp | None = None
) -> FeatureBuilder:
    """Learn the builder's state from data strictly before ``before`` (all data when None).

    * ``tokens``: top ``cfg.n_search_tokens`` search tokens by :func:`_learn_vocabulary`'s score.
    * ``categories`` / ``regions``: levels of the categoricals (catalogue / customer table).
    * ``category_view_share``: each category's share of all product views (for the affinity feature).
    * ``pair_lift``: lift P(AB) / (P(A) P(B)) of every item pair of the bundles in ``tables["bundles"]``
      over the baskets of :func:`pricing.mining.baskets` (regular order lines only: lines sold as part
      of a bundle are left out, else the offers' own outcomes would feed the lift). A pair never bought
      together has lift 0; a pair with an item never bought gets no entry (feature NaN).
    """
    cut = _ts_us(before)
    cat = _catalog(tables)
    customers = tables["customers"]
    regions = (
        sorted(customers["region"].dropna().astype(str).unique()) if "region" in customers.columns else []
    )
    events = _table(tables, "events")
    tokens: list[str] = []
    view_share: dict[str, float] = {}
    if events is not None:
        t = _us(events["event_time"])
        vis = (t < cut) if cut is not None else np.ones(len(t), dtype=bool)
        etype = events["event_type"]
        is_search = vis & (etype == "search").to_numpy(dtype=bool, na_value=False)
        if "query" in events.columns:
            tokens = _learn_vocabulary(
                events["customer_id"][is_search], events["query"][is_search], int(cfg.n_search_tokens)
            )
        is_view = vis & (etype == "view").to_numpy(dtype=bool, na_value=False)
        pc_ = _codes(events["product_id"][is_view], cat.products)
        c = np.where(pc_ >= 0, cat.product_cat[np.maximum(pc_, 0)], -1)
        c = c[c >= 0]
        if len(c):
            cnt = np.bincount(c, minlength=len(cat.categories))
            view_share = {str(k): float(v) for k, v in zip(cat.categories, cnt / cnt.sum()) if v > 0}

    orders = tables["orders"]
    regular = orders
    if "bundle_id" in orders.columns:
        regular = orders.loc[orders["bundle_id"].isna().to_numpy(dtype=bool)]
    bk = baskets(regular, before=before)
    _, pa_, pb_ = _bundle_pairs(cat)
    lift: dict[str, float] = {}
    ok = (pa_ >= 0) & (pb_ >= 0)
    if ok.any() and bk.n_baskets > 0:
        a_ids, b_ids = cat.products[pa_[ok]], cat.products[pb_[ok]]
        keys = _pair_keys(np.asarray(a_ids, dtype=object), np.asarray(b_ids, dtype=object))
        keys, first = np.unique(np.asarray(keys, dtype=object), return_index=True)
        bidx = pd.Index(bk.product_ids)
        ia = bidx.get_indexer(np.asarray(a_ids, dtype=object)[first])
        ib = bidx.get_indexer(np.asarray(b_ids, dtype=object)[first])
        seen = (ia >= 0) & (ib >= 0)
        x = bk.matrix.tocsc()
        both = np.asarray(x[:, ia[seen]].multiply(x[:, ib[seen]]).sum(axis=0)).ravel()
        counts = bk.item_counts().astype(np.float64)
        val = both * bk.n_baskets / (counts[ia[seen]] * counts[ib[seen]])
        lift = {str(k): float(v) for k, v in zip(keys[seen], val)}
    return FeatureBuilder(
        config=cfg.model_dump(mode="json"),
        cutoff=None if before is None else pd.Timestamp(cut, unit="us", tz="UTC").isoformat(),
        tokens=tokens,
        categories=[str(c) for c in cat.categories],
        regions=regions,
        category_view_share=view_share,
        pair_lift=lift,
        n_baskets=int(bk.n_baskets),
    )


# --------------------------------------------------------------------------------------------------
# context features
# --------------------------------------------------------------------------------------------------
def _competitor(
    tables: dict[str, pd.DataFrame], cat: _Catalog, rb: np.ndarray, t: np.ndarray, max_age_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """(competitor_sum, coverage) per request.

    Per item: mean over competitors of each competitor's latest price dated D with ``D 00:00 < t`` and
    ``D >= k - max_age`` (k = the last day visible at t). The bundle's sum uses the list price for items
    no competitor prices (``coverage`` = share of items with a competitor price); NaN when no item has one.
    """
    n = len(rb)
    nan = np.full(n, np.nan)
    cp = _table(tables, "competitor_prices")
    if cp is None:
        return nan, np.zeros(n)
    k = (t - 1) // _US_PER_DAY  # last day whose midnight is strictly before t
    kmin = int(k.min()) if n else 0
    span = int(k.max()) - kmin + 1 if n else 1
    bk, inv = np.unique(rb * span + (k - kmin), return_inverse=True)  # distinct (bundle, day)
    ub, uk = bk // span, bk % span + kmin
    # items of each (bundle, day)
    rows, prod = _expand(cat.item_ptr, cat.item_prod, ub)
    known_prod = prod >= 0
    pk, pk_inv = np.unique(np.where(known_prod, prod, 0) * span + (uk[rows] - kmin), return_inverse=True)
    up, upk = pk // span, pk % span + kmin
    comp_codes, comps = pd.factorize(cp["competitor"], sort=True)
    ncomp = max(len(comps), 1)
    cpp = _codes(cp["product_id"], cat.products)
    ent = np.where((cpp >= 0) & (comp_codes >= 0), cpp * ncomp + comp_codes, -1)
    price = cp["price"].to_numpy(dtype=np.float64, na_value=np.nan)
    ent = np.where(np.isfinite(price) & (price > 0), ent, -1)
    tl = _Timeline(ent, _us(cp["date"]), {"price": price}, keep_values=("price",))
    qe = (up[:, None] * ncomp + np.arange(ncomp)[None, :]).ravel()
    qk = np.repeat(upk, ncomp)
    probe = _Probe(qe, (qk + 1) * _US_PER_DAY)  # strictly before the next midnight: D <= k
    has, pos = tl.last(probe)
    if tl.n:
        fresh = has & (tl.time[pos] // _US_PER_DAY >= qk - int(max_age_days))
        val = np.where(fresh, tl.values["price"][pos], 0.0)
    else:
        fresh, val = np.zeros(len(qe), dtype=bool), np.zeros(len(qe))
    grp = np.repeat(np.arange(len(pk)), ncomp)
    n_comp = np.bincount(grp, weights=fresh, minlength=len(pk))
    mean = _ratio(np.bincount(grp, weights=val, minlength=len(pk)), n_comp)
    item_comp = np.where(known_prod, mean[pk_inv], np.nan)
    item_list = np.where(known_prod, cat.list_price[np.maximum(prod, 0)], np.nan)
    covered = np.isfinite(item_comp)
    item_val = np.where(covered, item_comp, item_list)
    total = np.bincount(rows, weights=item_val, minlength=len(bk))
    n_cov = np.bincount(rows, weights=covered, minlength=len(bk))
    n_it = np.bincount(rows, minlength=len(bk))
    total = np.where(n_cov > 0, total, np.nan)
    return total[inv], _ratio(n_cov, n_it)[inv]


class _Columns:
    """Write-once float32 feature columns in one preallocated column-major matrix (no copy into the frame)."""

    def __init__(self, n: int, names: list[str]):
        self.names = names
        self.pos = {name: j for j, name in enumerate(names)}
        self.mat = np.empty((n, len(names)), dtype=np.float32, order="F")
        self.done: set[str] = set()

    def __setitem__(self, name: str, values: np.ndarray) -> None:
        self.mat[:, self.pos[name]] = values
        self.done.add(name)

    def frame(self, index: pd.Index) -> pd.DataFrame:
        missing = [n for n in self.names if n not in self.done]
        if missing:  # pragma: no cover - a programming error
            raise RuntimeError(f"features not computed: {missing}")
        return pd.DataFrame(self.mat, columns=self.names, index=index, copy=False)


def context_features(builder: FeatureBuilder, tables: dict[str, pd.DataFrame], requests: pd.DataFrame) -> pd.DataFrame:
    """All non-price features for ``requests`` (customer_id, bundle_id, time).

    One row per request, same order and index, computed only from rows strictly before each request's
    time. Columns: every non-price model column of ``builder`` (numeric ones as float32, the
    categoricals as pandas 'category' with the builder's levels), the helper columns
    :data:`HELPER_COLUMNS` used by :func:`price_features` last and as float64. Optional tables (events, competitor_prices, offers) may be absent: their counts become 0
    and their rates, shares and prices NaN.
    """
    cfg = builder.features_config
    n = len(requests)
    t = _us(requests["time"])
    if (t == _NAT).any():
        raise ValueError("requests.time has missing values")
    cat = _catalog(tables)
    rb = _codes(requests["bundle_id"], cat.bundles)
    if (rb < 0).any():
        unknown = requests["bundle_id"][rb < 0].astype(str).unique()[:5].tolist()
        raise ValueError(f"requests reference bundles missing from tables['bundles']: {unknown}")
    customers = tables["customers"].dropna(subset=["customer_id"]).drop_duplicates("customer_id")
    cust_u = pd.Index(customers["customer_id"].to_numpy())
    rc = _codes(requests["customer_id"], cust_u)
    ncat = max(len(cat.categories), 1)
    day = _US_PER_DAY
    windows = [int(w) for w in cfg.windows_days]
    numeric = [c for c in builder.context_names if c not in CATEGORICAL_FEATURES and c not in HELPER_COLUMNS]
    f = _Columns(n, numeric)

    cprobe = _Probe(rc, t)
    # exploded probes: request x distinct bundle category, request x bundle item
    cat_rows, cat_codes = _expand(cat.cat_ptr, cat.cat_code, rb)
    cc_probe = _Probe(np.where(rc[cat_rows] >= 0, rc[cat_rows] * ncat + cat_codes, -1), t[cat_rows])
    item_rows, item_codes = _expand(cat.item_ptr, cat.item_prod, rb)

    def per_request(rows: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.bincount(rows, weights=v, minlength=n)

    # ---- orders ------------------------------------------------------------------------------
    orders = tables["orders"]
    ot = _us(orders["order_time"])
    oprod = _codes(orders["product_id"], cat.products)
    ocust = _codes(orders["customer_id"], cust_u)
    qty = orders["quantity"].to_numpy(dtype=np.float64, na_value=0.0)
    q_int = np.where(np.isfinite(qty) & (qty > 0), qty, 0.0).astype(np.int64)
    unit = np.nan_to_num(orders["unit_price"].to_numpy(dtype=np.float64, na_value=np.nan), nan=0.0)
    lp = np.where(oprod >= 0, cat.list_price[np.maximum(oprod, 0)], np.nan)
    lp = np.where(np.isfinite(lp), lp, unit)
    in_bundle = (
        orders["bundle_id"].notna().to_numpy(dtype=bool)
        if "bundle_id" in orders.columns else np.zeros(len(orders), dtype=bool)
    )
    disc = in_bundle | (unit < lp - 1e-9)
    # the earliest line of each order counts the order
    oid, _ = pd.factorize(orders["order_id"])
    first = np.zeros(len(ot), dtype=np.int64)
    if len(ot):
        by_time = np.lexsort((np.arange(len(ot)), ot, oid))
        first[by_time[np.r_[True, oid[by_time][1:] != oid[by_time][:-1]]]] = 1
        first[oid < 0] = 0
    otl = _Timeline(
        ocust, ot,
        {"orders": first, "spend": q_int * unit, "units": q_int, "disc_units": q_int * disc, "list_value": q_int * lp},
    )
    del first, disc, in_bundle, unit
    for w in windows:
        f[f"cust_orders_{w}d"] = otl.sum(cprobe, "orders", w * day)
        f[f"cust_spend_{w}d"] = otl.sum(cprobe, "spend", w * day)
    spend = otl.sum(cprobe, "spend")
    units = otl.sum(cprobe, "units")
    list_value = otl.sum(cprobe, "list_value")
    f["cust_orders_all"] = otl.sum(cprobe, "orders")
    f["cust_spend_all"] = spend
    f["cust_units_all"] = units
    has, pos = otl.last(cprobe)
    f["cust_days_since_purchase"] = (
        np.where(has, (t - otl.time[pos]) / day, NO_HISTORY_DAYS) if otl.n else np.full(n, NO_HISTORY_DAYS)
    )
    f["cust_discount_share"] = _ratio(otl.sum(cprobe, "disc_units"), units)
    f["cust_paid_to_list"] = _ratio(spend, list_value)
    f["cust_avg_list_price"] = _ratio(list_value, units)
    del otl, has, pos, spend, list_value
    ocat = np.where(oprod >= 0, cat.product_cat[np.maximum(oprod, 0)], -1)
    buy_in = per_request(cat_rows, _Timeline(np.where((ocust >= 0) & (ocat >= 0), ocust * ncat + ocat, -1), ot,
                                             {"units": q_int}).sum(cc_probe, "units"))
    demand_w = int(cfg.demand_window_days) * day
    catprobe = _Probe(cat_codes, t[cat_rows])
    f["demand_cat_units"] = per_request(cat_rows, _Timeline(ocat, ot, {"u": q_int}).sum(catprobe, "u", demand_w))
    del catprobe
    itemprobe = _Probe(item_codes, t[item_rows])
    f["demand_item_units"] = per_request(item_rows, _Timeline(oprod, ot, {"u": q_int}).sum(itemprobe, "u", demand_w))
    del itemprobe, ot, oprod, ocust, qty, q_int, lp, ocat, oid

    # ---- events --------------------------------------------------------------------------------
    events = _table(tables, "events")
    views_all = carts_all = views_in = carts_in = np.zeros(n)
    token_cols = builder.token_features
    if events is not None:
        et = _us(events["event_time"])
        etype_codes, etypes = pd.factorize(events["event_type"])
        ecust = _codes(events["customer_id"], cust_u)

        def of_type(name: str) -> np.ndarray:
            hit = np.flatnonzero(np.asarray(etypes, dtype=object) == name)
            return etype_codes == hit[0] if len(hit) else np.zeros(len(et), dtype=bool)

        is_view, is_cart, is_search = of_type("view"), of_type("add_to_cart"), of_type("search")
        del etype_codes
        dur = (
            events["duration_s"].to_numpy(dtype=np.float64, na_value=np.nan)
            if "duration_s" in events.columns else np.full(len(et), np.nan)
        )
        has_dur = np.isfinite(dur)
        vtl = _Timeline(np.where(is_view, ecust, -1), et,
                        {"secs": np.where(has_dur, dur, 0.0), "n_secs": has_dur.astype(np.int64)})
        del dur, has_dur
        for w in [*windows, None]:
            sfx = f"{w}d" if w is not None else "all"
            lb = w * day if w is not None else None
            secs = vtl.sum(cprobe, "secs", lb)
            count = vtl.count(cprobe, lb)
            f[f"cust_views_{sfx}"] = count
            f[f"cust_view_secs_{sfx}"] = secs
            f[f"cust_view_secs_mean_{sfx}"] = _ratio(secs, vtl.sum(cprobe, "n_secs", lb))
        views_all = count
        del vtl
        carts_all = _Timeline(np.where(is_cart, ecust, -1), et).count(cprobe)
        eprod = _codes(events["product_id"], cat.products)
        ecat = cat.product_cat[np.maximum(eprod, 0)]
        cc = np.where((ecust >= 0) & (eprod >= 0) & (ecat >= 0), ecust * ncat + ecat, -1)
        del eprod, ecat
        views_in = per_request(cat_rows, _Timeline(np.where(is_view, cc, -1), et).count(cc_probe))
        carts_in = per_request(cat_rows, _Timeline(np.where(is_cart, cc, -1), et).count(cc_probe))
        del cc, is_view, is_cart
        # searches and the learned tokens
        s_idx = np.flatnonzero(is_search & (ecust >= 0))
        stl = _Timeline(ecust[s_idx], et[s_idx], {"row": np.arange(len(s_idx), dtype=np.int64)},
                        keep_values=("row",))
        del et, ecust, is_search
        n_search = stl.count(cprobe)
        f["cust_searches_all"] = n_search
        if builder.tokens and "query" in events.columns and stl.n:
            qcode, pq, ptok = _query_tokens(events["query"].iloc[s_idx])
            vocab = pd.Index(builder.tokens)
            tk = vocab.get_indexer(pd.Index(ptok, dtype=object)) if len(ptok) else np.array([], dtype=np.int64)
            n_q = int(max(qcode.max(initial=-1), pq.max(initial=-1))) + 1
            hit = np.zeros((len(vocab), max(n_q, 1)), dtype=bool)
            hit[tk[tk >= 0], pq[tk >= 0]] = True
            srow_q = qcode[stl.values["row"]]  # query code of each search, in timeline order
            start, _, hi = stl.bounds(cprobe)
            for j, name in enumerate(token_cols):  # one column per learned token
                ind = np.where(srow_q >= 0, hit[j][np.maximum(srow_q, 0)], False)
                cum = np.concatenate([[0], np.cumsum(ind, dtype=np.int64)])
                f[name] = _ratio(cum[hi] - cum[start], n_search)
        else:
            for name in token_cols:
                f[name] = np.full(n, np.nan)
        del stl
    else:
        for w in [*windows, None]:
            sfx = f"{w}d" if w is not None else "all"
            f[f"cust_views_{sfx}"] = np.zeros(n)
            f[f"cust_view_secs_{sfx}"] = np.zeros(n)
            f[f"cust_view_secs_mean_{sfx}"] = np.full(n, np.nan)
        f["cust_searches_all"] = np.zeros(n)
        for name in token_cols:
            f[name] = np.full(n, np.nan)
    del cc_probe
    f["cust_carts_all"] = carts_all
    f["cust_views_bundle_cats"] = views_in
    f["cust_carts_bundle_cats"] = carts_in
    f["cust_view_share_bundle_cats"] = _ratio(views_in, views_all)
    f["cust_cart_share_bundle_cats"] = _ratio(carts_in, carts_all)
    f["cust_buy_share_bundle_cats"] = _ratio(buy_in, units)
    share = np.array([builder.category_view_share.get(str(c), 0.0) for c in cat.categories] or [0.0])
    g = per_request(cat_rows, share[cat_codes] if len(cat_codes) else np.array([]))
    a = _AFFINITY_PRIOR
    f["cust_cat_affinity"] = _ratio((views_in + a * g) / (views_all + a), g)
    del views_in, carts_in, views_all, carts_all, buy_in, units, g

    # ---- customer table ------------------------------------------------------------------------
    known_c = rc >= 0
    ci = np.maximum(rc, 0)
    if "region" in customers.columns and len(customers):
        region_codes = _codes(customers["region"].astype("string"), pd.Index(builder.regions, dtype=object))
        region_codes = np.where(known_c, region_codes[ci], -1)
    else:
        region_codes = np.full(n, -1, dtype=np.int64)
    if "signup_date" in customers.columns and len(customers):
        su = _us(customers["signup_date"])[ci]
        f["cust_tenure_days"] = np.where(known_c & (su != _NAT), (t - su) / day, np.nan)
    else:
        f["cust_tenure_days"] = np.full(n, np.nan)

    # ---- offers history ------------------------------------------------------------------------
    offers = _table(tables, "offers")
    if offers is not None:
        oft = _us(offers["offer_time"])
        ob = _codes(offers["bundle_id"], cat.bundles)
        acc = offers["accepted"].to_numpy(dtype=np.float64, na_value=np.nan)
        valid = np.isfinite(acc)
        acc_i = np.where(valid, acc, 0).astype(np.int64)
        price = offers["offered_price"].to_numpy(dtype=np.float64, na_value=np.nan)
        odisc = 1.0 - price / np.where(ob >= 0, cat.list_sum[np.maximum(ob, 0)], np.nan)
        has_disc = np.isfinite(odisc) & valid
        odisc = np.where(has_disc, odisc, 0.0)
        has_disc = has_disc.astype(np.int64)
        octl = _Timeline(np.where(valid, _codes(offers["customer_id"], cust_u), -1), oft,
                         {"acc": acc_i, "disc": odisc, "disc_acc": odisc * acc_i, "n_disc": has_disc,
                          "n_disc_acc": has_disc * acc_i})
        seen = octl.count(cprobe)
        accepted = octl.sum(cprobe, "acc")
        f["cust_offers_seen"] = seen
        f["cust_offers_accepted"] = accepted
        f["cust_accept_rate"] = _ratio(accepted, seen)
        d_all, d_acc = octl.sum(cprobe, "disc"), octl.sum(cprobe, "disc_acc")
        n_all, n_acc = octl.sum(cprobe, "n_disc"), octl.sum(cprobe, "n_disc_acc")
        f["cust_accepted_discount_mean"] = _ratio(d_acc, n_acc)
        f["cust_declined_discount_mean"] = _ratio(d_all - d_acc, n_all - n_acc)
        del octl, d_all, d_acc, n_all, n_acc
        btl = _Timeline(np.where(valid, ob, -1), oft, {"acc": acc_i})
        bprobe = _Probe(rb, t)
        bseen = btl.count(bprobe)
        f["bundle_offers_seen"] = bseen
        f["bundle_accept_rate"] = _ratio(btl.sum(bprobe, "acc"), bseen)
        del btl, bprobe
    else:
        for name in ("cust_offers_seen", "cust_offers_accepted", "bundle_offers_seen"):
            f[name] = np.zeros(n)
        for name in ("cust_accept_rate", "cust_accepted_discount_mean", "cust_declined_discount_mean",
                     "bundle_accept_rate"):
            f[name] = np.full(n, np.nan)
    del cprobe

    # ---- bundle ---------------------------------------------------------------------------------
    list_sum, cost_sum = cat.list_sum[rb], cat.cost_sum[rb]
    f["bundle_n_items"] = cat.n_items[rb]
    f["bundle_list_to_cost"] = _ratio(list_sum, cost_sum)
    main_codes = pd.Index(builder.categories, dtype=object).get_indexer(
        pd.Index(np.asarray(cat.categories, dtype=object))) if len(cat.categories) else np.array([], dtype=np.int64)
    main = cat.main_cat[rb]
    main_codes = np.where(main >= 0, main_codes[np.maximum(main, 0)] if len(main_codes) else -1, -1)
    f["bundle_n_categories"] = cat.n_cats[rb]
    pb, pa_, pb_ = _bundle_pairs(cat)
    lift_mean, lift_max = np.full(len(cat.bundles), np.nan), np.full(len(cat.bundles), np.nan)
    ok = (pa_ >= 0) & (pb_ >= 0)
    if ok.any() and builder.pair_lift:
        keys = _pair_keys(np.asarray(cat.products[pa_[ok]], dtype=object),
                          np.asarray(cat.products[pb_[ok]], dtype=object))
        val = pd.Series(builder.pair_lift, dtype=np.float64).reindex(keys).to_numpy()
        b = pb[ok]
        fin = np.isfinite(val)
        cnt = np.bincount(b[fin], minlength=len(cat.bundles))
        lift_mean = _ratio(np.bincount(b[fin], weights=val[fin], minlength=len(cat.bundles)), cnt)
        np.fmax.at(lift_max, b[fin], val[fin])
    f["bundle_lift_mean"] = lift_mean[rb]
    f["bundle_lift_max"] = lift_max[rb]

    # ---- market ---------------------------------------------------------------------------------
    comp_sum, coverage = _competitor(tables, cat, rb, t, int(cfg.competitor_max_age_days))
    f["competitor_to_list"] = _ratio(comp_sum, list_sum)
    f["competitor_coverage"] = coverage

    # ---- calendar -------------------------------------------------------------------------------
    for name, values in _calendar(t, [s.model_dump() for s in cfg.calendar]).items():
        f[name] = values

    # ---- frame: float32 block, categoricals, float64 helpers --------------------------------------
    out = f.frame(requests.index)
    out["region"] = pd.Categorical.from_codes(region_codes, categories=pd.Index(builder.regions, dtype=object))
    out["bundle_main_category"] = pd.Categorical.from_codes(
        main_codes, categories=pd.Index(builder.categories, dtype=object))
    out["list_sum"] = list_sum
    out["cost_sum"] = cost_sum
    out["competitor_sum"] = comp_sum
    return out


# --------------------------------------------------------------------------------------------------
# price features and the model matrix
# --------------------------------------------------------------------------------------------------
def price_features(context: pd.DataFrame, price: np.ndarray | pd.Series | float) -> pd.DataFrame:
    """The :data:`PRICE_FEATURES` for ``price`` (one per context row, or a scalar), same index as ``context``.

    float64, computed only from the :data:`HELPER_COLUMNS` of ``context`` (a :func:`context_features`
    frame, or an assembled X, whose copies of them are float32): scoring a price ladder means calling
    this once per rung (or once on a context repeated per rung) without recomputing the context.
    """
    n = len(context)
    p = np.asarray(price.to_numpy() if isinstance(price, pd.Series) else price, dtype=np.float64)
    p = np.broadcast_to(p, (n,)) if p.ndim == 0 else p
    if p.shape != (n,):
        raise ValueError(f"price has shape {p.shape}; expected ({n},) or a scalar")
    list_sum = context["list_sum"].to_numpy(dtype=np.float64)
    cost_sum = context["cost_sum"].to_numpy(dtype=np.float64)
    comp = context["competitor_sum"].to_numpy(dtype=np.float64)
    return pd.DataFrame(
        {
            "price": p,
            "discount_pct": 1.0 - p / list_sum,
            "price_to_competitor": p / comp,
            "price_to_cost": p / cost_sum,
        },
        index=context.index,
    )


def category_codes(values: pd.Series, levels: list[str]) -> np.ndarray:
    """Codes of ``values`` in the builder's fixed ``levels`` as float32 (NaN: missing or unseen level).

    The model matrix carries categoricals as codes (LightGBM is told which columns are categorical by
    name) rather than pandas 'category': that dtype does not survive MLflow's JSON serving path, so a
    model trained on it could not be served from the registry.
    """
    index = pd.Index(levels, dtype=object)
    if isinstance(values.dtype, pd.CategoricalDtype) and list(values.cat.categories) == list(index):
        codes = values.cat.codes.to_numpy()
    else:
        codes = index.get_indexer(values.astype(object))
    return np.where(codes >= 0, codes, np.nan).astype(np.float32)


def assemble(context: pd.DataFrame, prices: pd.DataFrame, builder: FeatureBuilder) -> pd.DataFrame:
    """The model matrix X: columns ``builder.feature_names`` in order.

    Numeric columns are float32 in one block (LightGBM bins them anyway; this halves the memory of X and
    of LightGBM's own copy); categoricals (``builder.categorical``) are float32 codes of the builder's
    fixed levels (:func:`category_codes`; unseen values become NaN). Rows follow ``context``
    (``prices`` is aligned by position).
    """
    if len(prices) != len(context):
        raise ValueError(f"context has {len(context)} rows but prices has {len(prices)}")
    names = builder.feature_names
    numeric = [c for c in names if c not in CATEGORICAL_FEATURES]
    mat = np.empty((len(context), len(numeric)), dtype=np.float32, order="F")
    for j, name in enumerate(numeric):
        src = prices if name in PRICE_FEATURES else context
        if name not in src.columns:
            raise KeyError(f"column {name!r} missing from the {'prices' if src is prices else 'context'} frame")
        mat[:, j] = src[name].to_numpy(dtype=np.float32, na_value=np.nan)
    X = pd.DataFrame(mat, columns=numeric, index=context.index, copy=False)
    for name in CATEGORICAL_FEATURES:
        X.insert(names.index(name), name, category_codes(context[name], builder.levels(name)))
    return X


def offer_training_frame(
    builder: FeatureBuilder, tables: dict[str, pd.DataFrame], offers: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, np.ndarray, pd.Series, pd.Series]:
    """(X, y, offer_time, offer_id) for every row of ``offers`` (default ``tables["offers"]``; same order).

    X: :func:`assemble` of the offer's context (rows of ``tables`` strictly before the offer, the offers
    log included) and its offered price; y: ``accepted`` (int8). Each offer's own outcome, and every later
    row, is invisible to its features. Pass a subset as ``offers`` (e.g. a holdout) with the full
    ``tables``, never ``{**tables, "offers": subset}``: that would hide the earlier offers from the
    offer-history features.
    """
    if offers is None:
        offers = tables.get("offers")
    if offers is None:
        raise ValueError("tables['offers'] is needed to build a training frame")
    requests = pd.DataFrame(
        {"customer_id": offers["customer_id"], "bundle_id": offers["bundle_id"], "time": offers["offer_time"]},
        index=offers.index,
    )
    ctx = context_features(builder, tables, requests)
    prices = price_features(ctx, offers["offered_price"].to_numpy(dtype=np.float64, na_value=np.nan))
    X = assemble(ctx, prices, builder)
    del ctx, prices
    y = offers["accepted"].to_numpy(dtype=np.int8, na_value=-1)
    return X, y, offers["offer_time"], offers["offer_id"]
