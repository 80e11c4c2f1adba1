"""Candidate bundles mined from co-purchases (frequent itemsets of size 2 and 3).

Pure, typed functions on contract tables; no I/O and no orchestration here.

Definitions (N = number of baskets after the optional point-in-time cut):

* **basket**: one per ``order_id``: the set of *distinct* ``product_id`` of its lines (quantity is
  ignored; lines with a missing id or a quantity <= 0 are dropped).
* **count(I)**: number of baskets holding every item of the itemset ``I``.
* **support(I)** = count(I) / N, kept when ``support >= min_support``.
* **confidence(X -> I\\X)** = count(I) / count(X). The ``confidence`` column is the *best* rule over
  every non-empty proper antecedent X of I, i.e. ``count(I) / min_{X proper subset} count(X)``
  (for a pair ``count(AB) / min(count(A), count(B))``; for a triple ``count(ABC) / min`` of its three
  pair counts). Pairs also get both directions: ``confidence_a_to_b`` = count(AB)/count(A) and
  ``confidence_b_to_a`` = count(AB)/count(B) where ``(a, b) = items``.
* **lift(I)** = P(I) / prod_i P(i) (full-independence lift): pairs ``P(AB) / (P(A) P(B))``, triples
  ``P(ABC) / (P(A) P(B) P(C))``. A triple's lift is on a larger scale than a pair's: it equals
  ``lift(AB) * P(C|AB) / P(C)`` for each of its pairs. :func:`mine_bundles` therefore ranks by
  ``lift_norm = lift ** (1 / (size - 1))`` (see there); ``lift`` itself is what the filters use.
* **min_basket_size**: every basket counts in N and in the single-item counts (the marginals P(A));
  only baskets with at least ``min_basket_size`` distinct items count as *co-purchase evidence*, i.e.
  in the counts of itemsets of size >= 2. With the default 2 this changes nothing (a one-item basket
  holds no pair), so the numbers equal the textbook / mlxtend definitions; a larger value ignores
  co-occurrences in small baskets (a conservative choice: it can only lower counts, support and lift).

Counting is vectorised: the basket x product incidence matrix X (scipy.sparse CSR) gives all pair
counts as ``X.T @ X`` restricted to frequent items; triples are counted only as extensions of frequent
pairs (apriori: a triple can only be frequent when its pairs and items are), as
``(X[:, a] * X[:, b]).T @ X`` in chunks of pairs. No Python loop runs over baskets.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pricing.contract import BUNDLE_ITEM_SEP

__all__ = [
    "BUNDLE_COLUMNS",
    "ITEMSET_COLUMNS",
    "Baskets",
    "MiningRules",
    "baskets",
    "bundle_id_for",
    "itemset_stats",
    "mine_bundles",
    "pair_lift",
    "pair_lift_lookup",
]

ITEMSET_COLUMNS: tuple[str, ...] = (
    "items",
    "size",
    "count",
    "support",
    "confidence",
    "confidence_a_to_b",
    "confidence_b_to_a",
    "lift",
)

BUNDLE_COLUMNS: tuple[str, ...] = (
    "bundle_id",
    "product_ids",
    "n_items",
    "count",
    "support",
    "confidence",
    "lift",
    "lift_norm",
    "margin",
    "score",
    "rank",
)

_PAIR_CHUNK = 4096  # frequent pairs extended to triples per sparse product (bounds memory)


@dataclass(frozen=True)
class MiningRules:
    """Rules of :func:`mine_bundles`; every threshold is configurable.

    * ``min_support``: share of baskets (all baskets, see module doc) holding the whole itemset.
    * ``min_lift`` / ``min_confidence``: lower bounds (inclusive) on ``lift`` and ``confidence``
      (best rule) as defined in the module doc.
    * ``max_items``: 2 (pairs only) or 3 (pairs and triples).
    * ``max_candidates``: number of bundles returned, best score first.
    * ``min_basket_size``: baskets with fewer distinct items still count in the denominator N and in
      the item marginals, but not as co-purchase evidence (see module doc). 2 = textbook definitions.
    * ``allowed_category_mixes``: ``None`` = any; else a bundle is kept when the sorted tuple of its
      *distinct* categories equals one of the given tuples (compared after sorting and de-duplicating,
      so ``("home", "garden")`` allows every bundle whose categories are exactly {garden, home};
      ``("home",)`` allows bundles made only of home products).
    * ``exclude_same_product``: product ids that differ only by case or surrounding blanks
      (``"15056BL"`` vs ``"15056bl"`` in real data) are treated as the same product, and a bundle made
      of such twins is dropped. (Distinct ids of one basket are distinct items by construction.)
    * ``max_per_product``: diversity; walking the ranking greedily, a product enters at most this many
      returned bundles (``None`` = no limit).
    """

    min_support: float = 0.005
    min_lift: float = 1.5
    min_confidence: float = 0.0
    max_items: int = 3
    max_candidates: int = 200
    min_basket_size: int = 2
    allowed_category_mixes: tuple[tuple[str, ...], ...] | None = None
    exclude_same_product: bool = True
    max_per_product: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_support <= 1.0:
            raise ValueError(f"min_support must lie in [0, 1], got {self.min_support}")
        if self.min_lift < 0:
            raise ValueError(f"min_lift must be >= 0, got {self.min_lift}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1], got {self.min_confidence}")
        if self.max_items not in (2, 3):
            raise ValueError(f"max_items must be 2 or 3, got {self.max_items}")
        if self.max_candidates < 0:
            raise ValueError(f"max_candidates must be >= 0, got {self.max_candidates}")
        if self.min_basket_size < 1:
            raise ValueError(f"min_basket_size must be >= 1, got {self.min_basket_size}")
        if self.max_per_product is not None and self.max_per_product < 1:
            raise ValueError(f"max_per_product must be >= 1 or None, got {self.max_per_product}")


@dataclass(frozen=True)
class Baskets:
    """Baskets as a sparse incidence matrix.

    ``matrix[i, j] == 1`` when basket ``order_ids[i]`` holds product ``product_ids[j]``. Both id
    arrays are sorted (natural order of their dtype), so item indices follow product-id order.
    """

    order_ids: np.ndarray
    product_ids: np.ndarray
    matrix: sp.csr_matrix = field(repr=False)

    @property
    def n_baskets(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_products(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def sizes(self) -> np.ndarray:
        """Distinct items per basket."""
        return np.diff(self.matrix.indptr)

    def item_counts(self) -> np.ndarray:
        """Baskets holding each product (aligned with ``product_ids``)."""
        return np.bincount(self.matrix.indices, minlength=self.n_products)

    def to_frame(self) -> pd.DataFrame:
        """Long form: one row per (order_id, product_id)."""
        rows = np.repeat(np.arange(self.n_baskets), self.sizes)
        return pd.DataFrame(
            {"order_id": self.order_ids[rows], "product_id": self.product_ids[self.matrix.indices]}
        )


# --------------------------------------------------------------------------------------------------
# baskets
# --------------------------------------------------------------------------------------------------


def _as_naive_utc(ts: pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _before_mask(order_time: pd.Series, before: pd.Timestamp) -> np.ndarray:
    """Lines strictly before ``before``; naive timestamps mean UTC (contract), aware ones are converted."""
    t = order_time if pd.api.types.is_datetime64_any_dtype(order_time) else pd.to_datetime(order_time)
    if isinstance(t.dtype, pd.DatetimeTZDtype):
        t = t.dt.tz_convert("UTC").dt.tz_localize(None)
    return (t < _as_naive_utc(before)).to_numpy(dtype=bool, na_value=False)


def baskets(orders: pd.DataFrame, before: pd.Timestamp | None = None) -> Baskets:
    """One basket per ``order_id``: its distinct products, optionally only lines with ``order_time < before``.

    Lines with a missing ``order_id``/``product_id`` or (when the column exists) ``quantity <= 0`` are
    ignored. The point-in-time cut is strict, so an order placed exactly at ``before`` is excluded.
    """
    missing = {"order_id", "product_id"} - set(orders.columns)
    if missing:
        raise KeyError(f"orders lacks columns {sorted(missing)}")
    keep = orders["order_id"].notna().to_numpy() & orders["product_id"].notna().to_numpy()
    if "quantity" in orders.columns:
        keep &= (pd.to_numeric(orders["quantity"], errors="coerce") > 0).to_numpy(dtype=bool, na_value=False)
    if before is not None:
        if "order_time" not in orders.columns:
            raise KeyError("orders lacks column 'order_time' needed for the point-in-time cut")
        keep &= _before_mask(orders["order_time"], before)
    sub = orders.loc[keep, ["order_id", "product_id"]]
    o_codes, o_uni = pd.factorize(sub["order_id"], sort=True)
    p_codes, p_uni = pd.factorize(sub["product_id"], sort=True)
    n_o, n_p = len(o_uni), len(p_uni)
    key = np.unique(o_codes.astype(np.int64) * max(n_p, 1) + p_codes)  # distinct (order, product), sorted
    rows, cols = np.divmod(key, max(n_p, 1))
    indptr = np.zeros(n_o + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_o), out=indptr[1:])
    matrix = sp.csr_matrix(
        (np.ones(len(key), dtype=np.int32), cols.astype(np.int32), indptr), shape=(n_o, n_p)
    )
    return Baskets(order_ids=np.asarray(o_uni), product_ids=np.asarray(p_uni), matrix=matrix)


# --------------------------------------------------------------------------------------------------
# itemset statistics
# --------------------------------------------------------------------------------------------------


def _empty_stats() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "items": pd.Series([], dtype=object),
            "size": pd.Series([], dtype=np.int64),
            "count": pd.Series([], dtype=np.int64),
            **{c: pd.Series([], dtype=np.float64) for c in ITEMSET_COLUMNS[3:]},
        }
    )


def _min_count(min_support: float, n: int) -> int:
    """Smallest count with ``count / n >= min_support`` (at least 1: an itemset must occur)."""
    return max(1, math.ceil(min_support * n - 1e-9))


def _pair_counts(
    xf: sp.csr_matrix, min_count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, sp.csr_matrix]:
    """Pairs ``i < j`` (local item indices) with ``count >= min_count``, and the full co-count matrix."""
    co = (xf.T @ xf).tocsr()
    upper = sp.triu(co, k=1).tocoo()
    ok = upper.data >= min_count
    return upper.row[ok].astype(np.int64), upper.col[ok].astype(np.int64), upper.data[ok].astype(np.int64), co


def _triple_counts(
    xf: sp.csr_matrix, pa: np.ndarray, pb: np.ndarray, min_count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Triples ``a < b < c`` extending frequent pairs ``(a, b)`` by a frequent item ``c``."""
    xt = xf.T.tocsr()  # items x baskets
    out: list[tuple[np.ndarray, ...]] = []
    for start in range(0, len(pa), _PAIR_CHUNK):
        a, b = pa[start : start + _PAIR_CHUNK], pb[start : start + _PAIR_CHUNK]
        both = xt[a].multiply(xt[b]).tocsr()  # chunk x baskets: baskets holding a and b
        ext = (both @ xf).tocoo()  # chunk x items: count(a, b, c)
        ok = (ext.data >= min_count) & (ext.col > b[ext.row])
        r = ext.row[ok]
        out.append((a[r], b[r], ext.col[ok].astype(np.int64), ext.data[ok].astype(np.int64)))
    if not out:
        e = np.array([], dtype=np.int64)
        return e, e, e, e
    return tuple(np.concatenate(parts) for parts in zip(*out))  # type: ignore[return-value]


def itemset_stats(
    orders: pd.DataFrame | Baskets,
    max_items: int = 3,
    min_support: float = 0.005,
    min_basket_size: int = 2,
    before: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Frequent itemsets of 1..``max_items`` products with count, support, confidence and lift.

    ``orders`` is an orders table (see :func:`baskets`) or ready :class:`Baskets` (then ``before`` must
    be None). Returns one row per itemset with ``support >= min_support`` and columns
    :data:`ITEMSET_COLUMNS`: ``items`` (tuple of product ids, sorted), ``size``, ``count``, ``support``,
    ``confidence`` (best rule; NaN for single items), ``confidence_a_to_b``/``confidence_b_to_a``
    (pairs only, else NaN) and ``lift`` (1.0 for single items). Definitions in the module doc.
    Rows are ordered by size, then count (descending), then items.
    """
    if max_items not in (1, 2, 3):
        raise ValueError(f"max_items must be 1, 2 or 3, got {max_items}")
    if not 0.0 <= min_support <= 1.0:
        raise ValueError(f"min_support must lie in [0, 1], got {min_support}")
    if isinstance(orders, Baskets):
        if before is not None:
            raise ValueError("pass `before` to baskets(), not with ready Baskets")
        bk = orders
    else:
        bk = baskets(orders, before=before)
    n = bk.n_baskets
    if n == 0 or bk.n_products == 0:
        return _empty_stats()
    min_count = _min_count(min_support, n)
    item_counts = bk.item_counts().astype(np.int64)
    freq = np.flatnonzero(item_counts >= min_count)  # global item indices of frequent items
    p_item = item_counts / n

    idx_parts: list[np.ndarray] = [freq[:, None]]  # itemsets as arrays of global item indices
    cnt_parts: list[np.ndarray] = [item_counts[freq]]
    conf_parts: list[np.ndarray] = [np.full(len(freq), np.nan)]
    ab_parts: list[np.ndarray] = [np.full(len(freq), np.nan)]
    ba_parts: list[np.ndarray] = [np.full(len(freq), np.nan)]

    if max_items >= 2 and len(freq) >= 2:
        rows_ok = np.flatnonzero(bk.sizes >= min_basket_size)
        xf = bk.matrix[rows_ok][:, freq].tocsr()
        xf.sum_duplicates()
        la, lb, c2, co = _pair_counts(xf, min_count)
        ga, gb = freq[la], freq[lb]
        conf_ab, conf_ba = c2 / item_counts[ga], c2 / item_counts[gb]
        idx_parts.append(np.stack([ga, gb], axis=1))
        cnt_parts.append(c2)
        conf_parts.append(np.maximum(conf_ab, conf_ba))
        ab_parts.append(conf_ab)
        ba_parts.append(conf_ba)

        if max_items >= 3 and len(la) > 0:
            ta, tb, tc, c3 = _triple_counts(xf, la, lb, min_count)
            if len(c3):
                sub_ab = np.asarray(co[ta, tb]).ravel()
                sub_ac = np.asarray(co[ta, tc]).ravel()
                sub_bc = np.asarray(co[tb, tc]).ravel()
                idx_parts.append(np.stack([freq[ta], freq[tb], freq[tc]], axis=1))
                cnt_parts.append(c3)
                conf_parts.append(c3 / np.minimum(np.minimum(sub_ab, sub_ac), sub_bc))
                ab_parts.append(np.full(len(c3), np.nan))
                ba_parts.append(np.full(len(c3), np.nan))

    frames = []
    for idx, cnt, conf, cab, cba in zip(idx_parts, cnt_parts, conf_parts, ab_parts, ba_parts):
        if len(cnt) == 0:
            continue
        k = idx.shape[1]
        support = cnt / n
        lift = support / np.prod(p_item[idx], axis=1) if k > 1 else np.ones(len(cnt))
        order = np.lexsort(tuple(idx[:, j] for j in range(k - 1, -1, -1)) + (-cnt,))
        idx = idx[order]
        pids = [bk.product_ids[idx[:, j]] for j in range(k)]
        frames.append(
            pd.DataFrame(
                {
                    "items": pd.Series(list(zip(*pids)), dtype=object),
                    "size": np.full(len(cnt), k, dtype=np.int64),
                    "count": cnt[order].astype(np.int64),
                    "support": support[order],
                    "confidence": conf[order],
                    "confidence_a_to_b": cab[order],
                    "confidence_b_to_a": cba[order],
                    "lift": lift[order],
                }
            )
        )
    if not frames:
        return _empty_stats()
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# pair lift lookup (bundle feature)
# --------------------------------------------------------------------------------------------------


def pair_lift_lookup(stats: pd.DataFrame) -> pd.DataFrame:
    """Co-purchase statistics of product pairs, in both orientations, for features and joins.

    Returns a frame indexed by ``(product_a, product_b)`` (sorted, unique) with columns ``count``,
    ``support``, ``lift`` (symmetric) and ``confidence`` = P(b | a). Each frequent pair of ``stats``
    appears twice, as (a, b) and (b, a). Pairs absent from ``stats`` fell below its min_support: use
    :func:`pair_lift` for a default, or ``stats`` mined with a lower ``min_support``.
    """
    pairs = stats.loc[stats["size"] == 2]
    a = pairs["items"].map(lambda t: t[0]).to_numpy()
    b = pairs["items"].map(lambda t: t[1]).to_numpy()
    fwd = pd.DataFrame(
        {
            "product_a": a,
            "product_b": b,
            "count": pairs["count"].to_numpy(),
            "support": pairs["support"].to_numpy(),
            "lift": pairs["lift"].to_numpy(),
            "confidence": pairs["confidence_a_to_b"].to_numpy(),
        }
    )
    bwd = fwd.assign(product_a=b, product_b=a, confidence=pairs["confidence_b_to_a"].to_numpy())
    both = pd.concat([fwd, bwd], ignore_index=True)
    if both.empty:
        both = both.astype(
            {"count": np.int64, "support": np.float64, "lift": np.float64, "confidence": np.float64}
        )
    return both.set_index(["product_a", "product_b"]).sort_index()


def pair_lift(lookup: pd.DataFrame, a: object, b: object, default: float = float("nan")) -> float:
    """Lift of products ``a`` and ``b`` from :func:`pair_lift_lookup`, ``default`` when not frequent."""
    try:
        return float(lookup.at[(a, b), "lift"])
    except KeyError:
        return default


# --------------------------------------------------------------------------------------------------
# candidate bundles
# --------------------------------------------------------------------------------------------------


def bundle_id_for(product_ids: str) -> str:
    """Stable id of a bundle: ``"B-"`` + first 12 hex digits of sha1 of its ``"a|b|c"`` product ids.

    Independent of rank and run, so the same product set keeps its id across retrainings.
    """
    return "B-" + hashlib.sha1(product_ids.encode("utf-8")).hexdigest()[:12]


def _empty_bundles() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bundle_id": pd.Series([], dtype=object),
            "product_ids": pd.Series([], dtype=object),
            "n_items": pd.Series([], dtype=np.int64),
            "count": pd.Series([], dtype=np.int64),
            "support": pd.Series([], dtype=np.float64),
            "confidence": pd.Series([], dtype=np.float64),
            "lift": pd.Series([], dtype=np.float64),
            "lift_norm": pd.Series([], dtype=np.float64),
            "margin": pd.Series([], dtype=np.float64),
            "score": pd.Series([], dtype=np.float64),
            "rank": pd.Series([], dtype=np.int64),
        }
    )


def _normalise_mix(mix: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({str(c) for c in mix}))


def _diverse(items: list[tuple], max_per_product: int | None, limit: int) -> list[int]:
    """Positions kept walking the ranking: each product used at most ``max_per_product`` times."""
    kept: list[int] = []
    used: dict[object, int] = {}
    for pos, its in enumerate(items):
        if len(kept) >= limit:
            break
        if max_per_product is not None and any(used.get(p, 0) >= max_per_product for p in its):
            continue
        kept.append(pos)
        for p in its:
            used[p] = used.get(p, 0) + 1
    return kept


def mine_bundles(
    orders: pd.DataFrame,
    products: pd.DataFrame,
    rules: MiningRules = MiningRules(),
    before: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Candidate bundles from co-purchases, in the contract ``bundles`` format plus statistics.

    Frequent itemsets of 2..``rules.max_items`` products (:func:`itemset_stats`) are filtered by
    ``min_lift``, ``min_confidence``, ``exclude_same_product`` and ``allowed_category_mixes``; itemsets
    holding a product missing from ``products`` are dropped (no margin). They are ranked by

        ``score = lift_norm * margin``, with ``margin = sum(list_price) - sum(unit_cost)`` over the
        bundle's items and ``lift_norm = lift ** (1 / (n_items - 1))``

    (ties: higher support, then product ids), thinned by ``max_per_product`` and cut at
    ``max_candidates``. ``lift_norm`` is the lift itself for a pair; for a triple it is the geometric
    mean lift per added item, which puts pairs and triples on one scale: the full-independence lift of
    a triple grows like 1/P^2 where a pair's grows like 1/P, so ranking by raw lift would put triples
    of rare products first, and a strong pair plus an unrelated third product (lift L) would outrank
    the pair itself (its lift_norm is sqrt(L) < L). Filters (``min_lift``) use the raw ``lift``.

    Columns :data:`BUNDLE_COLUMNS`: ``bundle_id`` (:func:`bundle_id_for`), ``product_ids`` (sorted
    ids joined by ``|``), ``n_items``, ``count``, ``support``, ``confidence``, ``lift``,
    ``lift_norm``, ``margin``, ``score``, ``rank`` (1 = best). Deterministic for the same inputs.
    """
    stats = itemset_stats(
        orders,
        max_items=rules.max_items,
        min_support=rules.min_support,
        min_basket_size=rules.min_basket_size,
        before=before,
    )
    cand = stats.loc[
        (stats["size"] >= 2)
        & (stats["lift"] >= rules.min_lift)
        & (stats["confidence"] >= rules.min_confidence)
    ].reset_index(drop=True)
    if cand.empty or rules.max_candidates == 0:
        return _empty_bundles()

    long = (
        cand[["items"]]
        .assign(iid=np.arange(len(cand)))
        .explode("items")
        .rename(columns={"items": "product_id"})
    )
    prod = products[["product_id", "category", "unit_cost", "list_price"]].drop_duplicates("product_id")
    long = long.merge(prod, on="product_id", how="left", validate="many_to_one")
    unknown = long["unit_cost"].isna() | long["list_price"].isna()
    keep = ~unknown.groupby(long["iid"]).any().to_numpy(dtype=bool)  # fresh, writable array
    agg = long.groupby("iid").agg(list_sum=("list_price", "sum"), cost_sum=("unit_cost", "sum"))

    if rules.exclude_same_product:
        norm = long["product_id"].astype(str).str.strip().str.casefold()
        distinct = norm.groupby(long["iid"]).nunique().to_numpy()
        keep = keep & (distinct == cand["size"].to_numpy())

    if rules.allowed_category_mixes is not None:
        cats = long[["iid", "category"]].dropna().astype({"category": str}).drop_duplicates()
        n_cats = cats.groupby("iid").size().reindex(range(len(cand)), fill_value=0).to_numpy()
        match = np.zeros(len(cand), dtype=bool)
        for mix in {_normalise_mix(m) for m in rules.allowed_category_mixes}:
            inside = cats["category"].isin(mix).groupby(cats["iid"]).sum()
            inside = inside.reindex(range(len(cand)), fill_value=0).to_numpy()
            match |= (n_cats == len(mix)) & (inside == len(mix))  # categories are exactly the mix
        keep = keep & match

    cand = cand.assign(margin=(agg["list_sum"] - agg["cost_sum"]).to_numpy())[keep].reset_index(drop=True)
    if cand.empty:
        return _empty_bundles()
    cand["product_ids"] = cand["items"].map(lambda t: BUNDLE_ITEM_SEP.join(map(str, t)))
    cand["lift_norm"] = cand["lift"] ** (1.0 / (cand["size"] - 1))
    cand["score"] = cand["lift_norm"] * cand["margin"]
    cand = cand.sort_values(
        ["score", "support", "product_ids"], ascending=[False, False, True], kind="mergesort"
    ).reset_index(drop=True)

    kept = _diverse(list(cand["items"]), rules.max_per_product, rules.max_candidates)
    out = cand.iloc[kept].reset_index(drop=True)
    out["bundle_id"] = out["product_ids"].map(bundle_id_for)
    if out["bundle_id"].duplicated().any():  # sha1 prefix collision: astronomically unlikely, never silent
        raise RuntimeError("bundle_id collision; lengthen the hash prefix in bundle_id_for")
    out["n_items"] = out["size"].astype(np.int64)
    out["rank"] = np.arange(1, len(out) + 1, dtype=np.int64)
    return out[list(BUNDLE_COLUMNS)]
