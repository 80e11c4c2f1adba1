"""Promotion decision rules, the holdout and the model-blend yardstick (pure functions, no Prefect, no MLflow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from pricing.config import PromotionConfig
from pricing.promotion import ProfitComparison, decide, fit_blend, holdout_offers


def _metrics(d_log_loss: float, d_ece: float = 0.0) -> pd.DataFrame:
    base = {"log_loss": 0.35, "auc": 0.8, "brier": 0.11, "ece": 0.01, "mean_predicted": 0.15}
    rows = []
    for k, v in base.items():
        delta = {"log_loss": d_log_loss, "ece": d_ece}.get(k, 0.0)
        rows.append({"metric": k, "champion": v, "challenger": v + delta, "difference": delta})
    return pd.DataFrame(rows)


def _profit(champion: float, diff: float, se: float) -> ProfitComparison:
    return ProfitComparison(
        yardstick="truth", yardstick_note="", n_requests=1000,
        profit_per_offer={"champion": champion, "challenger": champion + diff},
        diff_mean=diff, diff_se=se, table=pd.DataFrame(), cross=pd.DataFrame(), price_rel={},
    )


CFG = PromotionConfig()


def test_worse_log_loss_is_rejected_whatever_the_profit():
    d = decide(_metrics(CFG.max_log_loss_increase + 0.001), _profit(3.0, 0.5, 0.01), CFG, auto_approve=True)
    assert d.verdict == "reject" and "log loss" in d.reasons[0]


def test_lower_profit_is_rejected_even_with_better_predictions():
    d = decide(_metrics(-0.01), _profit(3.0, -0.01, 0.001), CFG, auto_approve=True)
    assert d.verdict == "reject" and "expected profit is lower" in d.reasons[0]


def test_worse_calibration_is_rejected():
    d = decide(_metrics(0.0, d_ece=CFG.max_ece_increase + 0.01), _profit(3.0, 0.1, 0.01), CFG, auto_approve=True)
    assert d.verdict == "reject" and "ECE" in d.reasons[0]


def test_profit_drop_within_tolerance_is_not_rejected():
    cfg = CFG.model_copy(update={"max_profit_drop": 0.01})
    d = decide(_metrics(0.0), _profit(3.0, -0.02, 0.01), cfg, auto_approve=True)
    assert d.verdict == "needs_approval"


def test_clear_gain_is_approved_automatically_only_when_enabled():
    clear = _profit(3.0, 0.3, 0.01)  # +10 %, lower bound far above auto_approve_gain
    assert decide(_metrics(-0.01), clear, CFG, auto_approve=True).verdict == "auto_approve"
    off = decide(_metrics(-0.01), clear, CFG, auto_approve=False)
    assert off.verdict == "needs_approval" and "auto-approval is off" in off.reasons[1]


def test_uncertain_gain_or_slightly_worse_log_loss_needs_a_human():
    noisy = _profit(3.0, 0.06, 0.05)  # +2 %, but the lower bound is below zero
    assert decide(_metrics(-0.01), noisy, CFG, auto_approve=True).verdict == "needs_approval"
    within_tolerance = _metrics(CFG.max_log_loss_increase / 2)
    assert decide(within_tolerance, _profit(3.0, 0.3, 0.01), CFG, auto_approve=True).verdict == "needs_approval"


def test_a_profit_drop_within_the_noise_is_not_a_rejection():
    within_noise = _profit(3.0, -0.01, 0.05)  # -0.3 %, upper bound +2.4 %
    assert decide(_metrics(-0.001), within_noise, CFG, auto_approve=True).verdict == "needs_approval"
    clearly_lower = _profit(3.0, -0.3, 0.05)  # -10 %, upper bound -7 %
    d = decide(_metrics(-0.001), clearly_lower, CFG, auto_approve=True)
    assert d.verdict == "reject" and "upper bound" in d.reasons[0]


def test_clearly_better_predictions_with_flat_profit_are_a_clear_gain():
    """After a market shift: log loss much better, the profit of the chosen prices about the same."""
    flat = _profit(3.0, -0.006, 0.03)  # -0.2 %
    better = _metrics(-0.008)
    d = decide(better, flat, CFG, auto_approve=True, log_loss_diff_se=0.001)
    assert d.verdict == "auto_approve" and "predictions are clearly better" in d.reasons[0]
    assert decide(better, flat, CFG, auto_approve=False, log_loss_diff_se=0.001).verdict == "needs_approval"
    # not clear: the log-loss gain is within its noise, too small, or the profit drops by more than allowed
    assert decide(better, flat, CFG, auto_approve=True, log_loss_diff_se=0.006).verdict == "needs_approval"
    assert decide(better, flat, CFG, auto_approve=True).verdict == "needs_approval", "no standard error: no evidence"
    small = _metrics(-(CFG.auto_approve_log_loss_gain / 2))
    assert decide(small, flat, CFG, auto_approve=True, log_loss_diff_se=1e-5).verdict == "needs_approval"
    dropping = _profit(3.0, -0.03, 0.03)  # -1 %: not significantly lower, but beyond auto_approve_max_profit_drop
    assert decide(better, dropping, CFG, auto_approve=True, log_loss_diff_se=0.001).verdict == "needs_approval"


def test_holdout_is_the_latest_offers_within_the_test_share():
    t = pd.date_range("2026-01-01", periods=1000, freq="h", tz="UTC")
    offers = pd.DataFrame({"offer_id": np.arange(1000), "offer_time": t[::-1]})
    h = holdout_offers(offers, n=500, test_share=0.15)
    assert len(h) == 150 and h["offer_time"].min() == t[850]
    assert len(holdout_offers(offers, n=100, test_share=0.15)) == 100
    with pytest.raises(ValueError, match="no offers"):
        holdout_offers(offers.iloc[:0], n=100, test_share=0.15)


def test_blend_weights_follow_the_better_predictor():
    rng = np.random.default_rng(0)
    n = 20_000
    truth = rng.normal(-1.5, 1.0, n)
    y = (rng.random(n) < expit(truth)).astype(float)
    good = truth + rng.normal(0, 0.2, n)  # close to the truth
    overconfident = 3.0 * rng.normal(-1.5, 1.0, n)  # unrelated and loud
    a, b = fit_blend(y, np.column_stack([good, overconfident]))
    assert b[0] > 0.8 and b[1] < 0.05, (a, b)
    assert (b >= 0).all()


def test_holdout_keeps_only_offers_after_both_models_training_data():
    from types import SimpleNamespace

    from pricing.promotion import Contender, fitted_until

    t0 = pd.Timestamp("2026-09-01", tz="UTC")
    offers = pd.DataFrame({"offer_id": [f"o{i}" for i in range(100)],
                           "offer_time": [t0 + pd.Timedelta(hours=i) for i in range(100)]})
    old = Contender("champion", "1", SimpleNamespace(fitted_until=str(t0 + pd.Timedelta(hours=50))), None)
    new = Contender("challenger", "2", SimpleNamespace(fitted_until=(t0 + pd.Timedelta(hours=89)).isoformat()), None)
    legacy = Contender("champion", "0", SimpleNamespace(fitted_until=None), None)
    assert fitted_until(old, new) == t0 + pd.Timedelta(hours=89)
    assert fitted_until(legacy) is None and fitted_until(legacy, old) == t0 + pd.Timedelta(hours=50)
    h = holdout_offers(offers, n=1000, test_share=0.3, after=fitted_until(old, new))
    assert list(h["offer_id"]) == [f"o{i}" for i in range(90, 100)], "strictly after the later model's data"
    assert len(holdout_offers(offers, 1000, 0.3, after=fitted_until(legacy))) == 30, "no record: the test-split rule"
    assert holdout_offers(offers, 1000, 0.3, after=t0 + pd.Timedelta(days=30)).empty
