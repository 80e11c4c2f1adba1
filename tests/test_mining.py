"""Tests of pricing.mining: hand-computed statistics, brute force on real Online Retail baskets,
bundle rules and the point-in-time cut."""

from __future__ import annotations

import collections
import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pricing.contract import BUNDLE_ITEM_SEP
from pricing.mining import (
    BUNDLE_COLUMNS,
    ITEMSET_COLUMNS,
    Baskets,
    MiningRules,
    baskets,
    bundle_id_for,
    itemset_stats,
    mine_bundles,
    pair_lift,
    pair_lift_lookup,
)

DEFAULT_RETAIL = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "datasets"
    / "online_retail"
    / "online_retail_2010-12_2011-12.csv.gz"
)
T0 = pd.Timestamp("2024-01-01 10:00")


# --------------------------------------------------------------------------------------------------
# tiny hand-made baskets
# --------------------------------------------------------------------------------------------------
#   o1: A B C    o2: A B    o3: A C    o4: B    o5: A B C          N = 5
#   counts: A 4, B 4, C 3, AB 3, AC 3, BC 2, ABC 2


def _orders(rows: list[tuple[str, str, int]], hours: list[int] | None = None) -> pd.DataFrame:
    """rows: (order_id, product_id, quantity); order time = T0 + order number hours unless given."""
    df = pd.DataFrame(rows, columns=["order_id", "product_id", "quantity"])
    if hours is None:
        hours = [int(o[1:]) for o in df["order_id"]]
    df["order_time"] = T0 + pd.to_timedelta(hours, unit="h")
    df["customer_id"] = "c1"
    df["unit_price"] = 1.0
    df["bundle_id"] = None
    return df


@pytest.fixture
def tiny() -> pd.DataFrame:
    return _orders(
        [
            ("o1", "A", 1),
            ("o1", "B", 1),
            ("o1", "C", 2),
            ("o1", "A", 3),  # same product twice in one order: still one item of the basket
            ("o2", "A", 1),
            ("o2", "B", 1),
            ("o3", "A", 1),
            ("o3", "C", 1),
            ("o4", "B", 1),
            ("o4", "D", 0),  # quantity 0 is ignored (not a purchase)
            ("o5", "C", 1),
            ("o5", "B", 1),
            ("o5", "A", 1),
        ]
    )


def _row(stats: pd.DataFrame, items: tuple) -> pd.Series:
    hit = stats.loc[stats["items"] == items]
    assert len(hit) == 1, f"{items} not found exactly once"
    return hit.iloc[0]


def test_baskets_distinct_items_and_sorted_ids(tiny):
    b = baskets(tiny)
    assert isinstance(b, Baskets)
    assert list(b.order_ids) == ["o1", "o2", "o3", "o4", "o5"]
    assert list(b.product_ids) == ["A", "B", "C"]  # D only with quantity 0
    assert list(b.sizes) == [3, 2, 2, 1, 3]
    assert list(b.item_counts()) == [4, 4, 3]
    assert b.matrix.max() == 1
    frame = b.to_frame()
    assert len(frame) == 11 and not frame.duplicated().any()


def test_itemset_stats_hand_computed(tiny):
    s = itemset_stats(tiny, max_items=3, min_support=0.0)
    assert list(s.columns) == list(ITEMSET_COLUMNS)
    assert s["items"].tolist() == [
        ("A",), ("B",), ("C",),
        ("A", "B"), ("A", "C"), ("B", "C"),
        ("A", "B", "C"),
    ]  # fmt: skip
    n = 5
    pa, pb, pc = 4 / n, 4 / n, 3 / n

    a = _row(s, ("A",))
    assert a["count"] == 4 and a["support"] == pytest.approx(0.8) and a["lift"] == 1.0
    assert np.isnan(a["confidence"])

    ab = _row(s, ("A", "B"))
    assert ab["count"] == 3 and ab["size"] == 2
    assert ab["support"] == pytest.approx(3 / 5)
    assert ab["lift"] == pytest.approx((3 / 5) / (pa * pb))  # 0.9375
    assert ab["confidence_a_to_b"] == pytest.approx(3 / 4)
    assert ab["confidence_b_to_a"] == pytest.approx(3 / 4)
    assert ab["confidence"] == pytest.approx(3 / 4)

    ac = _row(s, ("A", "C"))
    assert ac["lift"] == pytest.approx((3 / 5) / (pa * pc))  # 1.25
    assert ac["confidence_a_to_b"] == pytest.approx(3 / 4)  # A -> C
    assert ac["confidence_b_to_a"] == pytest.approx(1.0)  # C -> A
    assert ac["confidence"] == pytest.approx(1.0)

    bc = _row(s, ("B", "C"))
    assert bc["count"] == 2 and bc["lift"] == pytest.approx((2 / 5) / (pb * pc))

    abc = _row(s, ("A", "B", "C"))
    assert abc["count"] == 2 and abc["size"] == 3
    assert abc["support"] == pytest.approx(2 / 5)
    assert abc["lift"] == pytest.approx((2 / 5) / (pa * pb * pc))  # 1.041666...
    assert abc["confidence"] == pytest.approx(2 / 2)  # best rule: BC -> A
    assert np.isnan(abc["confidence_a_to_b"]) and np.isnan(abc["confidence_b_to_a"])


def test_min_support_is_inclusive_and_prunes(tiny):
    s = itemset_stats(tiny, min_support=0.6)  # count >= 3 (0.6 * 5 is 3.0000000000000004 in floats)
    assert s["items"].tolist() == [("A",), ("B",), ("C",), ("A", "B"), ("A", "C")]
    s = itemset_stats(tiny, min_support=0.61)  # count >= 4: no pair
    assert s["items"].tolist() == [("A",), ("B",)]
    s = itemset_stats(tiny, min_support=0.4, max_items=2)
    assert s["size"].max() == 2 and len(s) == 6
    assert itemset_stats(tiny, max_items=1, min_support=0.0)["size"].tolist() == [1, 1, 1]


def test_min_basket_size_keeps_denominator_and_marginals(tiny):
    s = itemset_stats(tiny, min_support=0.0, min_basket_size=3)  # only o1 and o5 give co-purchases
    assert _row(s, ("A",))["count"] == 4  # marginals from every basket
    ab = _row(s, ("A", "B"))
    assert ab["count"] == 2 and ab["support"] == pytest.approx(2 / 5)  # N stays 5
    assert ab["lift"] == pytest.approx((2 / 5) / (0.8 * 0.8))
    assert _row(s, ("A", "B", "C"))["count"] == 2
    # default 2 is the textbook definition (a one-item basket holds no pair)
    pd.testing.assert_frame_equal(
        itemset_stats(tiny, min_support=0.0, min_basket_size=1),
        itemset_stats(tiny, min_support=0.0, min_basket_size=2),
    )


def test_empty_orders_give_empty_frames(tiny):
    empty = tiny.iloc[0:0]
    s = itemset_stats(empty)
    assert s.empty and list(s.columns) == list(ITEMSET_COLUMNS)
    b = mine_bundles(empty, _tiny_products())
    assert b.empty and list(b.columns) == list(BUNDLE_COLUMNS)
    assert pair_lift_lookup(s).empty


def test_pair_lift_lookup_symmetric(tiny):
    s = itemset_stats(tiny, min_support=0.0)
    lk = pair_lift_lookup(s)
    assert len(lk) == 6  # 3 pairs x 2 orientations
    assert lk.loc[("A", "C"), "lift"] == lk.loc[("C", "A"), "lift"] == pytest.approx(1.25)
    assert lk.loc[("A", "C"), "confidence"] == pytest.approx(3 / 4)  # P(C | A)
    assert lk.loc[("C", "A"), "confidence"] == pytest.approx(1.0)  # P(A | C)
    assert pair_lift(lk, "B", "C") == pytest.approx((2 / 5) / (0.8 * 0.6))
    assert np.isnan(pair_lift(lk, "A", "Z"))
    assert pair_lift(lk, "A", "Z", default=1.0) == 1.0


# --------------------------------------------------------------------------------------------------
# point in time
# --------------------------------------------------------------------------------------------------


def test_before_excludes_later_orders(tiny):
    cut = T0 + pd.Timedelta(hours=3)  # strict: o1, o2 stay; o3 (exactly at the cut), o4, o5 go
    b = baskets(tiny, before=cut)
    assert list(b.order_ids) == ["o1", "o2"]
    s = itemset_stats(tiny, min_support=0.0, before=cut)
    assert _row(s, ("A", "B"))["count"] == 2 and _row(s, ("A", "B"))["support"] == pytest.approx(1.0)
    assert not (s["items"] == ("A", "C")).any() or _row(s, ("A", "C"))["count"] == 1
    # the same as mining on the orders filtered by hand
    by_hand = itemset_stats(tiny[tiny["order_time"] < cut], min_support=0.0)
    pd.testing.assert_frame_equal(s, by_hand)
    # an aware timestamp is compared in UTC (naive order times mean UTC)
    aware = (cut + pd.Timedelta(hours=1)).tz_localize("UTC").tz_convert("Europe/Berlin")
    assert list(baskets(tiny, before=aware).order_ids) == ["o1", "o2", "o3"]
    assert baskets(tiny, before=T0).n_baskets == 0
    with pytest.raises(ValueError):
        itemset_stats(baskets(tiny), before=cut)


def test_before_with_aware_order_times(tiny):
    aware = tiny.assign(order_time=tiny["order_time"].dt.tz_localize("UTC"))
    cut = T0 + pd.Timedelta(hours=3)
    assert list(baskets(aware, before=cut).order_ids) == ["o1", "o2"]


# --------------------------------------------------------------------------------------------------
# mine_bundles on hand-made data
# --------------------------------------------------------------------------------------------------


def _tiny_products() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product_id": ["A", "B", "C", "D", "a"],
            "category": ["home", "home", "garden", "garden", "home"],
            "unit_cost": [1.0, 2.0, 3.0, 1.0, 1.0],
            "list_price": [2.0, 5.0, 4.0, 2.0, 2.0],
        }
    )


def test_mine_bundles_score_and_format(tiny):
    rules = MiningRules(min_support=0.0, min_lift=1.0)
    out = mine_bundles(tiny, _tiny_products(), rules)
    assert list(out.columns) == list(BUNDLE_COLUMNS)
    # frequent itemsets with lift >= 1: AC (1.25) and ABC (1.0417); AB (0.9375), BC (0.83) fail
    assert out["product_ids"].tolist() == ["A|B|C", "A|C"]
    abc, ac = out.iloc[0], out.iloc[1]
    assert abc["margin"] == pytest.approx((2 + 5 + 4) - (1 + 2 + 3))
    # score = lift_norm * margin, lift_norm = lift ** (1 / (n_items - 1)): sqrt for a triple, lift for a pair
    assert abc["lift_norm"] == pytest.approx(((2 / 5) / (0.8 * 0.8 * 0.6)) ** 0.5)
    assert abc["score"] == pytest.approx(abc["lift_norm"] * 5.0)
    assert ac["lift_norm"] == pytest.approx(1.25)
    assert ac["margin"] == pytest.approx(2.0) and ac["score"] == pytest.approx(1.25 * 2.0)
    assert out["rank"].tolist() == [1, 2]
    assert abc["bundle_id"] == bundle_id_for("A|B|C") and abc["bundle_id"].startswith("B-")

    assert mine_bundles(tiny, _tiny_products(), MiningRules(min_support=0.0, min_lift=1.0, max_items=2))[
        "product_ids"
    ].tolist() == ["A|C"]
    assert mine_bundles(tiny, _tiny_products(), MiningRules(min_support=0.0, min_lift=1.1))[
        "product_ids"
    ].tolist() == ["A|C"]
    assert mine_bundles(tiny, _tiny_products(), MiningRules(min_support=0.5, min_lift=1.0))[
        "product_ids"
    ].tolist() == ["A|C"]
    assert (
        len(
            mine_bundles(tiny, _tiny_products(), MiningRules(min_support=0.0, min_lift=0.0, max_candidates=3))
        )
        == 3
    )
    assert mine_bundles(
        tiny, _tiny_products(), MiningRules(min_support=0.0, min_lift=0.0, max_candidates=0)
    ).empty
    # min_confidence: AB's best rule is 3/4, AC's 1.0
    got = mine_bundles(tiny, _tiny_products(), MiningRules(min_support=0.0, min_lift=0.0, min_confidence=0.8))
    assert set(got["product_ids"]) == {"A|C", "A|B|C"}


def test_mine_bundles_category_mixes(tiny):
    base = {"min_support": 0.0, "min_lift": 0.0}
    only_home = mine_bundles(tiny, _tiny_products(), MiningRules(**base, allowed_category_mixes=(("home",),)))
    assert only_home["product_ids"].tolist() == ["A|B"]
    mixed = mine_bundles(
        tiny, _tiny_products(), MiningRules(**base, allowed_category_mixes=(("home", "garden", "home"),))
    )  # order and repeats of the allowed tuple do not matter
    assert set(mixed["product_ids"]) == {"A|C", "B|C", "A|B|C"}
    assert mine_bundles(tiny, _tiny_products(), MiningRules(**base, allowed_category_mixes=())).empty


def test_mine_bundles_diversity_and_unknown_products(tiny):
    base = {"min_support": 0.0, "min_lift": 0.0}
    full = mine_bundles(tiny, _tiny_products(), MiningRules(**base))
    thin = mine_bundles(tiny, _tiny_products(), MiningRules(**base, max_per_product=1))
    # greedy by rank: the first bundle uses A, B and C, so nothing else can follow
    assert thin["product_ids"].tolist() == full["product_ids"].tolist()[:1]
    two = mine_bundles(tiny, _tiny_products(), MiningRules(**base, max_per_product=2))
    counts = collections.Counter(p for ids in two["product_ids"] for p in ids.split(BUNDLE_ITEM_SEP))
    assert max(counts.values()) <= 2
    # products missing from the catalog cannot be priced: their itemsets are dropped
    no_c = _tiny_products().query("product_id != 'C'")
    assert mine_bundles(tiny, no_c, MiningRules(**base))["product_ids"].tolist() == ["A|B"]


def test_exclude_same_product_case_twins():
    orders = _orders([("o1", "A", 1), ("o1", "a", 1), ("o2", "A", 1), ("o2", "a", 1), ("o3", "B", 1)])
    prods = _tiny_products()
    kept = mine_bundles(orders, prods, MiningRules(min_support=0.0, min_lift=0.0, exclude_same_product=False))
    assert kept["product_ids"].tolist() == ["A|a"]
    assert mine_bundles(orders, prods, MiningRules(min_support=0.0, min_lift=0.0)).empty


def test_mining_rules_validation():
    for bad in (
        {"min_support": -0.1},
        {"min_support": 1.5},
        {"max_items": 4},
        {"max_items": 1},
        {"min_confidence": 2.0},
        {"max_candidates": -1},
        {"min_basket_size": 0},
        {"max_per_product": 0},
    ):
        with pytest.raises(ValueError):
            MiningRules(**bad)
    with pytest.raises(ValueError):
        itemset_stats(pd.DataFrame({"order_id": [], "product_id": []}), max_items=4)


# --------------------------------------------------------------------------------------------------
# real Online Retail baskets vs an independent brute force
# --------------------------------------------------------------------------------------------------


def _retail_path() -> Path:
    p = Path(os.environ.get("ONLINE_RETAIL_CSV", DEFAULT_RETAIL))
    if not p.exists():
        pytest.skip(f"Online Retail data not found at {p} (set ONLINE_RETAIL_CSV)")
    return p


def _read_retail(nrows: int | None) -> pd.DataFrame:
    df = pd.read_csv(
        _retail_path(), nrows=nrows, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str}
    )
    df = df[~df["InvoiceNo"].str.startswith("C") & (df["Quantity"] > 0)]
    return pd.DataFrame(
        {
            "order_id": df["InvoiceNo"].to_numpy(),
            "order_time": pd.to_datetime(df["InvoiceDate"]).to_numpy(),
            "customer_id": df["CustomerID"].to_numpy(),
            "product_id": df["StockCode"].to_numpy(),
            "quantity": df["Quantity"].to_numpy(),
            "unit_price": df["UnitPrice"].to_numpy(),
        }
    )


@pytest.fixture(scope="module")
def retail_slice() -> pd.DataFrame:
    return _read_retail(nrows=60_000)


def _brute_force(orders: pd.DataFrame, min_support: float) -> tuple[int, dict[tuple, int]]:
    """Frequent itemsets (1..3) with plain Python sets: {sorted items tuple: count}."""
    sets = [frozenset(g) for _, g in orders.groupby("order_id")["product_id"]]
    n = len(sets)
    need = min_support * n
    c1 = collections.Counter(p for s in sets for p in s)
    f1 = {p for p, c in c1.items() if c >= need}
    c2 = collections.Counter(pair for s in sets for pair in itertools.combinations(sorted(s & f1), 2))
    f2 = {k: v for k, v in c2.items() if v >= need}
    tids: dict[str, set[int]] = collections.defaultdict(set)
    for i, s in enumerate(sets):
        for p in s:
            tids[p].add(i)
    later: dict[str, set[str]] = collections.defaultdict(set)
    for a, b in f2:
        later[a].add(b)
    f3 = {}
    for a, b in f2:  # a triple is frequent only if its pairs are: extend (a, b) by c > b
        for c in later[a] & later[b]:
            cnt = len(tids[a] & tids[b] & tids[c])
            if cnt >= need:
                f3[(a, b, c)] = cnt
    out = {(p,): c1[p] for p in f1} | f2 | f3
    return n, out


def test_real_baskets_match_brute_force(retail_slice):
    min_support = 0.01
    stats = itemset_stats(retail_slice, max_items=3, min_support=min_support)
    n, brute = _brute_force(retail_slice, min_support)
    assert (stats["size"] == 3).sum() > 100 and (stats["size"] == 2).sum() > 100  # a meaningful check

    got = dict(zip(stats["items"], stats["count"]))
    assert got == brute  # same itemsets, exactly equal counts

    single = {k[0]: v for k, v in brute.items() if len(k) == 1}
    expected_lift = np.array([brute[k] / n / np.prod([single[i] / n for i in k]) for k in stats["items"]])
    np.testing.assert_allclose(stats["lift"].to_numpy(), expected_lift, rtol=1e-12)
    np.testing.assert_allclose(stats["support"].to_numpy(), stats["count"].to_numpy() / n, rtol=1e-15)

    def best_conf(k: tuple) -> float:
        subs = [s for r in range(1, len(k)) for s in itertools.combinations(k, r)]
        return brute[k] / min(brute[s] for s in subs)

    multi = stats.loc[stats["size"] >= 2]
    np.testing.assert_allclose(
        multi["confidence"].to_numpy(), [best_conf(k) for k in multi["items"]], rtol=1e-12
    )
    pairs = stats.loc[stats["size"] == 2]
    np.testing.assert_allclose(
        pairs["confidence_a_to_b"].to_numpy(),
        [brute[k] / single[k[0]] for k in pairs["items"]],
        rtol=1e-12,
    )
    # items are sorted tuples of distinct ids
    assert all(list(k) == sorted(set(k)) for k in stats["items"])


def test_real_point_in_time(retail_slice):
    cut = retail_slice["order_time"].quantile(0.5)
    early = retail_slice[retail_slice["order_time"] < cut]
    assert 0 < len(early) < len(retail_slice)
    s_cut = itemset_stats(retail_slice, min_support=0.02, before=cut)
    pd.testing.assert_frame_equal(s_cut, itemset_stats(early, min_support=0.02))
    later_orders = set(retail_slice.loc[retail_slice["order_time"] >= cut, "order_id"])
    assert later_orders.isdisjoint(baskets(retail_slice, before=cut).order_ids)


def _retail_products(orders: pd.DataFrame) -> pd.DataFrame:
    price = orders.groupby("product_id")["unit_price"].median().clip(lower=0.01)
    ids = price.index.to_series()
    return pd.DataFrame(
        {
            "product_id": price.index,
            "category": np.where(
                ids.str[:1].isin(list("12")), "deco", np.where(ids.str[:1] == "2", "home", "misc")
            ),
            "unit_cost": (0.6 * price).to_numpy(),
            "list_price": price.to_numpy(),
        }
    )


def test_real_mine_bundles_rules(retail_slice):
    products = _retail_products(retail_slice)
    products["category"] = np.where(products["product_id"].str[:1] == "2", "home", "deco")
    rules = MiningRules(
        min_support=0.01, min_lift=3.0, max_items=3, max_candidates=50, max_per_product=3,
        allowed_category_mixes=(("home",), ("deco", "home")),
    )  # fmt: skip
    out = mine_bundles(retail_slice, products, rules)
    assert 0 < len(out) <= 50
    assert out["bundle_id"].is_unique and out["product_ids"].is_unique
    cat = products.set_index("product_id")["category"]
    counts: collections.Counter = collections.Counter()
    for ids in out["product_ids"]:
        items = ids.split(BUNDLE_ITEM_SEP)
        assert 2 <= len(items) <= 3 and len(set(items)) == len(items) and items == sorted(items)
        assert tuple(sorted(set(cat[items]))) in {("home",), ("deco", "home")}
        counts.update(items)
    assert max(counts.values()) <= 3
    assert (out["support"] >= 0.01).all() and (out["lift"] >= 3.0).all()
    assert (out["n_items"] == out["product_ids"].str.count(r"\|") + 1).all()
    assert (np.diff(out["score"].to_numpy()) <= 0).all()
    # deterministic
    pd.testing.assert_frame_equal(out, mine_bundles(retail_slice, products, rules))
    # the stats behind the bundles agree with the brute force
    _n, brute = _brute_force(retail_slice, 0.01)
    for ids, cnt in zip(out["product_ids"], out["count"]):
        assert brute[tuple(ids.split(BUNDLE_ITEM_SEP))] == cnt


@pytest.mark.slow
def test_full_file_finds_frequent_triples():
    # speed is measured by benchmarks/bench_mining.py, not asserted here
    orders = _read_retail(nrows=None)
    stats = itemset_stats(orders, max_items=3, min_support=0.005)
    assert (stats["size"] == 3).sum() > 1000
    assert (stats.loc[stats["size"] == 2, "lift"] > 0).all()


def test_integer_product_ids_sorted_naturally():
    orders = pd.DataFrame(
        {"order_id": [1, 1, 2, 2, 3], "product_id": [10, 2, 10, 2, 2], "quantity": [1, 1, 1, 1, 1]}
    )
    s = itemset_stats(orders, min_support=0.0)
    assert s["items"].tolist() == [(2,), (10,), (2, 10)]
    products = pd.DataFrame(
        {"product_id": [2, 10], "category": ["a", "a"], "unit_cost": [1.0, 1.0], "list_price": [2.0, 2.0]}
    )
    out = mine_bundles(orders, products, MiningRules(min_support=0.0, min_lift=0.0))
    assert out["product_ids"].tolist() == ["2|10"]
