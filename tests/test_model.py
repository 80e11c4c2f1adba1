"""Acceptance model: monotone in price, early stopping, time split, calibration, bad input, plots.

Synthetic offers with a known logistic truth (acceptance falls with price, rises with discount and
depends on a categorical segment and a numeric context feature); independent of pricing.features.
"""

from __future__ import annotations

import dataclasses
import json

import lightgbm
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from pricing.config import ModelConfig
from pricing.model import (
    AcceptanceModel,
    IsotonicCalibrator,
    PlattCalibrator,
    TrainingDataError,
    calibration_table,
    calibrator_from_dict,
    check_monotone,
    check_training_data,
    decide_calibration,
    ece_noise_floor,
    evaluate,
    expected_calibration_error,
    monotone_vector,
    time_split,
    train_model,
)
from pricing.plots import demand_curves_plot, feature_importance_plot, reliability_plot

PRICE_FEATURES = {"price": -1, "discount_pct": +1, "price_to_competitor": -1, "price_to_cost": -1}
SEGMENTS = ["new", "casual", "loyal", "vip"]
SEG_EFFECT = np.array([-0.6, 0.0, 0.5, 1.0])
T0 = pd.Timestamp("2026-01-01", tz="UTC")


def price_cols(ctx: pd.DataFrame, price) -> pd.DataFrame:
    """The price-derived columns of ``ctx`` rows priced at ``price`` (one per row), consistently."""
    price = np.asarray(price, dtype=float)
    return pd.DataFrame(
        {
            "price": price,
            "discount_pct": 1.0 - price / ctx["list_sum"].to_numpy(),
            "price_to_competitor": price / ctx["competitor_price"].to_numpy(),
            "price_to_cost": price / ctx["cost_sum"].to_numpy(),
        },
        index=ctx.index,
    )


def true_logit(ctx: pd.DataFrame, price, shift=0.0) -> np.ndarray:
    seg = ctx["segment"].cat.codes.to_numpy()
    return (
        -1.0
        + SEG_EFFECT[seg]
        + 0.5 * ctx["engagement"].to_numpy()
        + 0.3 * ctx["season"].to_numpy()
        - 6.0 * (price / ctx["list_sum"].to_numpy() - 0.8)
        - 2.0 * (price / ctx["competitor_price"].to_numpy() - 0.9)
        + shift
    )


def make_offers(n: int = 20_000, seed: int = 0, drift: float = 0.0):
    """X, y, times (hourly, so many ties, rows NOT sorted by time), true P(accept).

    ``drift`` adds that much to the true log-odds of the latest 30 % of offers (validation + test),
    which no feature explains: a model fitted on the older offers is then miscalibrated later on."""
    rng = np.random.default_rng(seed)
    times = pd.Series(T0 + pd.to_timedelta(rng.integers(0, 180 * 24, n), unit="h"))
    list_sum = np.exp(rng.normal(np.log(60), 0.5, n))
    ctx = pd.DataFrame(
        {
            "list_sum": list_sum,
            "competitor_price": list_sum * rng.uniform(0.8, 1.1, n),
            "cost_sum": list_sum * rng.uniform(0.35, 0.65, n),
            "segment": pd.Categorical(rng.choice(SEGMENTS, n, p=[0.3, 0.4, 0.2, 0.1]), categories=SEGMENTS),
            "engagement": rng.normal(size=n),
            "season": rng.integers(0, 2, n).astype(float),
            "noise1": rng.normal(size=n),
            "noise2": rng.uniform(size=n),
        }
    )
    price = list_sum * rng.uniform(0.55, 1.05, n)
    X = pd.concat([ctx, price_cols(ctx, price)], axis=1)
    shift = np.where(times.rank(pct=True).to_numpy() > 0.7, drift, 0.0)
    p = 1.0 / (1.0 + np.exp(-true_logit(ctx, price, shift)))
    y = pd.Series((rng.random(n) < p).astype(int))
    return X, y, times, p


def fast_cfg(**kw) -> ModelConfig:
    """The tree model (most tests here are about it); the structured one has its own section below."""
    # one thread: as fast on 14k rows, and immune to OpenMP oversubscription when other jobs share the cores
    base = {"learning_rate": 0.1, "n_estimators": 400, "early_stopping_rounds": 30, "n_threads": 1,
            "price_response": "trees"}
    return ModelConfig(**{**base, **kw})


def structured_cfg(**kw) -> ModelConfig:
    return fast_cfg(**{"price_response": "structured", **kw})


@pytest.fixture(scope="module")
def offers():
    return make_offers()


@pytest.fixture(scope="module")
def trained(offers):
    X, y, t, _ = offers
    return train_model(X, y, t, PRICE_FEATURES, fast_cfg(calibration="isotonic"))


def price_grid(X: pd.DataFrame, m: int = 25) -> np.ndarray:
    """Per-row grid from 40 % to 130 % of the list price (beyond the training range on both sides)."""
    return X["list_sum"].to_numpy()[:, None] * np.linspace(0.4, 1.3, m)[None, :]


# ---- time split ------------------------------------------------------------------------------------


def test_time_split_is_ordered_keeps_ties_and_respects_shares(offers):
    _, _, t, _ = offers
    tr, va, te = time_split(t, 0.15, 0.15)
    assert (tr.astype(int) + va.astype(int) + te.astype(int) == 1).all()
    assert t[tr].max() < t[va].min() and t[va].max() < t[te].min()  # strict: ties never straddle
    assert abs(tr.mean() - 0.70) < 0.01 and abs(va.mean() - 0.15) < 0.01 and abs(te.mean() - 0.15) < 0.01
    # the masks follow the original (unsorted) row order
    assert not t.is_monotonic_increasing


def test_time_split_numbers_and_a_tie_spanning_both_boundaries():
    t = pd.Series([0, 1, 2, 3, 5, 5, 5, 5, 5, 9])
    tr, va, te = time_split(t, 0.2, 0.2)  # boundaries at sorted positions 6 and 8, both inside the 5s
    assert t[tr].tolist() == [0, 1, 2, 3]
    assert t[va].tolist() == [5, 5, 5, 5, 5]
    assert t[te].tolist() == [9]
    empty = time_split(pd.Series([], dtype=float), 0.15, 0.15)
    assert all(len(m) == 0 for m in empty)


def test_monotone_vector():
    names = ["segment", "price", "engagement", "discount_pct"]
    assert monotone_vector(names, PRICE_FEATURES) == [0, -1, 0, 1]
    with pytest.raises(ValueError, match="must be -1, 0 or \\+1"):
        monotone_vector(names, {"price": -2})


# ---- monotonicity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["basic", "intermediate", "advanced"])
def test_calibrated_acceptance_never_rises_with_price(offers, trained, method):
    X, y, t, _ = offers
    if method == ModelConfig().monotone_constraints_method:
        result = trained  # the shared model: default method, isotonic calibration
    else:
        cfg = fast_cfg(calibration="isotonic", monotone_constraints_method=method)
        result = train_model(X, y, t, PRICE_FEATURES, cfg)
    assert result.model.booster.params["monotone_constraints_method"] == method
    model = result.model
    assert model.calibrator is not None
    rows = X.sample(300, random_state=1)
    report = check_monotone(model, rows, price_cols, price_grid(rows))
    assert report.ok(1e-12), (
        f"acceptance rose by {report.max_rise} along the price grid (row {report.worst_row})"
    )
    raw = check_monotone(model, rows, price_cols, price_grid(rows), calibrated=False)
    assert raw.ok(1e-12)
    # the curves do fall: the model learnt that price matters
    assert (report.curves[:, 0] - report.curves[:, -1]).mean() > 0.2


def test_categorical_codes_in_a_float32_matrix(offers):
    """The features module's layout: float32 block, categoricals as float32 codes named in ``categorical``."""
    X, y, t, _ = offers
    Xc = X.astype({c: "float32" for c in X.columns if c != "segment"})
    Xc["segment"] = X["segment"].cat.codes.astype("float32")
    r = train_model(Xc, y, t, PRICE_FEATURES, fast_cfg(calibration="isotonic"), categorical=["segment"])
    assert r.model.categorical == ["segment"]
    infos = r.model.booster.dump_model()["feature_infos"]
    assert infos["segment"]["values"] and not infos["price"]["values"]  # only categoricals list values
    rows = Xc.sample(200, random_state=2)
    assert check_monotone(r.model, rows, price_cols, price_grid(rows)).ok(1e-12)
    assert r.metrics["test_auc"] > 0.6
    with pytest.raises(ValueError, match="non-negative integer codes"):
        train_model(
            Xc.assign(segment=Xc["segment"] - 0.5), y, t, PRICE_FEATURES, fast_cfg(), categorical=["segment"]
        )
    with pytest.raises(ValueError, match="categorical columns not in X"):
        train_model(Xc, y, t, PRICE_FEATURES, fast_cfg(), categorical=["region"])


def test_unconstrained_model_would_fail_the_check(offers):
    """The check has teeth: without constraints (direction 0) the acceptance curves do rise somewhere."""
    X, y, t, _ = offers
    unconstrained = {k: 0 for k in PRICE_FEATURES}
    model = train_model(X, y, t, unconstrained, fast_cfg(calibration="none")).model
    rows = X.sample(300, random_state=1)
    assert check_monotone(model, rows, price_cols, price_grid(rows)).max_rise > 1e-6


def test_isotonic_calibrator_is_non_decreasing_and_json_round_trips():
    rng = np.random.default_rng(3)
    p = rng.uniform(size=5000)
    y = (rng.uniform(size=5000) < p**2).astype(int)
    cal = IsotonicCalibrator.fit(p, y)
    grid = np.linspace(-0.1, 1.1, 10_001)
    out = cal.transform(grid)
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= 1e-4 and out.max() <= 1 - 1e-4
    back = IsotonicCalibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_array_equal(back.transform(grid), out)


# ---- training: early stopping, split, metrics --------------------------------------------------------


def test_early_stopping_time_split_and_metrics(trained, offers):
    X, y, t, p_true = offers
    r = trained
    cfg = fast_cfg()
    assert 1 <= r.model.best_iteration < cfg.n_estimators
    assert r.metrics["best_iteration"] == r.model.best_iteration
    assert len(r.learning_curve) < cfg.n_estimators  # training really stopped early
    assert r.learning_curve["valid_log_loss"].idxmin() + 1 == r.model.best_iteration

    tr, va, te = (r.splits[k] for k in ("train", "valid", "test"))
    assert t[tr].max() <= t[va].min() and t[va].max() <= t[te].min()
    assert tr.sum() + va.sum() + te.sum() == len(X)

    for split in ("valid", "test"):
        for k in ("auc", "log_loss", "brier", "ece", "base_rate", "n"):
            assert np.isfinite(r.metrics[f"{split}_{k}"]), f"{split}_{k}"
    assert r.metrics["test_n"] == te.sum() and r.metrics["valid_n"] == va.sum()
    assert r.metrics["test_auc"] > 0.6
    truth_ll = log_loss(y[te], p_true[te])
    assert abs(r.metrics["test_log_loss"] - truth_ll) < 0.03, (r.metrics["test_log_loss"], truth_ll)
    assert r.metrics["test_brier"] < 0.25

    fi = r.feature_importance
    assert set(fi.columns) == {"feature", "gain", "split"} and set(fi["feature"]) == set(X.columns)
    assert fi.iloc[0]["feature"] not in ("noise1", "noise2")
    assert r.model.categorical == ["segment"]
    assert r.model.price_features == PRICE_FEATURES
    rng = r.model.price_feature_ranges["discount_pct"]
    assert -0.06 < rng["min"] < rng["q01"] < rng["q99"] < rng["max"] < 0.46


def test_refit_on_all_keeps_the_selection_and_learns_the_latest_offers():
    """The number of trees and the metrics come from the time split; the published trees are grown on
    every offer, so a drift in the latest offers (no feature explains it) shows in the refit model."""
    X, y, t, _ = make_offers(drift=0.8)
    split = train_model(X, y, t, PRICE_FEATURES, fast_cfg(refit_on_all=False, calibration="none"))
    refit = train_model(X, y, t, PRICE_FEATURES, fast_cfg(refit_on_all=True, calibration="none"))
    tr, va, te = (refit.splits[k] for k in ("train", "valid", "test"))
    assert refit.metrics["best_iteration"] == split.metrics["best_iteration"]
    assert refit.metrics["test_log_loss"] == split.metrics["test_log_loss"], "metrics describe the split model"
    assert refit.metrics["refit_n"] == len(X) and split.metrics["refit_on_all"] == 0.0
    assert refit.model.booster.num_trees() == refit.model.best_iteration
    assert pd.Timestamp(refit.model.fitted_until) == t.max()
    assert pd.Timestamp(split.model.fitted_until) == t[tr | va].max() < t[te].min()
    latest = y[te].mean()  # no feature tells drifted rows apart: the refit moves part of the way (30 % of its rows)
    gap_split = abs(split.model.predict_proba(X[te]).mean() - latest)
    gap_refit = abs(refit.model.predict_proba(X[te]).mean() - latest)
    assert gap_split > 0.1 and gap_refit < gap_split - 0.02, (gap_split, gap_refit)
    rows = X.sample(300, random_state=2)
    assert check_monotone(refit.model, rows, price_cols, price_grid(rows)).ok(1e-12)
    # the refit model saw its test window; what the split model did there out of sample travels with it
    held = refit.model.holdout_performance
    assert held is not None and held["n"] == te.sum()
    assert held["log_loss"] == pytest.approx(refit.metrics["test_log_loss"], abs=1e-9)
    assert held["auc"] == pytest.approx(refit.metrics["test_auc"], abs=1e-9)
    in_sample = roc_auc_score(y[te], refit.model.predict_proba(X[te]))
    assert in_sample > held["auc"], "in sample the refit model looks better than it is"
    again = AcceptanceModel.from_dict(refit.model.classifier, json.loads(json.dumps(refit.model.to_dict())))
    assert again.holdout_performance == pytest.approx(held)


def test_contributions_sum_to_raw_log_odds(trained, offers):
    X = offers[0].iloc[:500]
    model = trained.model
    contrib = model.contributions(X)
    assert list(contrib.columns) == [*X.columns, "bias"]
    log_odds = np.log(model.predict_raw(X) / (1 - model.predict_raw(X)))
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), log_odds, rtol=0, atol=1e-9)
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), model.predict_log_odds(X), rtol=0, atol=1e-12)


def test_predictions_accept_reordered_columns_and_category_order(trained, offers):
    X = offers[0].iloc[:500]
    model = trained.model
    shuffled = X[X.columns[::-1]].assign(extra=1.0)
    shuffled["segment"] = shuffled["segment"].cat.reorder_categories(SEGMENTS[::-1])
    np.testing.assert_array_equal(model.predict_proba(shuffled), model.predict_proba(X))
    with pytest.raises(KeyError, match="price"):
        model.predict_proba(X.drop(columns=["price"]))


# ---- calibration ------------------------------------------------------------------------------------


def test_isotonic_lowers_ece_when_miscalibrated_and_auto_chooses_it():
    X, y, t, _ = make_offers(seed=1, drift=1.0)
    r = train_model(X, y, t, PRICE_FEATURES, fast_cfg(calibration="auto"))
    assert r.model.calibrator is not None, r.calibration_decision.reason
    assert r.metrics["calibration_isotonic"] == 1.0
    assert r.metrics["test_raw_ece"] > 0.08
    assert r.metrics["test_ece"] < 0.5 * r.metrics["test_raw_ece"]
    assert r.metrics["test_log_loss"] < r.metrics["test_raw_log_loss"]
    before, after = r.reliability("test", "before"), r.reliability("test", "after")
    assert before["count"].sum() == after["count"].sum() == r.splits["test"].sum()


def test_auto_keeps_a_calibrated_model_raw(offers):
    X, y, t, _ = offers
    r = train_model(X, y, t, PRICE_FEATURES, fast_cfg(calibration="auto"))
    assert r.model.calibrator is None, r.calibration_decision.reason
    assert "calibration=auto -> none" in r.calibration_decision.reason


def test_decide_calibration_rule():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 20_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    assert not decide_calibration(p, y, "auto", 15).use_isotonic  # calibrated already
    squashed = 0.5 + 0.5 * (p - 0.5)  # under-confident: clearly miscalibrated
    d = decide_calibration(squashed, y, "auto", 15)
    assert d.use_isotonic and d.ece_calibrated_cv < d.ece_raw - 0.005
    assert decide_calibration(squashed, y, "none", 15).use_isotonic is False
    assert decide_calibration(p, y, "isotonic", 15).use_isotonic is True
    # the structured model's candidate is Platt's logistic map; forced modes name their calibrator
    logit_squashed = 1 / (1 + np.exp(-0.4 * np.log(p / (1 - p))))
    d = decide_calibration(logit_squashed, y, "auto", 15, method="platt")
    assert d.use_calibrator and d.method == "platt" and not d.use_isotonic
    assert d.ece_calibrated_cv < d.ece_raw - 0.005
    assert not decide_calibration(p, y, "auto", 15, method="platt").use_calibrator
    assert decide_calibration(p, y, "platt", 15).method == "platt"
    with pytest.raises(ValueError, match="unknown calibration mode"):
        decide_calibration(p, y, "sigmoid", 15)


def test_calibrator_round_trip_and_none_equals_raw(trained, offers):
    X = offers[0].iloc[:2000]
    model = trained.model
    d = json.loads(json.dumps(model.calibrator_to_dict()))
    back = dataclasses.replace(model, calibrator=AcceptanceModel.calibrator_from_dict(d))
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    # the whole model: booster from its model string + the JSON metadata
    booster = lightgbm.Booster(model_str=model.booster.model_to_string())
    rebuilt = AcceptanceModel.from_dict(booster, json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(rebuilt.predict_proba(X), model.predict_proba(X))

    uncal = dataclasses.replace(model, calibrator=None)
    np.testing.assert_array_equal(uncal.predict_proba(X), model.predict_raw(X))
    assert AcceptanceModel.calibrator_from_dict(uncal.calibrator_to_dict()) is None


def test_calibration_none_leaves_predictions_raw(offers):
    X, y, t, _ = offers
    r = train_model(X, y, t, PRICE_FEATURES, fast_cfg(calibration="none"))
    assert r.model.calibrator is None and r.metrics["calibration_isotonic"] == 0.0
    np.testing.assert_array_equal(r.model.predict_proba(X.iloc[:1000]), r.model.predict_raw(X.iloc[:1000]))
    assert r.metrics["test_ece"] == r.metrics["test_raw_ece"]


def test_ece_and_calibration_table():
    y = np.array([0, 0, 1, 1, 0, 1, 1, 1])
    p = np.array([0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9])
    tab = calibration_table(y, p, n_bins=4)
    assert tab["count"].tolist() == [4, 4]  # ties share a bin, empty bins dropped
    assert tab["observed_rate"].tolist() == [0.5, 0.75]
    assert expected_calibration_error(y, p, 4) == pytest.approx(0.5 * 0.4 + 0.5 * 0.15)
    uni = calibration_table(y, p, n_bins=10, strategy="uniform")
    assert uni["bin"].tolist() == [1, 9]
    rng = np.random.default_rng(0)
    pp = rng.uniform(size=50_000)
    yy = (rng.uniform(size=pp.size) < pp).astype(int)
    floor = ece_noise_floor(pp, 15)
    assert expected_calibration_error(yy, pp, 15) < 3 * floor
    assert expected_calibration_error(yy, np.clip(pp + 0.1, 0, 1), 15) > 0.08
    m = evaluate(np.ones(5), np.full(5, 0.7))
    assert np.isnan(m["auc"]) and m["n"] == 5 and m["base_rate"] == 1.0


# ---- bad input --------------------------------------------------------------------------------------


def _times(n: int) -> pd.Series:
    return pd.Series(T0 + pd.to_timedelta(np.arange(n), unit="min"))


@pytest.mark.parametrize(
    ("y", "times", "message"),
    [
        (np.array([], dtype=int), _times(0), "no offers at all"),
        (np.ones(1000, dtype=int), _times(1000), "single class: all 1000 offers were accepted"),
        (np.zeros(1000, dtype=int), _times(1000), "single class: all 1000 offers were declined"),
        (
            np.r_[np.ones(100), np.zeros(99)].astype(int),
            _times(199),
            "too few offers to train: 199 rows.*min_rows = 500",
        ),
        (
            np.r_[np.ones(10), np.zeros(990)].astype(int),
            _times(1000),
            "too few accepted offers: 10 of 1000.*min_positives = 20",
        ),
        (np.r_[np.zeros(5), np.ones(995)].astype(int), _times(1000), "too few declined offers: 5 of 1000"),
        (np.tile([0, 1], 500), pd.Series([T0] * 1000), "too few offers in the train split"),
        (
            np.tile([0, 1], 500),
            pd.concat([_times(700), pd.Series([T0 + pd.Timedelta("1D")] * 300)]),
            "too few offers in the test split: 0 rows",
        ),
        (
            np.r_[np.tile([0, 1], 425), np.zeros(150)].astype(int),
            _times(1000),
            "test split .* holds only declined offers",
        ),
        (np.r_[np.tile([0, 1], 200), [0.5], np.ones(599)], _times(1000), "must be 0 \\(declined\\) or 1"),
    ],
)
def test_bad_training_data_stops_with_a_clear_message(y, times, message):
    with pytest.raises(TrainingDataError, match=message):
        check_training_data(y, times, ModelConfig())


def test_train_model_checks_data_and_matrix(offers):
    X, y, t, _ = offers
    with pytest.raises(TrainingDataError, match="single class"):
        train_model(X, pd.Series(np.zeros(len(X), dtype=int)), t, PRICE_FEATURES, fast_cfg())
    with pytest.raises(TypeError, match="numeric or pandas 'category'"):
        train_model(X.assign(segment=X["segment"].astype(str)), y, t, PRICE_FEATURES, fast_cfg())
    with pytest.raises(ValueError, match="none of the price features"):
        train_model(X.drop(columns=list(PRICE_FEATURES)), y, t, PRICE_FEATURES, fast_cfg())


# ---- plots ------------------------------------------------------------------------------------------


def test_plots_write_png_files(trained, offers, tmp_path):
    r = trained
    X, _, _, _ = offers
    paths = [tmp_path / "reliability.png", tmp_path / "curves" / "demand.png", tmp_path / "importance.png"]
    reliability_plot(r.reliability("test", "before"), r.reliability("test", "after"), paths[0])
    rows = X.iloc[:4]
    rep = check_monotone(r.model, rows, price_cols, price_grid(rows, 15))
    curves = pd.DataFrame(
        {
            "group": np.repeat([f"offer {i}" for i in range(len(rows))], rep.prices.shape[1]),
            "price": rep.prices.ravel(),
            "p_model": rep.curves.ravel(),
            "p_true": np.concatenate(
                [
                    1 / (1 + np.exp(-true_logit(rows.iloc[[i] * len(pr)], pr)))
                    for i, pr in enumerate(rep.prices)
                ]
            ),
        }
    )
    demand_curves_plot(curves, paths[1])
    feature_importance_plot(r.feature_importance, paths[2], top=5)
    for p in paths:
        assert p.exists() and p.stat().st_size > 1000
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- the structured price response: level(x) - sensitivity(x) * log(price / list) -------------------


@pytest.fixture(scope="module")
def structured(offers):
    X, y, t, _ = offers
    return train_model(X, y, t, PRICE_FEATURES, structured_cfg(calibration="platt"))


def test_structured_acceptance_falls_strictly_with_price(structured, offers):
    X = offers[0]
    model = structured.model
    assert model.structured and model.slope_booster is not None and isinstance(model.calibrator, PlattCalibrator)
    rows = X.sample(300, random_state=1)
    for calibrated in (True, False):
        report = check_monotone(model, rows, price_cols, price_grid(rows), calibrated=calibrated)
        assert report.max_rise < 0, f"acceptance did not fall strictly everywhere (rise {report.max_rise})"
    # the boosters never see a price: only discount_pct enters, through the price term
    assert set(model.context_features) == set(X.columns) - set(PRICE_FEATURES)
    assert model.booster.num_feature() == model.slope_booster.num_feature() == len(model.context_features)


def test_structured_learns_the_price_slope_and_matches_the_truth(structured, offers):
    X, y, _t, p_true = offers
    r = structured
    te = r.splits["test"]
    truth_ll = log_loss(y[te], p_true[te])
    assert abs(r.metrics["test_log_loss"] - truth_ll) < 0.03, (r.metrics["test_log_loss"], truth_ll)
    assert r.metrics["test_auc"] > 0.6 and r.metrics["price_response_structured"] == 1.0
    assert r.metrics["slope_best_iteration"] >= 1
    # the truth's d log-odds / d log price at the offered prices: -(6 p / list + 2 p / competitor)
    price = X["price"].to_numpy()
    true_slope = 6 * price / X["list_sum"].to_numpy() + 2 * price / X["competitor_price"].to_numpy()
    sens = r.model.sensitivity(X)
    assert np.all(sens > 0)
    assert abs(np.mean(sens) - np.mean(true_slope)) < 0.25 * np.mean(true_slope), (sens.mean(), true_slope.mean())
    fi = r.feature_importance
    assert {"sensitivity_gain", "sensitivity_split"} <= set(fi.columns)
    assert set(fi["feature"]) == set(r.model.context_features)


def test_structured_contributions_put_the_price_term_in_the_price_column(structured, offers):
    X = offers[0].iloc[:500]
    model = structured.model
    contrib = model.contributions(X)
    assert list(contrib.columns) == [*X.columns, "bias"]
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), model.predict_log_odds(X), rtol=0, atol=1e-9)
    assert (contrib[["discount_pct", "price_to_competitor", "price_to_cost"]] == 0).all().all()
    # the price column is the price term: cheaper than the reference price -> positive, dearer -> negative
    ell = np.log(X["price"] / X["list_sum"]).to_numpy() - model.ell_ref
    assert np.all(np.sign(contrib["price"].to_numpy()) == -np.sign(ell))


def test_structured_round_trips_through_json_and_model_text(structured, offers):
    X = offers[0].iloc[:2000]
    model = structured.model
    meta = json.loads(json.dumps(model.to_dict()))
    level = lightgbm.Booster(model_str=model.booster.model_to_string())
    rebuilt = AcceptanceModel.from_dict(level, meta, slope_booster=model.slope_model_text())
    np.testing.assert_allclose(rebuilt.predict_proba(X), model.predict_proba(X), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="needs its sensitivity booster"):
        AcceptanceModel.from_dict(level, meta)


def test_structured_refit_keeps_the_selection_and_learns_the_latest_offers():
    X, y, t, _ = make_offers(drift=0.8)
    split = train_model(X, y, t, PRICE_FEATURES, structured_cfg(refit_on_all=False, calibration="none"))
    refit = train_model(X, y, t, PRICE_FEATURES, structured_cfg(refit_on_all=True, calibration="none"))
    te = refit.splits["test"]
    assert refit.metrics["best_iteration"] == split.metrics["best_iteration"]
    assert refit.metrics["slope_best_iteration"] == split.metrics["slope_best_iteration"]
    assert refit.metrics["test_log_loss"] == split.metrics["test_log_loss"], "metrics describe the split model"
    assert refit.model.booster.num_trees() == refit.model.best_iteration
    assert refit.model.slope_booster.num_trees() == refit.model.slope_best_iteration
    latest = y[te].mean()
    gap_split = abs(split.model.predict_proba(X[te]).mean() - latest)
    gap_refit = abs(refit.model.predict_proba(X[te]).mean() - latest)
    assert gap_split > 0.05 and gap_refit < gap_split - 0.015, (gap_split, gap_refit)


def test_structured_auto_calibration_uses_platt():
    X, y, t, _ = make_offers(seed=1, drift=1.0)
    r = train_model(X, y, t, PRICE_FEATURES, structured_cfg(calibration="auto"))
    assert isinstance(r.model.calibrator, PlattCalibrator), r.calibration_decision.reason
    assert r.metrics["calibration_platt"] == 1.0 and r.metrics["calibration_isotonic"] == 0.0
    assert r.metrics["test_ece"] < 0.5 * r.metrics["test_raw_ece"]


def test_platt_calibrator_is_increasing_and_round_trips():
    rng = np.random.default_rng(4)
    z = rng.normal(0, 2, 20_000)
    y = (rng.uniform(size=z.size) < 1 / (1 + np.exp(-(0.5 + 0.6 * z)))).astype(int)
    cal = PlattCalibrator.fit(1 / (1 + np.exp(-z)), y)
    assert cal.a == pytest.approx(0.5, abs=0.1) and cal.b == pytest.approx(0.6, abs=0.05)
    grid = np.linspace(0, 1, 10_001)
    out = cal.transform(grid)
    assert np.all(np.diff(out) >= 0) and out.min() >= 1e-4 and out.max() <= 1 - 1e-4
    back = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal
    with pytest.raises(ValueError, match="b > 0"):
        PlattCalibrator(a=0.0, b=-1.0)


def test_structured_needs_discount_pct_and_refuses_dask(offers):
    X, y, t, _ = offers
    with pytest.raises(KeyError, match="discount_pct"):
        train_model(X.drop(columns=["discount_pct"]), y, t, PRICE_FEATURES, structured_cfg())
    with pytest.raises(ValueError, match="price_response: trees"):
        train_model(X, y, t, PRICE_FEATURES, structured_cfg(), dask_client=object())
