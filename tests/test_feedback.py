"""Feedback loop: experiment groups, the statistics of the report (PSI, lift interval, expected AUC), the
realized-data checks, and the feedback flow under Prefect's test harness on the tiny market (quiet on a
stable market, fires and retrains on an injected shift, clear errors on bad input)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pricing.config import Config, ExperimentConfig, load_config
from pricing.evaluation import price_lookup
from pricing.experiment import CONTROL, EXPLORATION, TREATMENT, assign_groups, offer_prices, with_groups
from pricing.feedback import (
    FeedbackDataError,
    check_realized,
    expected_auc,
    load_realized,
    psi,
    welch_diff,
)
from pricing.ladder import build_ladder
from pricing.pricebook import PriceBook, read_price_book, write_price_book

# --------------------------------------------------------------------------------------------------
# a small price book without a model
# --------------------------------------------------------------------------------------------------
N_CUSTOMERS = 2000
LIST = np.array([100.0, 60.0, 40.0])
COST = np.array([50.0, 30.0, 25.0])


def _book(seed: int = 0, price_factor: float = 0.8) -> PriceBook:
    rng = np.random.default_rng(seed)
    bundles = ["B1", "B2", "B3"]
    segs = ["S1", "S2"]
    bp = pd.DataFrame({
        "bundle_id": np.tile(bundles, 2),
        "segment_id": np.repeat(segs, 3),
        "price": np.round(np.tile(LIST, 2) * price_factor, 2) - 0.01,
        "list_price": np.tile(LIST, 2),
        "unit_cost": np.tile(COST, 2),
        "expected_conversion": 0.2,
        "expected_profit": 1.0,
    })
    customers = [f"C{i:05d}" for i in range(N_CUSTOMERS)]
    seg = pd.DataFrame({"customer_id": customers, "segment_id": rng.choice(segs, N_CUSTOMERS)})
    offers = pd.DataFrame({"customer_id": customers[:10], "bundle_id": "B1", "price": 77.99,
                           "expected_conversion": 0.2, "expected_profit": 1.0})
    return PriceBook(bp, seg, offers, {"mode": "optimized"})


def test_groups_are_deterministic_order_free_and_respect_the_shares():
    cfg = ExperimentConfig(control_share=0.1, exploration_share=0.05, seed=3)
    ids = np.array([f"C{i:06d}" for i in range(40_000)])
    g = assign_groups(ids, cfg)
    assert np.array_equal(g, assign_groups(ids, cfg)), "same ids, same groups"
    perm = np.random.default_rng(0).permutation(len(ids))
    assert np.array_equal(assign_groups(ids[perm], cfg), g[perm]), "a customer's group does not depend on the others"
    n = len(ids)
    for group, share in ((CONTROL, 0.1), (EXPLORATION, 0.05), (TREATMENT, 0.85)):
        sd = math.sqrt(share * (1 - share) / n)
        assert abs(np.mean(g == group) - share) < 4 * sd, group
    other = assign_groups(ids, ExperimentConfig(control_share=0.1, exploration_share=0.05, seed=4))
    assert np.mean(other != g) > 0.1, "another seed draws other groups"
    # growing the control share only moves treatment customers into control (nested thresholds)
    bigger = assign_groups(ids, ExperimentConfig(control_share=0.2, exploration_share=0.05, seed=3))
    assert np.all(bigger[g == CONTROL] == CONTROL)


def test_shares_must_leave_a_treatment_group():
    with pytest.raises(ValueError, match="must be below 1"):
        ExperimentConfig(control_share=0.6, exploration_share=0.4)


def test_with_groups_annotates_the_book_and_survives_a_round_trip(tmp_path):
    cfg = Config()
    book = with_groups(_book(), cfg)
    assert list(book.customer_segments.columns) == ["customer_id", "segment_id", "group"]
    exp = book.manifest["experiment"]
    assert exp["control_policy"] == "list" and exp["control_prices"] == {"B1": 100.0, "B2": 60.0, "B3": 40.0}
    assert sum(exp["customers"].values()) == N_CUSTOMERS
    write_price_book(book, tmp_path / "book")
    back = read_price_book(tmp_path / "book")
    assert back.customer_segments["group"].tolist() == book.customer_segments["group"].tolist()
    ids = back.customer_segments["customer_id"].to_numpy()[:50]
    # the extra column changes no book price
    assert np.allclose(price_lookup(back, ids, np.full(50, "B2")), price_lookup(_book(), ids, np.full(50, "B2")))


def test_offer_prices_follow_the_groups_and_the_rules():
    cfg = Config()
    book = with_groups(_book(), cfg)
    rng = np.random.default_rng(1)
    cust = rng.choice(book.customer_segments["customer_id"].to_numpy(), 20_000)
    bund = rng.choice(["B1", "B2", "B3"], 20_000)
    price, group = offer_prices(book, None, cust, bund, cfg.optimize, seed=5)
    again, _ = offer_prices(book, None, cust, bund, cfg.optimize, seed=5)
    assert np.array_equal(price, again), "deterministic for a seed"
    assert np.array_equal(group, assign_groups(cust, cfg.experiment))
    book_price = price_lookup(book, cust, bund)
    t, c, e = group == TREATMENT, group == CONTROL, group == EXPLORATION
    assert np.array_equal(price[t], book_price[t])
    assert np.array_equal(price[c], pd.Series(bund[c]).map({"B1": 100.0, "B2": 60.0, "B3": 40.0}).to_numpy())
    b = pd.Index(["B1", "B2", "B3"]).get_indexer(bund[e])
    rules = cfg.optimize.rules
    ladder = build_ladder(LIST, COST, cfg.optimize, current_price=LIST * 0.8 - 0.01)
    allowed = {(i, round(p, 2)) for i in range(3) for p in ladder.prices[i][ladder.allowed[i]]}
    assert all((i, round(p, 2)) in allowed for i, p in zip(b, price[e])), "exploration prices are allowed rungs"
    assert np.all(price[e] >= COST[b] * (1 + rules.min_margin) - 1e-9)
    assert np.all(price[e] <= LIST[b] + 1e-9)
    assert np.all(np.abs(price[e] - (LIST[b] * 0.8 - 0.01)) <= rules.max_change * (LIST[b] * 0.8 - 0.01) + 1e-6)
    assert len(np.unique(price[e][b == 0])) > 3, "exploration prices vary"


def test_control_policy_previous_uses_the_previous_books_prices():
    cfg = load_config(overrides={"experiment": {"control_policy": "previous"}})
    previous = _book(price_factor=0.7)
    book = with_groups(_book(), cfg, previous=previous)
    assert book.manifest["experiment"]["control_prices"] == {"B1": 69.99, "B2": 41.99, "B3": 27.99}
    cust = book.customer_segments["customer_id"].to_numpy()
    price, group = offer_prices(book, None, cust, np.full(len(cust), "B2"), cfg.optimize)
    assert np.all(price[group == CONTROL] == 41.99)
    first = with_groups(_book(), cfg, previous=None)  # no previous book: list prices
    assert first.manifest["experiment"]["control_prices"]["B2"] == 60.0


# --------------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------------
def test_psi_is_small_for_the_same_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=20_000)
    same = psi(ref, rng.normal(size=5_000))
    assert same < 0.01
    values = [psi(ref, rng.normal(loc=mu, size=5_000)) for mu in (0.25, 0.5, 1.0)]
    assert values[0] < values[1] < values[2]
    # for two normals one sd apart the continuous PSI (Jeffreys divergence) is mu^2 = 1; ten bins see less
    assert 0.6 < values[2] < 1.0
    assert 0.15 < values[1] < 0.25


def test_psi_by_hand_categorical_and_missing_values():
    ref = np.array([0.0] * 50 + [1.0] * 50)
    cur = np.array([0.0] * 80 + [1.0] * 20)
    e = np.array([50.5, 50.5]) / 101
    a = np.array([80.5, 20.5]) / 101
    assert psi(ref, cur, categorical=True) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    rng = np.random.default_rng(1)
    base = rng.normal(size=4000)
    holes = base.copy()
    holes[:1200] = np.nan  # 30% missing where the reference had none: a major shift
    assert psi(base, holes) > 0.5


def test_welch_interval_covers_a_known_difference():
    rng = np.random.default_rng(2)
    res = welch_diff(rng.normal(1.0, 1.0, 20_000), rng.normal(0.8, 2.0, 5_000), level=0.95)
    assert res["low"] < 0.2 < res["high"] and res["low"] > 0, "covers the true 0.2 and excludes 0"
    assert res["se"] == pytest.approx(math.sqrt(1 / 20_000 + 4 / 5_000), rel=0.05)
    assert res["rel_low"] < 0.25 < res["rel_high"]
    # coverage over repeated experiments: 95% nominal (skewed, unequal groups: profit-like data)
    hits = 0
    trials = 400
    for _ in range(trials):
        t = rng.binomial(1, 0.2, 800) * rng.uniform(5, 15, 800)
        c = rng.binomial(1, 0.1, 150) * rng.uniform(5, 15, 150)
        r = welch_diff(t, c)
        hits += r["low"] <= 0.2 * 10 - 0.1 * 10 <= r["high"]
    assert 0.91 <= hits / trials <= 0.985


def test_expected_auc_matches_simulation():
    rng = np.random.default_rng(3)
    p = np.clip(rng.beta(1.5, 6.0, 3000), 1e-3, 1 - 1e-3)
    p[:300] = 0.2  # ties
    sims = [roc_auc_score(rng.random(len(p)) < p, p) for _ in range(200)]
    assert expected_auc(p) == pytest.approx(float(np.mean(sims)), abs=0.005)


# --------------------------------------------------------------------------------------------------
# realized data checks (pure)
# --------------------------------------------------------------------------------------------------
def _realized(cust: list[str], bundles: list[str], start: str = "2026-10-01") -> dict[str, pd.DataFrame]:
    n = len(cust)
    return {"offers": pd.DataFrame({
        "offer_id": [f"N{i}" for i in range(n)],
        "offer_time": pd.date_range(start, periods=n, freq="h", tz="UTC"),
        "customer_id": cust, "bundle_id": bundles, "offered_price": 50.0, "accepted": [0, 1] * (n // 2) + [0] * (n % 2),
    })}


def _snapshot() -> dict[str, pd.DataFrame]:
    book = _book()
    return {
        "customers": book.customer_segments[["customer_id"]],
        "products": pd.DataFrame({"product_id": ["P1", "P2"]}),
        "bundles": pd.DataFrame({"bundle_id": ["B1", "B2", "B3"], "product_ids": ["P1|P2"] * 3}),
        "offers": pd.DataFrame({"offer_id": ["O1"], "offer_time": [pd.Timestamp("2026-09-30 12:00", tz="UTC")],
                                "accepted": [1]}),
    }


def test_realized_checks_name_the_problem():
    book, tables = _book(), _snapshot()
    check_realized(_realized(["C00001", "C00002"], ["B1", "B2"]), tables, book)  # fine
    with pytest.raises(FeedbackDataError, match="unknown customers.*C99999"):
        check_realized(_realized(["C00001", "C99999"], ["B1", "B2"]), tables, book)
    with pytest.raises(FeedbackDataError, match="bundles the price book does not price.*B9"):
        check_realized(_realized(["C00001", "C00002"], ["B1", "B9"]), tables, book)
    with pytest.raises(FeedbackDataError, match="no offers"):
        check_realized({"offers": _realized([], [])["offers"]}, tables, book)
    with pytest.raises(FeedbackDataError, match="not later than the snapshot"):
        check_realized(_realized(["C00001", "C00002"], ["B1", "B2"], start="2026-09-30"), tables, book)
    stale = _realized(["C00001", "C00002"], ["B1", "B2"])
    stale["offers"].loc[0, "offer_id"] = "O1"
    with pytest.raises(FeedbackDataError, match="already in the snapshot"):
        check_realized(stale, tables, book)


def test_load_realized_types_the_tables_and_rejects_an_empty_period(tmp_path):
    d = tmp_path / "realized"
    d.mkdir()
    _realized(["C00001", "C00002"], ["B1", "B2"])["offers"].to_csv(d / "offers.csv", index=False)
    got = load_realized(d)
    assert set(got) == {"offers"} and str(got["offers"]["offer_time"].dtype) == "datetime64[us, UTC]"
    (d / "offers.csv").write_text("offer_id,offer_time,customer_id,bundle_id,offered_price,accepted\n")
    with pytest.raises(FeedbackDataError, match="no offers"):
        load_realized(d)
    (d / "offers.csv").unlink()
    with pytest.raises(FeedbackDataError, match="no offers.csv"):
        load_realized(d)


# --------------------------------------------------------------------------------------------------
# the feedback flow on the tiny market (Prefect test harness, MLflow in the session's temporary store)
# --------------------------------------------------------------------------------------------------
MODEL_NAME = "fb-test"
PERIOD_DAYS = 14  # ~750 offers at the tiny market's offer rate: above feedback.min_offers (500)
STABLE_SEED, SHIFT_SEED = 1, 2


@pytest.fixture(scope="module")
def played(prefect_harness, tiny_market, tmp_path_factory) -> dict[str, str]:
    """Train + price the tiny market with the pipeline, then play the book forward twice: on the stable
    market and after a 20% competitor price cut, each into a realized-data folder (contract CSVs)."""
    from flows.pipeline import pipeline_flow
    from pricing.io import write_table
    from pricing.simulator import load_market, play_price_book, shift_market
    from tests.conftest import flow_config

    root = tmp_path_factory.mktemp("feedback")
    cfg = flow_config(root, MODEL_NAME)
    prices = root / "prices"
    pipeline_flow(data_dir=str(tiny_market), out_dir=str(prices), config_path=cfg)
    market = load_market(tiny_market)
    book = read_price_book(prices)
    out = {"config": cfg, "prices": str(prices), "root": str(root)}
    for name, mk, seed in (("stable", market, STABLE_SEED),
                           ("shift", shift_market(market, "competitor_cut", 0.2), SHIFT_SEED)):
        tables = play_price_book(mk, book, market.end_time, PERIOD_DAYS, seed=seed,
                                 optimize=load_config(cfg).optimize)
        for table in ("offers", "orders", "events", "competitor_prices"):
            write_table(tables[table], root / name, table, "csv")
        out[name] = str(root / name)
    return out


@pytest.mark.flow
def test_published_book_carries_the_experiment(played):
    book = read_price_book(played["prices"])
    assert set(book.customer_segments["group"]) == {TREATMENT, CONTROL, EXPLORATION}
    manifest = json.loads((Path(played["prices"]) / "manifest.json").read_text())
    assert manifest["experiment"]["control_share"] == 0.1
    offers = pd.read_csv(Path(played["stable"]) / "offers.csv", dtype={"customer_id": str})
    grp = offers["customer_id"].map(book.customer_segments.set_index("customer_id")["group"])
    assert (grp == CONTROL).sum() > 30 and (grp == EXPLORATION).sum() > 10, "every group is shown offers"


@pytest.mark.flow
def test_feedback_stays_quiet_on_a_stable_market(played):
    from flows.feedback import feedback_flow
    from pricing.tracking import alias_map

    before = alias_map(MODEL_NAME)
    res = feedback_flow(prices_dir=played["prices"], realized_dir=played["stable"], config_path=played["config"])
    assert res["retrain"] is False, res["reasons"]
    assert res["retrained"] is None and alias_map(MODEL_NAME) == before
    m = res["metrics"]
    assert m["overall_offers"] >= load_config(played["config"]).feedback.min_offers, "a verdict, not a no-verdict"
    assert m["lift_profit_per_offer_diff"] > 0, "the book earns more per offer than list prices"
    assert m["lift_profit_per_offer_low"] < m["lift_profit_per_offer_diff"] < m["lift_profit_per_offer_high"]
    checks = pd.DataFrame(res["checks"]).set_index("check")
    assert checks["judged"].all() and not checks["fired"].any()
    from mlflow import MlflowClient

    run = MlflowClient().get_run(res["mlflow_run_id"])
    assert run.data.tags["kind"] == "feedback" and "overall_calibration_gap" in run.data.metrics
    arts = {a.path for a in MlflowClient().list_artifacts(res["mlflow_run_id"])}
    assert {"calibration_by_segment.png", "psi.png", "feedback.md"} <= arts


@pytest.mark.flow
def test_feedback_fires_on_a_competitor_cut_and_retrains(played):
    from flows.feedback import feedback_flow
    from pricing.tracking import CHALLENGER, CHAMPION, alias_map

    before = alias_map(MODEL_NAME)
    res = feedback_flow(prices_dir=played["prices"], realized_dir=played["shift"], config_path=played["config"])
    assert res["retrain"] is True
    assert any(r.startswith("drift") and "competitor" in r for r in res["reasons"]), res["reasons"]
    trained = res["retrained"]
    assert trained is not None and int(trained["version"]) == int(before[CHALLENGER]) + 1
    after = alias_map(MODEL_NAME)
    assert after[CHALLENGER] == trained["version"] and after[CHAMPION] == before[CHAMPION], "only a review promotes"
    assert trained["metrics"]["table_rows_offers"] > 6000, "retrained on the snapshot plus the period"


@pytest.mark.flow
def test_bad_realized_data_stops_with_a_clear_message(played, tmp_path):
    from flows.feedback import feedback_flow
    from pricing.tracking import alias_map

    before = alias_map(MODEL_NAME)
    offers = pd.read_csv(Path(played["stable"]) / "offers.csv", dtype=str)
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    offers.assign(customer_id=np.where(np.arange(len(offers)) % 10 == 0, "GHOST-1", offers["customer_id"])).to_csv(
        unknown / "offers.csv", index=False)
    with pytest.raises(FeedbackDataError, match=r"unknown customers .*GHOST-1"):
        feedback_flow(prices_dir=played["prices"], realized_dir=str(unknown), config_path=played["config"])
    empty = tmp_path / "empty"
    empty.mkdir()
    offers.head(0).to_csv(empty / "offers.csv", index=False)
    with pytest.raises(FeedbackDataError, match="no offers"):
        feedback_flow(prices_dir=played["prices"], realized_dir=str(empty), config_path=played["config"])
    assert alias_map(MODEL_NAME) == before, "bad input changes no alias"


@pytest.mark.flow
def test_feedback_run_from_a_deployment_starts_the_training_deployment(played, tmp_path):
    """A feedback run that belongs to a deployment (retrain_via=auto) starts a run of the served train
    deployment (run_deployment) instead of training in its own process."""
    from prefect.client.orchestration import get_client
    from prefect.context import _deployment_id  # what Prefect sets while it runs a deployment's flow run

    from flows.deployments import DEPLOYMENT_NAME
    from flows.feedback import feedback_flow
    from flows.train import train_flow
    from pricing.tracking import alias_map

    train_id = train_flow.to_deployment(name=DEPLOYMENT_NAME).apply()  # registered, not served: the run stays scheduled
    before = alias_map(MODEL_NAME)
    token = _deployment_id.set(train_id)  # "this run belongs to a deployment"
    try:
        res = feedback_flow(prices_dir=played["prices"], realized_dir=played["shift"], config_path=played["config"],
                            retrain_data_dir=str(tmp_path / "retrain"))
    finally:
        _deployment_id.reset(token)
    assert res["retrain"] is True
    started = res["retrained"]
    assert started["deployment"] == f"train/{DEPLOYMENT_NAME}"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(started["flow_run_id"])
        deployment = client.read_deployment_by_name(f"train/{DEPLOYMENT_NAME}")
    assert run.deployment_id == deployment.id
    assert run.parameters["data_dir"] == str(tmp_path / "retrain") and run.parameters["config_path"] == played["config"]
    assert (tmp_path / "retrain" / "offers.parquet").exists(), "the training data is written before the run starts"
    assert alias_map(MODEL_NAME) == before, "nothing trained in this run"
