"""Unit tests of the price book helpers (pricing/pricebook.py) that need no model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricing.pricebook import catalog, customer_exposure_candidates


def _tables() -> dict[str, pd.DataFrame]:
    products = pd.DataFrame({
        "product_id": ["a1", "a2", "b1", "b2", "c1"],
        "category": ["A", "A", "B", "B", "C"],
        "list_price": [10.0, 12.0, 20.0, 22.0, 30.0],
        "unit_cost": [5.0, 6.0, 10.0, 11.0, 15.0],
    })
    bundles = pd.DataFrame({"bundle_id": ["AA", "BB", "AC", "BC"], "product_ids": ["a1|a2", "b1|b2", "a1|c1", "b2|c1"]})
    events = pd.DataFrame({  # u1 looks at category A only, u2 at B only, u3 has no history
        "customer_id": ["u1"] * 6 + ["u2"] * 6,
        "product_id": ["a1", "a2"] * 3 + ["b1", "b2"] * 3,
        "event_type": ["view"] * 12,
    })
    orders = pd.DataFrame({"customer_id": ["u2"], "product_id": ["b1"]})
    return {"products": products, "bundles": bundles, "events": events, "orders": orders}


def test_candidates_follow_the_customers_interest():
    tables = _tables()
    cat = catalog(tables)
    value = np.ones((1, len(cat.bundle_ids)))
    cand = customer_exposure_candidates(tables, cat, np.array(["u1", "u2", "u3"]), value, np.zeros(3, int), k=2)
    got = [[cat.bundle_ids[j] for j in row] for row in cand]
    assert set(got[0]) == {"AA", "AC"}  # the bundles holding category A
    assert set(got[1]) == {"BB", "BC"}
    assert cand.shape == (3, 2) and cand.dtype == np.int32


def test_value_weighs_exposure_and_k_is_capped():
    tables = _tables()
    cat = catalog(tables)
    value = np.array([[1.0, 1.0, 100.0, 1.0]])  # AC is worth far more per offer
    cand = customer_exposure_candidates(tables, cat, np.array(["u1", "u2"]), value, np.zeros(2, int), k=10)
    assert cand.shape == (2, 4)  # k capped at the number of bundles
    assert cat.bundle_ids[cand[0, 0]] == "AC" and cat.bundle_ids[cand[1, 0]] == "AC"
    assert all(sorted(row) == [0, 1, 2, 3] for row in cand.tolist())


def test_chunks_give_the_same_answer():
    tables = _tables()
    cat = catalog(tables)
    ids = np.array(["u1", "u2", "u3"])
    value = np.random.default_rng(0).random((2, 4))
    seg = np.array([0, 1, 0])
    whole = customer_exposure_candidates(tables, cat, ids, value, seg, k=3)
    chunked = customer_exposure_candidates(tables, cat, ids, value, seg, k=3, chunk=1)
    assert np.array_equal(whole, chunked)


def _book(price: float):
    from pricing.pricebook import PriceBook

    return PriceBook(
        bundle_prices=pd.DataFrame({"bundle_id": ["AA"], "segment_id": ["S1"], "price": [price]}),
        customer_segments=pd.DataFrame({"customer_id": ["u1"], "segment_id": ["S1"]}),
        customer_offers=pd.DataFrame(columns=["customer_id", "bundle_id", "price"]),
        manifest={"mode": "optimized"},
    )


def test_a_swap_interrupted_between_the_renames_keeps_the_previous_book(tmp_path):
    from pricing.pricebook import read_price_book, write_price_book

    out = tmp_path / "prices"
    write_price_book(_book(10.0), out)
    out.rename(tmp_path / ".prices.old")  # the state a crash between the two renames leaves
    assert read_price_book(out).bundle_prices["price"].tolist() == [10.0]  # put back on read
    out.rename(tmp_path / ".prices.old")
    write_price_book(_book(12.0), out)  # the next write must not delete the parked book first
    assert read_price_book(out).bundle_prices["price"].tolist() == [12.0]
    assert not (tmp_path / ".prices.old").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prices"]


def test_a_failed_write_leaves_the_previous_book_and_no_temporary_folder(tmp_path, monkeypatch):
    from pricing.pricebook import read_price_book, write_price_book

    out = tmp_path / "prices"
    write_price_book(_book(10.0), out)

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    try:
        write_price_book(_book(12.0), out)
    except OSError:
        pass
    monkeypatch.undo()
    assert read_price_book(out).bundle_prices["price"].tolist() == [10.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prices"]


def test_offers_rate_averages_a_longer_window_and_scales_it_to_the_period():
    from pricing.pricebook import offers_rate

    tables = _tables()
    cat = catalog(tables)
    end = pd.Timestamp("2026-09-30 12:00", tz="UTC")
    # AA: 28 offers spread evenly over 28 days (one a day); BB: 7 offers all in the last week; AC, BC: none
    times = [end - pd.Timedelta(days=d) for d in range(28)] + [end - pd.Timedelta(hours=h) for h in range(0, 140, 20)]
    tables["offers"] = pd.DataFrame({"offer_time": times, "bundle_id": ["AA"] * 28 + ["BB"] * 7})
    rate = dict(zip(cat.bundle_ids, offers_rate(tables, cat, n_customers=10, period_days=7, window_days=28)))
    assert np.isclose(rate["AA"], 7 / 10 * 28 / 27.0)  # 28 offers over the 27 days the log covers, per week
    assert np.isclose(rate["BB"], 7 / 10 * 7 / 27.0)
    assert rate["AC"] == rate["BC"] == min(rate["AA"], rate["BB"])  # unseen bundles get the smallest seen rate
    week = dict(zip(cat.bundle_ids, offers_rate(tables, cat, n_customers=10, period_days=7)))
    assert np.isclose(week["BB"], 0.7) and np.isclose(week["AA"], 0.7)  # the last 7 days only (the old estimate)


def test_segment_sample_shrinks_to_the_budget_but_not_below_ten():
    from pricing.pricebook import segment_sample_size

    assert segment_sample_size(100, 1_000_000, 12, 200) == 100  # default market: 240k requests, within budget
    assert segment_sample_size(100, 1_000_000, 12, 2000) == 41  # bench: 2.4M requests -> 984k
    assert segment_sample_size(100, 1_000, 12, 2000) == 10
    assert segment_sample_size(5, 1_000, 12, 2000) == 5


def test_personal_scoring_in_chunks_gives_the_same_book():
    """Building the candidates' contexts a chunk at a time (memory) changes no price."""
    from pricing.config import load_config
    from pricing.features import PRICE_FEATURES
    from pricing.model import train_model
    from pricing.pricebook import build_price_book
    from pricing.simulator import generate_market, generate_tables
    from pricing.training import build_training_data

    tables = generate_tables(generate_market("tiny", seed=3))
    config = load_config(overrides={"model": {"n_estimators": 40, "refit_on_all": False}})
    data = build_training_data(tables, config)
    res = train_model(data.X, data.y, data.times, PRICE_FEATURES, config.model, data.builder.categorical)
    whole = build_price_book(tables, res.model, data.builder, config)
    small = config.model_copy(update={"pricebook": config.pricebook.model_copy(update={"context_chunk_rows": 777})})
    chunked = build_price_book(tables, res.model, data.builder, small)
    assert len(whole.customer_offers) > 777
    pd.testing.assert_frame_equal(whole.customer_offers, chunked.customer_offers)
    pd.testing.assert_frame_equal(whole.bundle_prices, chunked.bundle_prices)


def test_exposure_follows_interest_and_activity_and_segment_means_average_it():
    from pricing.pricebook import CustomerExposure

    tables = _tables()
    tables["offers"] = pd.DataFrame({"customer_id": ["u1", "u1", "u1", "u3"], "bundle_id": ["AA", "AA", "AC", "BB"]})
    cat = catalog(tables)
    ids = np.array(["u1", "u2", "u3"])
    exp = CustomerExposure.from_tables(tables, cat, ids, prior=5.0)
    mix = exp.rows(slice(None), activity=False)
    b = {k: i for i, k in enumerate(cat.bundle_ids)}
    assert mix.shape == (3, 4) and np.allclose(mix.sum(axis=1), 1.0)  # every category has bundles here
    assert mix[0, b["AA"]] > mix[0, b["BB"]] and mix[1, b["BB"]] > mix[1, b["AA"]]
    # activity: past offers relative to the average customer's (4/3), shrunk by the prior
    np.testing.assert_allclose(exp.activity, (np.array([3, 0, 1]) + 5.0) / (4 / 3 + 5.0))
    np.testing.assert_allclose(exp.rows(slice(None)), mix * exp.activity[:, None])
    np.testing.assert_allclose(exp.rows(np.array([2, 0])), exp.rows(slice(None))[[2, 0]])
    means = exp.segment_means(np.array([1, 0, 1]), 2, chunk=1)
    full = exp.rows(slice(None))
    np.testing.assert_allclose(means, np.stack([full[1], full[[0, 2]].mean(axis=0)]))


def test_expected_offers_share_each_bundles_offers_by_exposure():
    """Every customer listing every bundle: each bundle's expected offers add up to rate x customers, and
    are shared in proportion to exposure; -1 candidates get none; chunks change nothing."""
    from pricing.pricebook import CustomerExposure

    tables = _tables()
    tables["offers"] = pd.DataFrame({"customer_id": ["u1", "u1", "u1", "u3"], "bundle_id": ["AA", "AA", "AC", "BB"]})
    cat = catalog(tables)
    ids = np.array(["u1", "u2", "u3"])
    exp = CustomerExposure.from_tables(tables, cat, ids, prior=5.0)
    rate = np.array([0.5, 0.2, 0.1, 0.3])
    every = np.tile(np.arange(4), (3, 1))
    w = exp.expected_offers(rate, every)
    assert w.dtype == np.float32 and w.shape == (3, 4)
    np.testing.assert_allclose(w.sum(axis=0), rate * 3, rtol=1e-6)
    full = exp.rows(slice(None))
    np.testing.assert_allclose(w, full / full.sum(axis=0) * rate * 3, rtol=1e-6)
    b = {k: i for i, k in enumerate(cat.bundle_ids)}
    assert w[0, b["AA"]] > w[1, b["AA"]] and w[1, b["BB"]] > w[0, b["BB"]]  # interest decides who is shown what
    some = np.array([[b["AA"], -1], [b["BB"], b["AA"]], [-1, -1]])
    got = exp.expected_offers(rate, some, chunk=1)
    np.testing.assert_allclose(got, [[w[0, b["AA"]], 0], [w[1, b["BB"]], w[1, b["AA"]]], [0, 0]], rtol=1e-6)


def test_weighted_segment_acceptance_equals_the_plain_mean_with_equal_weights():
    from pricing.pricebook import _weighted_mean_se

    rng = np.random.default_rng(1)
    p = rng.random((50, 3, 4))
    p[:, :, 3] = np.nan  # a padded rung
    p[:7, 0, 2] = np.nan  # some customers lack a rung
    mean, se = _weighted_mean_se(p, np.ones((50, 3)))
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            plain = np.nanmean(p, axis=0)
            n = np.isfinite(p).sum(axis=0)
            plain_se = np.nanstd(p, axis=0) / np.sqrt(np.maximum(n, 1))
    np.testing.assert_allclose(mean[:, :3], plain[:, :3])
    np.testing.assert_allclose(se[:, :3], plain_se[:, :3])
    assert np.isnan(mean[:, 3]).all() and (se[:, 3] == 0).all()
    # weights move the mean towards the heavier customers
    w = np.ones((50, 3))
    w[0] = 1000.0
    heavy, _ = _weighted_mean_se(p, w)
    assert abs(heavy[1, 0] - p[0, 1, 0]) < abs(plain[1, 0] - p[0, 1, 0])


def test_price_profile_is_each_customers_most_profitable_rung(monkeypatch):
    """best_j = the reference bundle's rung maximizing acceptance x margin, as a share of its list price."""
    from pricing import scoring

    ls = np.array([100.0, 200.0])
    monkeypatch.setattr(scoring, "context_features",
                        lambda builder, tables, req: pd.DataFrame({"list_sum": np.tile(ls, len(req) // 2)}))
    sens = {0: 2.0, 1: 12.0}  # customer 0 hardly cares about price, customer 1 a lot

    def scorer(model, builder, ctx, prices):
        cust = np.repeat([0, 1], 2)[: len(ctx)]
        s = np.array([sens[c] for c in cust])[:, None]
        ratio = prices / ctx["list_sum"].to_numpy()[:, None]
        return 1 / (1 + np.exp(-(1.0 - s * np.log(ratio))))

    ladder = np.array([[100.0, 90.0, 80.0, 70.0, 60.0], [200.0, 180.0, 160.0, 140.0, np.nan]])
    cost = np.array([40.0, 80.0])
    out = scoring.customer_price_response(None, None, None, ["c0", "c1"], ["B1", "B2"], pd.Timestamp("2026-01-01", tz="UTC"),
                                          ladder=ladder, cost=cost, scorer=scorer)
    for i, c in enumerate(["c0", "c1"]):
        for j in range(2):
            row = ladder[j][np.isfinite(ladder[j])]
            acc = 1 / (1 + np.exp(-(1.0 - sens[i] * np.log(row / ls[j]))))
            want = row[np.argmax(acc * (row - cost[j]))] / ls[j]
            assert out.loc[i, f"best_{j + 1}"] == pytest.approx(want)
    assert out.loc[0, "best_1"] > out.loc[1, "best_1"]  # the price-sensitive customer's best price is lower


def test_segments_on_the_price_profile_group_customers_with_close_best_prices():
    from pricing.scoring import segment_customers

    rng = np.random.default_rng(0)
    n = 60
    low, high = rng.normal(0.6, 0.01, (n, 3)), rng.normal(0.95, 0.01, (n, 3))
    response = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(2 * n)],
        # level and slope say little here; the best prices separate the two groups
        "level": rng.normal(0, 1, 2 * n),
        "slope": np.r_[rng.normal(-9, 3, n), rng.normal(-7, 3, n)],
        **{f"best_{j + 1}": np.r_[low[:, j], high[:, j]] for j in range(3)},
    })
    seg, centers = segment_customers(response, 2, seed=0)
    assert seg["segment_id"].iloc[:n].nunique() == 1 and seg["segment_id"].iloc[n:].nunique() == 1
    assert seg["segment_id"].iloc[0] != seg["segment_id"].iloc[-1]
    assert list(centers["segment_id"]) == ["S1", "S2"] and centers["slope"].is_monotonic_increasing
    assert centers.set_index("segment_id")["size"].sum() == 2 * n
    assert {"best_price_share"} <= set(centers.columns)
    with pytest.raises(ValueError, match="price profile need"):
        segment_customers(response.drop(columns=["best_1", "best_2", "best_3"]), 2)
    seg2, _ = segment_customers(response, 2, on="response")
    assert len(seg2) == 2 * n


def test_every_pair_gets_a_personal_price_when_the_budget_allows():
    """personal_pairs_budget: every bundle for every customer when customers x bundles fits, else top_n."""
    from pricing.config import load_config
    from pricing.features import PRICE_FEATURES
    from pricing.model import train_model
    from pricing.pricebook import build_price_book
    from pricing.simulator import generate_market, generate_tables
    from pricing.training import build_training_data

    tables = generate_tables(generate_market("tiny", seed=5))
    config = load_config(overrides={"model": {"n_estimators": 40, "refit_on_all": False}})
    data = build_training_data(tables, config)
    res = train_model(data.X, data.y, data.times, PRICE_FEATURES, config.model, data.builder.categorical)
    n_customers, n_bundles = len(tables["customers"]), len(tables["bundles"])
    assert n_customers * n_bundles <= config.pricebook.personal_pairs_budget
    full = build_price_book(tables, res.model, data.builder, config).customer_offers
    per_customer = full.groupby("customer_id")["bundle_id"].nunique()
    assert per_customer.max() == n_bundles and per_customer.median() == n_bundles  # offers are optional
    capped = config.model_copy(update={"pricebook": config.pricebook.model_copy(update={"personal_pairs_budget": 0})})
    few = build_price_book(tables, res.model, data.builder, capped).customer_offers
    assert few.groupby("customer_id")["bundle_id"].nunique().max() <= config.optimize.top_n_bundles < n_bundles
    # between the two: the budget's share per customer
    mid = config.model_copy(update={"pricebook": config.pricebook.model_copy(
        update={"personal_pairs_budget": n_customers * (config.optimize.top_n_bundles + 5)})})
    some = build_price_book(tables, res.model, data.builder, mid).customer_offers
    assert some.groupby("customer_id")["bundle_id"].nunique().max() == config.optimize.top_n_bundles + 5
