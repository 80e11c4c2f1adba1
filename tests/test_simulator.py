"""Tests of pricing.simulator: determinism, the data contract, and the known ground truth (tiny size)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricing.contract import BUNDLE_ITEM_SEP, TABLE_ORDER, TABLES
from pricing.io import find_table_file, read_raw_table
from pricing.simulator import (
    SIZES,
    TYPE_NAMES,
    MarketSize,
    bundle_index,
    clairvoyant_prices,
    customer_index,
    expected_units,
    generate_market,
    generate_tables,
    load_market,
    period_offers,
    personalization_gain,
    play_forward,
    sample_traffic,
    save_market,
    shift_market,
    simulate,
    true_accept_prob,
)

SEED = 11


@pytest.fixture(scope="module")
def market():
    return generate_market("tiny", seed=SEED)


@pytest.fixture(scope="module")
def tables(market):
    return generate_tables(market)


def _random_rows(market, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, market.n_customers, n),
        rng.integers(0, market.n_bundles, n),
        rng.integers(0, market.n_days, n),
    )


# -- determinism -------------------------------------------------------------------------------------
def test_same_seed_gives_identical_tables(tables):
    again = generate_tables(generate_market("tiny", seed=SEED))
    for name in TABLE_ORDER:
        pd.testing.assert_frame_equal(tables[name], again[name], obj=name)


def test_different_seed_gives_different_tables(tables):
    other = generate_tables(generate_market("tiny", seed=SEED + 1))
    for name in ("products", "orders", "events", "offers", "competitor_prices"):
        assert not tables[name].equals(other[name]), name


def test_table_seed_changes_behaviour_only(market, tables):
    other = generate_tables(market, seed=SEED + 5)
    pd.testing.assert_frame_equal(tables["products"], other["products"])
    pd.testing.assert_frame_equal(tables["bundles"], other["bundles"])
    assert not tables["offers"].equals(other["offers"])


def test_sizes_are_as_specified():
    assert set(SIZES) == {"tiny", "default", "bench"}
    assert all(isinstance(s, MarketSize) for s in SIZES.values())
    assert SIZES["default"].n_events == 1_000_000 and SIZES["bench"].n_events == 10_000_000


# -- the data contract ---------------------------------------------------------------------------------
def test_all_tables_with_contract_columns(tables):
    assert list(tables) == list(TABLE_ORDER)
    for name, df in tables.items():
        spec = TABLES[name]
        required = {c.name for c in spec.columns if c.required}
        assert required <= set(df.columns) <= set(spec.column_names), name
        assert len(df) > 0, name
        for c in spec.columns:
            if c.name in df.columns and not c.nullable:
                assert df[c.name].notna().all(), f"{name}.{c.name} has nulls"


def test_dtypes(tables):
    for name, df in tables.items():
        for c in TABLES[name].columns:
            s = df[c.name]
            if c.kind == "timestamp":
                assert isinstance(s.dtype, pd.DatetimeTZDtype) and str(s.dt.tz) == "UTC", f"{name}.{c.name}"
            elif c.kind == "date":
                assert pd.api.types.is_datetime64_dtype(s.dtype), f"{name}.{c.name}"
                assert (s.dropna() == s.dropna().dt.normalize()).all()
            elif c.kind in ("id", "string"):
                assert pd.api.types.is_string_dtype(s.dtype), f"{name}.{c.name}"
            elif c.kind == "float":
                assert pd.api.types.is_float_dtype(s.dtype), f"{name}.{c.name}"
            elif c.kind == "int":
                assert pd.api.types.is_integer_dtype(s.dtype), f"{name}.{c.name}"


def test_keys_unique(tables):
    for name, df in tables.items():
        key = list(TABLES[name].key)
        if key:
            assert not df.duplicated(key).any(), name


def test_foreign_keys_valid(tables):
    for name, df in tables.items():
        for c in TABLES[name].columns:
            if c.references:
                table, col = c.references.split(".")
                vals = df[c.name].dropna()
                assert vals.isin(tables[table][col]).all(), f"{name}.{c.name} -> {c.references}"
    items = tables["bundles"]["product_ids"].str.split(BUNDLE_ITEM_SEP, regex=False).explode()
    assert items.isin(tables["products"]["product_id"]).all()


def test_value_rules(market, tables):
    p = tables["products"]
    assert (p["unit_cost"] > 0).all() and (p["list_price"] >= p["unit_cost"]).all()
    assert (p["inventory"].dropna() >= 0).all()
    items = tables["bundles"]["product_ids"].str.split(BUNDLE_ITEM_SEP, regex=False)
    assert (items.map(lambda x: len(set(x))) >= 2).all()
    assert (items.map(len) <= 3).all()
    o = tables["offers"]
    assert set(o["accepted"].unique()) <= {0, 1}
    assert (o["offered_price"] > 0).all()
    orders = tables["orders"]
    assert (orders["quantity"] >= 1).all() and (orders["unit_price"] > 0).all()
    assert (tables["competitor_prices"]["price"] > 0).all()
    ev = tables["events"]
    assert set(ev["event_type"].unique()) <= {"view", "search", "add_to_cart"}
    assert ev.loc[ev.event_type != "search", "product_id"].notna().all()
    assert ev.loc[ev.event_type == "search", "query"].notna().all()
    assert (ev["duration_s"].dropna() >= 0).all()
    # offered prices: the experiment's grid between 1.05 * cost and list
    bi = bundle_index(market, o["bundle_id"])
    assert (o["offered_price"] >= 1.05 * market.bundle_cost[bi] - 0.01).all()
    assert (o["offered_price"] <= market.bundle_list[bi] + 1e-9).all()


def test_nothing_after_end_date(market, tables):
    end = pd.Timestamp("2026-09-30")
    assert market.end_date == end
    for name, df in tables.items():
        col = TABLES[name].time_column
        if col is None:
            continue
        s = df[col]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            assert s.max() < pd.Timestamp("2026-10-01", tz="UTC"), name
            assert s.min() >= market.start_date.tz_localize("UTC"), name
        else:
            assert s.max() <= end, name
    assert tables["customers"]["signup_date"].max() <= end


def test_bundle_orders_follow_accepted_offers(market, tables):
    orders, offers = tables["orders"], tables["offers"]
    b = orders[orders["bundle_id"].notna()]
    assert b["order_id"].nunique() == offers["accepted"].sum()
    # unit prices of a bundle order add up to the offered price (up to rounding per line)
    per_order = b.groupby("order_id").agg(total=("unit_price", "sum"), bundle=("bundle_id", "first"))
    assert per_order["total"].between(offers["offered_price"].min() - 0.05, offers["offered_price"].max() + 0.05).all()
    # several products per order happen in regular orders too
    regular = orders[orders["bundle_id"].isna()]
    assert regular.groupby("order_id").size().max() >= 2


def test_types_never_written(tables):
    for df in tables.values():
        for col in df.columns:
            assert "type" not in col or col == "event_type"
        for col in df.select_dtypes(include="str").columns:
            assert not df[col].isin(TYPE_NAMES).any()


# -- the ground truth ------------------------------------------------------------------------------------
def test_acceptance_strictly_decreasing_in_price(market):
    ci, bi, day = _random_rows(market, 500)
    lo, hi = market.bundle_cost[bi], market.bundle_list[bi]
    grid = lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, 40)[None, :]
    prob = true_accept_prob(market, ci[:, None], bi[:, None], grid, day[:, None])
    assert prob.shape == grid.shape
    assert ((prob > 0) & (prob < 1)).all()
    assert (np.diff(prob, axis=1) < 0).all()


def test_true_prob_accepts_timestamps(market, tables):
    o = tables["offers"].head(200)
    ci, bi = customer_index(market, o["customer_id"]), bundle_index(market, o["bundle_id"])
    p1 = true_accept_prob(market, ci, bi, o["offered_price"].to_numpy(), o["offer_time"])
    p2 = true_accept_prob(market, ci, bi, o["offered_price"].to_numpy(),
                          o["offer_time"].dt.tz_localize(None).to_numpy())
    np.testing.assert_allclose(p1, p2)
    day0 = true_accept_prob(market, ci, bi, o["offered_price"].to_numpy(), pd.Timestamp("2026-08-01"))
    assert day0.shape == (200,)


def test_realistic_acceptance_matches_truth(market, tables):
    o = tables["offers"]
    rate = o["accepted"].mean()
    assert 0.02 < rate < 0.4
    ci, bi = customer_index(market, o["customer_id"]), bundle_index(market, o["bundle_id"])
    prob = true_accept_prob(market, ci, bi, o["offered_price"].to_numpy(), o["offer_time"])
    se = np.sqrt(prob.mean() * (1 - prob.mean()) / len(o))
    assert abs(rate - prob.mean()) < 4 * se
    # higher prices are accepted less often in the experiment
    lo_half = o["offered_price"] / market.bundle_list[bi] < 0.8
    assert o.loc[lo_half, "accepted"].mean() > o.loc[~lo_half, "accepted"].mean()


def test_types_visible_in_behaviour(market, tables):
    types = market.customer_types()
    ev = tables["events"].assign(type=lambda d: types.reindex(d["customer_id"]).to_numpy())
    dur = ev[ev.event_type == "view"].groupby("type")["duration_s"].median()
    assert dur["enthusiast"] > 2 * dur["casual"]
    searches = ev[ev.event_type == "search"]
    cheap = searches["query"].str.contains(r"\b(?:cheap|deal|sale|discount|budget|bargain)\b", regex=True)
    by_type = cheap.groupby(searches["type"]).mean()
    assert by_type["bargain_hunter"] > 2 * by_type.drop("bargain_hunter").max()
    regular = tables["orders"][tables["orders"]["bundle_id"].isna()]
    n_orders = regular.groupby("customer_id")["order_id"].nunique().reindex(market.customer_ids, fill_value=0)
    freq = pd.Series(n_orders.to_numpy()).groupby(np.asarray(TYPE_NAMES)[market.customer_type]).mean()
    assert freq["premium_loyal"] > 1.5 * freq["casual"]


def test_complementary_pairs_copurchased(market, tables):
    regular = tables["orders"][tables["orders"]["bundle_id"].isna()]
    baskets = regular.groupby("order_id")["product_id"].apply(frozenset)
    n = len(baskets)
    count = baskets.explode().value_counts()
    pair_count: dict[frozenset, int] = {}
    for b in baskets[baskets.map(len) >= 2]:
        items = sorted(b)
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                key = frozenset((items[i], items[j]))
                pair_count[key] = pair_count.get(key, 0) + 1
    lifts = []
    for g in market.groups:
        ids = market.product_ids[g[g >= 0]]
        for i in range(len(ids)):
            for j in range(i + 1, len(ids)):
                a, b = ids[i], ids[j]
                if count.get(a, 0) and count.get(b, 0):
                    lifts.append(pair_count.get(frozenset((a, b)), 0) * n / (count[a] * count[b]))
    assert len(lifts) >= 10
    assert np.mean(lifts) > 2.0


def test_clairvoyant_prices(market):
    ci, bi, day = _random_rows(market, 400, seed=1)
    price, profit = clairvoyant_prices(market, ci, bi, day)
    c, L = market.bundle_cost[bi], market.bundle_list[bi]
    assert ((price >= c) & (price <= L + 1e-9)).all()
    list_profit = (L - c) * true_accept_prob(market, ci, bi, L, day)
    assert (profit >= list_profit - 1e-9).all() and profit.mean() > 1.2 * list_profit.mean()
    # no grid price beats it, and most optima are interior
    grid = c[:, None] + (L - c)[:, None] * np.linspace(0, 1, 301)[None, :]
    grid_profit = (grid - c[:, None]) * true_accept_prob(market, ci[:, None], bi[:, None], grid, day[:, None])
    assert (profit >= grid_profit.max(1) - 1e-9).all()
    assert np.mean(price < L - 1e-6) > 0.8
    # latent types get clearly different optimal prices
    pos = (price - c) / (L - c)
    by_type = pd.Series(pos).groupby(market.customer_type[ci]).mean()
    assert by_type.max() - by_type.min() > 0.2


def test_personalization_pays(market):
    gain = personalization_gain(market, n_pairs=5_000, seed=3)
    assert gain["gain_vs_single_price"] > 0.05
    assert gain["clairvoyant_profit"] > gain["single_price_profit"] > gain["list_price_profit"]


def test_sample_traffic_and_play_forward(market):
    start = market.end_date + pd.Timedelta(days=1)
    traffic = sample_traffic(market, start, 14, 2_000, seed=4)
    assert list(traffic.columns) == ["customer_id", "bundle_id", "offer_time"]
    assert traffic["offer_time"].min() >= start.tz_localize("UTC")
    assert traffic["offer_time"].max() < (start + pd.Timedelta(days=14)).tz_localize("UTC")
    pd.testing.assert_frame_equal(traffic, sample_traffic(market, start, 14, 2_000, seed=4))
    bi = bundle_index(market, traffic["bundle_id"])
    offers = traffic.assign(offered_price=np.round(0.9 * market.bundle_list[bi], 2))
    a = play_forward(market, offers, seed=9)
    b = play_forward(market, offers, seed=9)
    for k in ("offers", "orders"):
        pd.testing.assert_frame_equal(a[k], b[k])
    out = a["offers"]
    assert {"offer_id", "accepted", "true_prob"} <= set(out.columns) and out["offer_id"].is_unique
    assert set(out["accepted"].unique()) <= {0, 1}
    assert a["orders"]["order_id"].nunique() == out["accepted"].sum()
    assert list(a["orders"].columns) == TABLES["orders"].column_names
    c = play_forward(market, offers, seed=10)
    assert not c["offers"]["accepted"].equals(out["accepted"])
    assert offers.columns.tolist() == ["customer_id", "bundle_id", "offer_time", "offered_price"]  # not mutated


def test_shift_market(market):
    ci, bi, day = _random_rows(market, 1_000, seed=2)
    price = market.bundle_list[bi] * 0.9
    base = true_accept_prob(market, ci, bi, price, day)
    cut = shift_market(market, "competitor_cut", magnitude=0.2)
    assert (true_accept_prob(cut, ci, bi, price, day) <= base + 1e-12).all()
    assert true_accept_prob(cut, ci, bi, price, day).mean() < base.mean() * 0.9
    taste = shift_market(market, "taste_shift", magnitude=0.3, seed=1)
    assert true_accept_prob(taste, ci, bi, price, day).mean() < base.mean()
    assert not np.allclose(taste.cat_pref, market.cat_pref)
    np.testing.assert_allclose(taste.cat_pref.sum(1), 1, rtol=1e-5)
    # the original is untouched
    np.testing.assert_array_equal(true_accept_prob(market, ci, bi, price, day), base)
    with pytest.raises(ValueError):
        shift_market(market, "nonsense")  # type: ignore[arg-type]


def test_index_helpers(market):
    assert customer_index(market, market.customer_ids[[3, 1]]).tolist() == [3, 1]
    assert bundle_index(market, [market.bundle_ids[2]]).tolist() == [2]
    with pytest.raises(KeyError):
        customer_index(market, ["nope"])


def test_save_load_round_trip(market, tmp_path):
    save_market(market, tmp_path / "truth")
    back = load_market(tmp_path / "truth")
    assert back.size == market.size and back.seed == market.seed
    assert back.start_date == market.start_date and back.end_date == market.end_date
    for name in ("customer_ids", "customer_type", "wtp", "eta", "cat_pref", "bundle_items", "competitor_price"):
        np.testing.assert_array_equal(getattr(back, name), getattr(market, name))
    ci, bi, day = _random_rows(market, 100)
    price = market.bundle_list[bi]
    np.testing.assert_array_equal(true_accept_prob(back, ci, bi, price, day), true_accept_prob(market, ci, bi, price, day))


def test_simulate_writes_readable_files(tmp_path, market):
    messages: list[str] = []
    paths = simulate(tmp_path / "data", size="tiny", seed=SEED, progress=messages.append)
    assert messages
    for name in TABLE_ORDER:
        assert paths[name] == find_table_file(tmp_path / "data", name)
        raw = read_raw_table(paths[name], name)
        assert list(raw.columns) == TABLES[name].column_names
    offers = read_raw_table(paths["offers"], "offers")
    assert len(offers) == SIZES["tiny"].n_offers
    assert pd.to_datetime(offers["offer_time"], utc=True).max() < pd.Timestamp("2026-10-01", tz="UTC")
    back = load_market(tmp_path / "data")
    np.testing.assert_array_equal(back.wtp, market.wtp)
    pq = simulate(tmp_path / "pq", size="tiny", seed=SEED, fmt="parquet")
    assert pq["orders"].suffix == ".parquet" and len(read_raw_table(pq["orders"], "orders")) > 0


def _list_price_book(market):
    from pricing.pricebook import PriceBook

    bp = pd.DataFrame({"bundle_id": market.bundle_ids, "segment_id": "S0", "price": market.bundle_list,
                       "list_price": market.bundle_list, "unit_cost": market.bundle_cost,
                       "expected_conversion": 0.1, "expected_profit": 1.0})
    seg = pd.DataFrame({"customer_id": market.customer_ids, "segment_id": "S0"})
    empty = pd.DataFrame(columns=["customer_id", "bundle_id", "price", "expected_conversion", "expected_profit"])
    return PriceBook(bp, seg, empty, {"mode": "optimized"})


def test_a_played_period_starts_on_the_first_midnight_after_the_pricing_time(market):
    from pricing.simulator import play_price_book

    priced_for = market.end_time - pd.Timedelta(seconds=1)  # a book priced just after the history's last row
    played = play_price_book(market, _list_price_book(market), priced_for, 3, seed=4, with_behaviour=False)
    t = pd.to_datetime(played["offers"]["offer_time"], utc=True)
    assert len(t) > 0 and t.min() >= market.end_time and t.max() < market.end_time + pd.Timedelta(days=3)
    again = play_price_book(market, _list_price_book(market), market.end_time, 3, seed=4, with_behaviour=False)
    pd.testing.assert_frame_equal(played["offers"], again["offers"])  # a midnight start is the same period


def test_period_offers_is_the_volume_a_played_period_shows(market):
    from pricing.simulator import play_price_book

    played = play_price_book(market, _list_price_book(market), market.end_time - pd.Timedelta(seconds=1), 3,
                             seed=2, with_behaviour=False)
    assert period_offers(market, market.end_time - pd.Timedelta(seconds=1), 3) == len(played["offers"])
    assert period_offers(market, market.end_time, 3) == len(played["offers"])  # same first midnight
    assert period_offers(market, market.end_time, 6) > period_offers(market, market.end_time, 3)


def test_expected_units_count_one_unit_of_each_item_per_accepted_bundle(market):
    rng = np.random.default_rng(3)
    bi = rng.integers(0, market.n_bundles, 200)
    accept = rng.random(200)
    want = np.zeros(market.n_products)
    for b, a in zip(bi, accept):
        for item in market.bundle_items[b]:
            if item >= 0:
                want[item] += a
    got = expected_units(market, bi, accept)
    assert got.shape == (market.n_products,)
    np.testing.assert_allclose(got, want)
    assert got.sum() > 0


def test_stock_covers_peak_bundle_sales_at_list_price(market):
    from pricing.simulator import _STOCK_COVER, _peak_week_units_at_list

    limited = ~np.isnan(market.inventory)
    assert 0 < limited.mean() < 1, "some products are not limited, most are"
    need = _STOCK_COVER * _peak_week_units_at_list(market)
    assert np.all(market.inventory[limited] >= need[limited])
    in_bundles = np.unique(market.bundle_items[market.bundle_items >= 0])
    assert (need[in_bundles] > 0).all() and (need[np.setdiff1d(np.arange(market.n_products), in_bundles)] == 0).all()
