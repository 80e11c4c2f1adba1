"""Tests of pricing.features: no leakage (truncating or mutating later data), price monotonicity,
brute-force checks of the features, the builder's JSON round trip, learned search tokens, calendar
flags at the year wrap, row order, and optional tables."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pricing.config import FeaturesConfig, SeasonWindow, load_config
from pricing.contract import BUNDLE_ITEM_SEP, TABLE_ORDER
from pricing.features import (
    CATEGORICAL_FEATURES,
    HELPER_COLUMNS,
    NO_HISTORY_DAYS,
    PRICE_FEATURES,
    FeatureBuilder,
    assemble,
    context_features,
    fit_feature_builder,
    offer_training_frame,
    price_features,
)
from pricing.ingest import ROW_ID, prepare_table
from pricing.mining import itemset_stats, pair_lift_lookup
from tests.factories import valid_tables

DAY = pd.Timedelta(days=1)


# --------------------------------------------------------------------------------------------------
# data: the simulator's tiny market, typed exactly as ingestion types it
# --------------------------------------------------------------------------------------------------
def typed_tables(data_dir: Path) -> dict[str, pd.DataFrame]:
    cfg = load_config().ingest
    out = {}
    for table in TABLE_ORDER:
        prep = prepare_table(data_dir, table, cfg)
        if prep is not None:
            out[table] = prep.typed.drop(columns=ROW_ID)
    return out


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> dict[str, pd.DataFrame]:
    from pricing.simulator import simulate

    d = tmp_path_factory.mktemp("sim-tiny")
    simulate(d, size="tiny", seed=7, fmt="csv")
    return typed_tables(d)


@pytest.fixture(scope="module")
def cfg() -> FeaturesConfig:
    return load_config().features


@pytest.fixture(scope="module")
def cut(sim) -> pd.Timestamp:
    return sim["offers"]["offer_time"].quantile(0.6)


@pytest.fixture(scope="module")
def builder(sim, cfg, cut) -> FeatureBuilder:
    return fit_feature_builder(sim, cfg, before=cut)


@pytest.fixture(scope="module")
def full_frame(builder, sim):
    return offer_training_frame(builder, sim)


def copy_tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {k: v.copy() for k, v in tables.items()}


def _date_as_utc(s: pd.Series) -> pd.Series:
    return s.dt.tz_localize("UTC")


def truncate(tables: dict[str, pd.DataFrame], T: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Every row stamped at or after T deleted (competitor dates count as their midnight, UTC)."""
    out = copy_tables(tables)
    out["orders"] = out["orders"].loc[out["orders"]["order_time"] < T]
    out["events"] = out["events"].loc[out["events"]["event_time"] < T]
    out["offers"] = out["offers"].loc[out["offers"]["offer_time"] < T]
    cp = out["competitor_prices"]
    out["competitor_prices"] = cp.loc[_date_as_utc(cp["date"]) < T]
    return out


def requests_of(offers: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {"customer_id": offers["customer_id"], "bundle_id": offers["bundle_id"], "time": offers["offer_time"]},
        index=offers.index,
    )


def features_of(builder, tables, offers: pd.DataFrame) -> pd.DataFrame:
    ctx = context_features(builder, tables, requests_of(offers))
    return assemble(ctx, price_features(ctx, offers["offered_price"].to_numpy(dtype=float)), builder)


def cut_times(offers: pd.DataFrame) -> list[pd.Timestamp]:
    """Cut times that are exactly some offers' times (so those offers sit right at the cut)."""
    times = offers["offer_time"].sort_values().reset_index(drop=True)
    return [times.iloc[int(q * (len(times) - 1))] for q in (0.3, 0.65, 0.97)]


# --------------------------------------------------------------------------------------------------
# leakage
# --------------------------------------------------------------------------------------------------
def test_no_leakage_features_unchanged_when_rows_at_or_after_offer_time_are_deleted(builder, sim, full_frame):
    X_full = full_frame[0]
    offers = sim["offers"]
    for T in cut_times(offers):
        sel = offers.loc[offers["offer_time"] <= T]
        assert (sel["offer_time"] == T).any()  # an offer right at the cut is checked too
        X_cut = features_of(builder, truncate(sim, T), sel)
        pd.testing.assert_frame_equal(X_cut, X_full.loc[sel.index], check_exact=True)


def test_no_leakage_features_unchanged_when_rows_at_or_after_offer_time_are_mutated(builder, sim, full_frame):
    X_full = full_frame[0]
    rng = np.random.default_rng(0)
    offers = sim["offers"]
    for T in cut_times(offers):
        t = copy_tables(sim)
        o = t["orders"]
        late = (o["order_time"] >= T).to_numpy()
        o.loc[late, "quantity"] = o.loc[late, "quantity"] * 3
        o.loc[late, "unit_price"] = o.loc[late, "unit_price"] * 0.5
        o.loc[late, "customer_id"] = rng.permutation(o.loc[late, "customer_id"].to_numpy())
        o.loc[late, "product_id"] = rng.permutation(o.loc[late, "product_id"].to_numpy())
        e = t["events"]
        late = (e["event_time"] >= T).to_numpy()
        e.loc[late, "duration_s"] = e.loc[late, "duration_s"] * 2 + 1
        e.loc[late, "customer_id"] = rng.permutation(e.loc[late, "customer_id"].to_numpy())
        e.loc[late, "query"] = e.loc[late, "query"].str.upper().str.replace("A", "cheap ")
        cp = t["competitor_prices"]
        late = (_date_as_utc(cp["date"]) >= T).to_numpy()
        cp.loc[late, "price"] = cp.loc[late, "price"] * 0.5
        of = t["offers"]
        late = (of["offer_time"] >= T).to_numpy()
        of.loc[late, "accepted"] = 1 - of.loc[late, "accepted"]  # includes the offers right at T
        after = (of["offer_time"] > T).to_numpy()
        of.loc[after, "offered_price"] = of.loc[after, "offered_price"] * 1.1
        of.loc[after, "customer_id"] = rng.permutation(of.loc[after, "customer_id"].to_numpy())
        X_mut = offer_training_frame(builder, t)[0]
        before = (offers["offer_time"] <= T).to_numpy()
        pd.testing.assert_frame_equal(X_mut.loc[before], X_full.loc[before], check_exact=True)
        if after.any():  # not vacuous: later offers do see the changed history
            changed = ~np.isclose(X_mut.loc[after, "cust_spend_all"], X_full.loc[after, "cust_spend_all"])
            assert changed.any()


def test_strictly_before_request_time():
    tables = valid_tables()
    cfg = FeaturesConfig(windows_days=(7,), n_search_tokens=4)
    b = fit_feature_builder(tables, cfg)
    o = tables["orders"].iloc[[0]].copy()
    t_order = pd.Timestamp("2026-03-01 12:00:00", tz="UTC")
    o["order_time"] = t_order
    o["customer_id"] = "C999"
    o["bundle_id"] = None
    tables["customers"] = pd.concat(
        [tables["customers"], pd.DataFrame({"customer_id": ["C999"], "signup_date": [pd.Timestamp("2025-01-01")],
                                            "region": ["north"]})], ignore_index=True)
    tables["orders"] = pd.concat([tables["orders"], o], ignore_index=True)
    offers = pd.DataFrame({
        "offer_id": ["X1", "X2", "X3"], "customer_id": ["C999"] * 3, "bundle_id": ["B1"] * 3,
        "offer_time": [t_order, t_order, t_order + pd.Timedelta(microseconds=1)],
        "offered_price": [10.0, 11.0, 12.0], "accepted": [1, 1, 0],
    })
    tables["offers"] = pd.concat([tables["offers"], offers], ignore_index=True)
    ctx = context_features(b, tables, requests_of(offers))
    assert ctx["cust_orders_all"].tolist() == [0, 0, 1]  # an order exactly at t is not visible
    assert ctx["cust_days_since_purchase"].tolist()[:2] == [NO_HISTORY_DAYS] * 2
    assert ctx["cust_offers_seen"].tolist() == [0, 0, 2]  # nor are offers (and outcomes) at t
    assert ctx["cust_offers_accepted"].tolist() == [0, 0, 2]


# --------------------------------------------------------------------------------------------------
# price features
# --------------------------------------------------------------------------------------------------
def test_price_features_strictly_monotone_in_declared_directions(builder, sim):
    ctx = context_features(builder, sim, requests_of(sim["offers"].iloc[:500]))
    assert ctx["competitor_sum"].notna().any()
    grid = np.linspace(0.5, 1.5, 21)
    frames = [price_features(ctx, ctx["list_sum"].to_numpy() * g) for g in grid]
    assert set(frames[0].columns) == set(PRICE_FEATURES)
    for name, direction in PRICE_FEATURES.items():
        vals = np.stack([fr[name].to_numpy() for fr in frames], axis=1)  # rows x ascending prices
        ok = np.isfinite(vals).all(axis=1)
        assert ok.any()
        steps = np.diff(vals[ok], axis=1)
        # acceptance falls with the price, so a feature with direction d must move as -d with the price
        assert (np.sign(steps) == -direction).all(), name


def test_context_does_not_depend_on_price(builder, sim):
    offers = sim["offers"].iloc[:300]
    ctx = context_features(builder, sim, requests_of(offers))
    assert not set(PRICE_FEATURES) & set(ctx.columns)
    X1 = assemble(ctx, price_features(ctx, offers["offered_price"].to_numpy()), builder)
    X2 = assemble(ctx, price_features(ctx, offers["offered_price"].to_numpy() * 0.8), builder)
    diff = [c for c in X1.columns if not X1[c].equals(X2[c])]
    assert set(diff) <= set(PRICE_FEATURES) and "price" in diff
    # the offered prices in the log (the requests' own rows) do not move the context either
    t = copy_tables(sim)
    t["offers"]["offered_price"] = t["offers"]["offered_price"] * 1.37
    pd.testing.assert_frame_equal(
        ctx.drop(columns=["cust_accepted_discount_mean", "cust_declined_discount_mean"]),
        context_features(builder, t, requests_of(offers)).drop(
            columns=["cust_accepted_discount_mean", "cust_declined_discount_mean"]),
    )


def test_price_features_scalar_and_ladder(builder, sim):
    ctx = context_features(builder, sim, requests_of(sim["offers"].iloc[:5]))
    one = price_features(ctx, 50.0)
    assert (one["price"] == 50.0).all() and one.index.equals(ctx.index)
    ladder = np.array([40.0, 50.0, 60.0])
    rep = ctx.loc[ctx.index.repeat(3)]
    pf = price_features(rep, np.tile(ladder, len(ctx)))
    X = assemble(rep, pf, builder)
    assert X.shape == (15, len(builder.feature_names))
    with pytest.raises(ValueError):
        price_features(ctx, np.ones(4))
    # the helpers are model columns too: price features can be recomputed from an assembled X
    # (as pricing.model.check_monotone does); X holds them as float32, so equal up to float32 rounding
    X = assemble(ctx, price_features(ctx, 50.0), builder)
    again = price_features(X, np.full(len(X), 50.0))
    pd.testing.assert_frame_equal(again, price_features(ctx, 50.0), rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# model matrix, builder
# --------------------------------------------------------------------------------------------------
def test_assemble_order_dtypes_and_training_frame(builder, sim, full_frame):
    X, y, offer_time, offer_id = full_frame
    offers = sim["offers"]
    assert list(X.columns) == builder.feature_names
    assert len(set(builder.feature_names)) == len(builder.feature_names)
    assert set(builder.categorical) == set(CATEGORICAL_FEATURES) <= set(X.columns)
    assert set(PRICE_FEATURES) <= set(X.columns)
    assert len(builder.monotone_constraints) == X.shape[1]
    assert {builder.feature_names[i]: m for i, m in enumerate(builder.monotone_constraints) if m} == PRICE_FEATURES
    for c in builder.categorical:  # codes of the builder's levels (serving-safe), see category_codes
        codes = X[c].to_numpy()
        assert X[c].dtype == np.float32
        assert set(np.unique(codes)) <= set(range(len(builder.levels(c))))
    assert X["region"].notna().all() and X["bundle_main_category"].notna().all()
    region = sim["customers"].set_index("customer_id")["region"]
    decoded = np.asarray(builder.levels("region"))[X["region"].to_numpy().astype(int)]
    assert (decoded == offers["customer_id"].map(region).to_numpy()).all()
    assert (X.dtypes == np.float32).all()
    assert X.index.equals(offers.index) and len(y) == len(offers)
    np.testing.assert_array_equal(y, offers["accepted"].to_numpy(dtype=int))
    assert offer_id.equals(offers["offer_id"]) and offer_time.equals(offers["offer_time"])
    np.testing.assert_allclose(X["price"], offers["offered_price"], rtol=1e-6)
    # non-trivial signal: past acceptance and competitor features are filled for most offers
    assert X["competitor_to_list"].notna().mean() > 0.9
    assert X["cust_accept_rate"].notna().mean() > 0.5
    # a context built in another column order still assembles to the builder's order
    ctx = context_features(builder, sim, requests_of(offers.iloc[:50]))
    shuffled = ctx[list(reversed(ctx.columns))]
    pf = price_features(ctx, offers["offered_price"].iloc[:50].to_numpy())
    pd.testing.assert_frame_equal(assemble(shuffled, pf, builder), X.iloc[:50])
    assert set(HELPER_COLUMNS) <= set(ctx.columns)


def test_builder_json_round_trip_gives_identical_features(builder, sim, full_frame):
    s = builder.to_json()
    json.loads(s, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    b2 = FeatureBuilder.from_json(s)
    assert b2 == builder and b2.to_json() == s
    assert b2.feature_names == builder.feature_names
    pd.testing.assert_frame_equal(offer_training_frame(b2, sim)[0], full_frame[0], check_exact=True)
    with pytest.raises(ValueError):
        FeatureBuilder.from_json(s.replace(f'"version": {builder.version}', '"version": 99'))


def test_builder_uses_only_data_before_cutoff(sim, cfg, cut):
    b1 = fit_feature_builder(sim, cfg, before=cut)
    t = copy_tables(sim)
    for name, col in (("orders", "order_time"), ("events", "event_time"), ("offers", "offer_time")):
        late = (t[name][col] >= cut).to_numpy()
        t[name] = t[name].loc[~late]
    b2 = fit_feature_builder(t, cfg, before=cut)
    assert b1 == b2
    assert b1.cutoff == pd.Timestamp(cut).isoformat()


def test_pair_lift_matches_pricing_mining(builder, sim, cut):
    regular = sim["orders"].loc[sim["orders"]["bundle_id"].isna()]
    stats = itemset_stats(regular, max_items=2, min_support=0.0, before=cut)
    lookup = pair_lift_lookup(stats)
    assert builder.pair_lift
    checked = 0
    for key, lift in builder.pair_lift.items():
        a, b = key.split(BUNDLE_ITEM_SEP)
        if (a, b) in lookup.index:
            assert lift == pytest.approx(lookup.loc[(a, b), "lift"], rel=1e-12)
            checked += 1
        else:
            assert lift == 0.0  # never bought together
    assert checked > 0


# --------------------------------------------------------------------------------------------------
# brute force on a sample of offers
# --------------------------------------------------------------------------------------------------
def test_features_match_brute_force(builder, sim, full_frame, cfg):
    X = full_frame[0]
    orders, events, offers = sim["orders"], sim["events"], sim["offers"]
    products = sim["products"].set_index("product_id")
    bundles = sim["bundles"].set_index("bundle_id")["product_ids"].str.split(BUNDLE_ITEM_SEP)
    cp = sim["competitor_prices"].assign(day=lambda d: _date_as_utc(d["date"]))
    tok = builder.tokens[0]
    rng = np.random.default_rng(1)
    for i in rng.choice(len(offers), 25, replace=False):
        off = offers.iloc[i]
        t, c, b = off["offer_time"], off["customer_id"], off["bundle_id"]
        row = X.iloc[i]
        items = bundles[b]
        cats = set(products.loc[items, "category"])
        o = orders.loc[(orders["customer_id"] == c) & (orders["order_time"] < t)]
        o30 = o.loc[o["order_time"] >= t - 30 * DAY]
        assert row["cust_orders_30d"] == o30["order_id"].nunique()
        assert row["cust_spend_all"] == pytest.approx((o["quantity"] * o["unit_price"]).sum(), rel=1e-5)
        exp_days = (t - o["order_time"].max()) / DAY if len(o) else NO_HISTORY_DAYS
        assert row["cust_days_since_purchase"] == pytest.approx(exp_days, rel=1e-5)
        ev = events.loc[(events["customer_id"] == c) & (events["event_time"] < t)]
        v = ev.loc[ev["event_type"] == "view"]
        assert row["cust_views_7d"] == (v["event_time"] >= t - 7 * DAY).sum()
        if v["duration_s"].notna().any():
            assert row["cust_view_secs_mean_all"] == pytest.approx(v["duration_s"].mean(), rel=1e-5)
        vin = v["product_id"].map(products["category"]).isin(cats).sum()
        assert row["cust_views_bundle_cats"] == vin
        if len(v):
            assert row["cust_view_share_bundle_cats"] == pytest.approx(vin / len(v), rel=1e-6)
        s = ev.loc[ev["event_type"] == "search", "query"].str.lower().str.findall(r"\w+")
        if len(s):
            assert row[builder.token_features[0]] == pytest.approx(s.map(lambda ws: tok in ws).mean(), rel=1e-6)
        else:
            assert np.isnan(row[builder.token_features[0]])
        po = offers.loc[(offers["customer_id"] == c) & (offers["offer_time"] < t)]
        assert row["cust_offers_seen"] == len(po) and row["cust_offers_accepted"] == po["accepted"].sum()
        pb = offers.loc[(offers["bundle_id"] == b) & (offers["offer_time"] < t)]
        if len(pb):
            assert row["bundle_accept_rate"] == pytest.approx(pb["accepted"].mean(), rel=1e-6)
        recent = orders.loc[(orders["order_time"] < t) & (orders["order_time"] >= t - cfg.demand_window_days * DAY)]
        assert row["demand_cat_units"] == recent.loc[recent["product_id"].map(products["category"]).isin(cats),
                                                     "quantity"].sum()
        # competitor index: latest price per competitor (dated before t, fresh enough), mean, summed
        last_day = (t - pd.Timedelta(microseconds=1)).floor("D")
        total, covered = 0.0, 0
        for p in items:
            q = cp.loc[(cp["product_id"] == p) & (cp["day"] < t)
                       & (cp["day"] >= last_day - cfg.competitor_max_age_days * DAY)]
            latest = q.sort_values("day").groupby("competitor")["price"].last()
            if len(latest):
                total += latest.mean()
                covered += 1
            else:
                total += products.loc[p, "list_price"]
        list_sum = products.loc[items, "list_price"].sum()
        assert row["list_sum"] == pytest.approx(list_sum, rel=1e-6)
        if covered:
            assert row["competitor_to_list"] == pytest.approx(total / list_sum, rel=1e-5)
            assert row["price_to_competitor"] == pytest.approx(off["offered_price"] / total, rel=1e-5)
        assert row["competitor_coverage"] == pytest.approx(covered / len(items))
        assert row["bundle_n_items"] == len(items)
        lifts = [builder.pair_lift.get(BUNDLE_ITEM_SEP.join(sorted(pair)), np.nan)
                 for pair in itertools.combinations(items, 2)]
        if np.isfinite(lifts).any():
            assert row["bundle_lift_max"] == pytest.approx(np.nanmax(lifts), rel=1e-5)


# --------------------------------------------------------------------------------------------------
# search tokens, calendar
# --------------------------------------------------------------------------------------------------
def test_search_tokens_are_learned_from_the_data(sim, cfg, cut):
    b = fit_feature_builder(sim, cfg, before=cut)
    assert len(b.tokens) == cfg.n_search_tokens
    searches = sim["events"].loc[(sim["events"]["event_type"] == "search") & (sim["events"]["event_time"] < cut)]
    words = set(itertools.chain.from_iterable(searches["query"].str.lower().str.findall(r"\w+")))
    assert set(b.tokens) <= words
    # rewrite the queries of a third of the customers: the new words enter, the vocabulary changes
    t = copy_tables(sim)
    e = t["events"]
    custs = e["customer_id"].drop_duplicates().iloc[::3]
    hit = (e["event_type"] == "search") & e["customer_id"].isin(custs)
    e.loc[hit, "query"] = "zorblax " + e.loc[hit, "query"]
    b2 = fit_feature_builder(t, cfg, before=cut)
    assert "zorblax" in b2.tokens and b2.tokens != b.tokens
    assert b2.feature_names != b.feature_names
    # a word seen only after the cut-off is not learned
    late = (e["event_type"] == "search") & (e["event_time"] >= cut)
    e.loc[late, "query"] = "latecomer " + e.loc[late, "query"]
    assert "latecomer" not in fit_feature_builder(t, cfg, before=cut).tokens
    # a word every search contains tells nothing about the searcher: it is not picked
    t2 = copy_tables(sim)
    s2 = t2["events"]["event_type"] == "search"
    t2["events"].loc[s2, "query"] = "the " + t2["events"].loc[s2, "query"]
    assert "the" not in fit_feature_builder(t2, cfg, before=cut).tokens
    assert fit_feature_builder(sim, cfg.model_copy(update={"n_search_tokens": 0}), before=cut).tokens == []


def test_calendar_flags_at_year_wrap():
    tables = valid_tables()
    cfg = FeaturesConfig(
        n_search_tokens=2,
        calendar=(SeasonWindow(name="new year", start="12-20", end="01-05"),
                  SeasonWindow(name="leap", start="02-29", end="03-01")),
    )
    b = fit_feature_builder(tables, cfg)
    times = pd.to_datetime([
        "2025-12-19 23:59:59", "2025-12-20 00:00:00", "2025-12-31 23:59:59", "2026-01-01 00:00:00",
        "2026-01-05 23:59:59", "2026-01-06 00:00:00", "2025-12-21 08:00:00", "2028-02-28 12:00:00",
        "2028-02-29 12:00:00", "2027-02-28 12:00:00", "2027-03-01 12:00:00",
    ], utc=True)
    req = pd.DataFrame({"customer_id": "C001", "bundle_id": "B1", "time": times})
    ctx = context_features(b, tables, req)
    assert ctx["season_new_year"].tolist() == [0, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0]
    assert ctx["season_leap"].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1]
    days = ctx["days_to_new_year"].tolist()
    assert days[:2] == [1, 0] and days[5] == 348 and days[6] == 364
    assert ctx["days_to_leap"].tolist()[7:] == [1, 0, 1, 0]  # no Feb 29 in 2027: Mar 1
    assert ctx["dow"].tolist()[:2] == [4, 5]  # Friday, Saturday
    assert ctx["month"].tolist()[:4] == [12, 12, 12, 1]
    assert ctx["hour"].tolist()[:2] == [23, 0]


# --------------------------------------------------------------------------------------------------
# robustness
# --------------------------------------------------------------------------------------------------
def test_row_order_and_index_preserved(builder, sim, full_frame):
    offers = sim["offers"].iloc[:400]
    perm = np.random.default_rng(3).permutation(len(offers))
    shuffled = offers.iloc[perm].set_axis([f"r{i}" for i in range(len(offers))])
    X = features_of(builder, sim, shuffled)
    assert list(X.index) == list(shuffled.index)
    expected = full_frame[0].iloc[perm].set_axis(shuffled.index)
    pd.testing.assert_frame_equal(X, expected, check_exact=True)
    # duplicated requests get duplicated rows
    dup = pd.concat([offers.iloc[:3], offers.iloc[:3]])
    Xd = features_of(builder, sim, dup)
    pd.testing.assert_frame_equal(Xd.iloc[:3], Xd.iloc[3:])
    empty = context_features(builder, sim, requests_of(offers.iloc[:0]))
    assert len(empty) == 0 and set(builder.context_names) <= set(empty.columns)


def test_optional_tables_absent(sim, cfg, cut):
    core = {k: sim[k].copy() for k in ("products", "customers", "bundles", "orders")}
    b = fit_feature_builder(core, cfg, before=cut)
    assert b.tokens == [] and b.category_view_share == {}
    req = requests_of(sim["offers"].iloc[:200])
    ctx = context_features(b, core, req)
    assert len(ctx) == 200
    assert ctx["competitor_sum"].isna().all() and (ctx["competitor_coverage"] == 0).all()
    assert (ctx["cust_views_all"] == 0).all() and ctx["cust_view_share_bundle_cats"].isna().all()
    assert (ctx["cust_offers_seen"] == 0).all() and ctx["cust_accept_rate"].isna().all()
    assert ctx["cust_orders_all"].gt(0).any()
    pf = price_features(ctx, sim["offers"]["offered_price"].iloc[:200].to_numpy())
    assert pf["price_to_competitor"].isna().all() and pf["discount_pct"].notna().all()
    X = assemble(ctx, pf, b)
    assert list(X.columns) == b.feature_names
    # a builder fitted with events, applied to tables without them: token shares NaN, no crash
    full_b = fit_feature_builder(sim, cfg, before=cut)
    ctx2 = context_features(full_b, core, req)
    assert ctx2[full_b.token_features].isna().all().all()
    with pytest.raises(ValueError, match="offers"):
        offer_training_frame(b, core)


def test_unknown_bundle_and_customer(builder, sim):
    req = requests_of(sim["offers"].iloc[:2]).copy()
    req["customer_id"] = pd.array(["nobody", sim["offers"]["customer_id"].iloc[1]], dtype="string")
    ctx = context_features(builder, sim, req)
    assert ctx["cust_orders_all"].iloc[0] == 0 and pd.isna(ctx["region"].iloc[0])
    assert np.isnan(ctx["cust_tenure_days"].iloc[0])
    req["bundle_id"] = pd.array(["no-such-bundle", req["bundle_id"].iloc[1]], dtype="string")
    with pytest.raises(ValueError, match="no-such-bundle"):
        context_features(builder, sim, req)


def test_works_on_hand_made_tables_with_naive_times():
    tables = valid_tables()  # plain pandas dtypes, object ids
    b = fit_feature_builder(tables, FeaturesConfig(n_search_tokens=3))
    assert set(b.tokens) <= {"red", "mug", "garden", "hose", "toy", "car"} and len(b.tokens) == 3
    offers = tables["offers"]
    X, y, _, _ = offer_training_frame(b, tables)
    assert X.shape == (len(offers), len(b.feature_names)) and set(np.unique(y)) <= {0, 1}
    req = requests_of(offers).assign(time=offers["offer_time"].dt.tz_localize(None))  # naive = UTC
    ctx = context_features(b, tables, req)
    np.testing.assert_array_equal(ctx["cust_orders_all"], X["cust_orders_all"])


def test_features_of_a_subset_of_offers_see_the_whole_offers_log(builder, sim, full_frame):
    """A holdout's rows (promotion review, the price book's error band) equal the training frame's rows
    of the same offers: their offer-history features count every earlier offer, not only the subset's."""
    offers = sim["offers"]
    latest = offers.sort_values("offer_time", kind="stable").tail(500)
    X, y, _t, ids = offer_training_frame(builder, sim, latest)
    pos = pd.Index(full_frame[3]).get_indexer(ids)
    expected = full_frame[0].iloc[pos].reset_index(drop=True)
    pd.testing.assert_frame_equal(X.reset_index(drop=True), expected, check_exact=True)
    assert np.array_equal(y, full_frame[1][pos])
    hidden = offer_training_frame(builder, {**sim, "offers": latest})[0]  # the old mistake: history gone
    assert (hidden["cust_offers_seen"].to_numpy() < X["cust_offers_seen"].to_numpy()).mean() > 0.5
