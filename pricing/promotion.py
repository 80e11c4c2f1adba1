"""Promotion review: is the ``challenger`` better than the ``champion``? And moving the aliases.

Comparison (:func:`review`), both models on the SAME recent holdout of a validated snapshot:

1. **Holdout** (:func:`holdout_offers`): the latest ``promotion.holdout_offers`` offers, at most the
   latest ``model.test_share`` of them, and only those **after the training data of both models**
   (``AcceptanceModel.fitted_until``: the end of the validation split, or of all offers for a model
   refitted on every offer, ``model.refit_on_all``), so neither model was fitted, early-stopped or
   calibrated on them. With fewer than ``promotion.min_holdout_offers`` such offers the review is
   deferred (:class:`ReviewDeferred`): a challenger trained on the latest data is reviewed on the next
   period. Models without the record (older versions) fall back to the test-split rule; one whose
   feature cut-off lies after the holdout start was fitted on part of it: the review says so.
2. **Prediction quality**: each model builds the holdout's features with its OWN feature builder
   (:func:`pricing.features.offer_training_frame`) and is scored on the realized outcomes: log loss,
   AUC, Brier, calibration error (ECE, quantile bins), with the paired standard error of the log-loss
   difference.
3. **Expected profit of each model's prices** (:func:`compare_profit`): on a sample of the holdout's
   requests (customer, bundle, time of the offer) each model picks the price it would charge, the
   rung of the bundle's rule ladder (margin floor, never above list, price endings; the same ladder the
   price book uses) that maximizes ITS OWN expected profit ``(price - cost) * P_model(accept)``.
   That is the personal-price decision of a price book, without the shared rules (fairness gap,
   inventory, budget), which bind both models alike. The two price choices are then valued with ONE
   yardstick that neither model chose its prices by:

   * **simulator truth** when the data is simulated (``<data>/_truth``): the true acceptance
     probability of the market at each chosen price (no sampling noise from outcomes);
   * otherwise a **model-based direct estimate** (no propensities needed): a blend of both models
     fitted to the realized holdout outcomes, ``P = sigmoid(a + b1 logit p_champion + b2 logit p_challenger)``
     with ``b >= 0`` (stacking). Each model's weight is earned by how well it predicted the outcomes,
     so an over-confident model cannot make its own prices look good (a plain mean of the two models
     would let the more optimistic one dominate). It is still an estimate made from the models under
     review: the report says so, gives the weights, and shows the 2 x 2 table of each policy valued by
     each model.

   The profit difference is paired per request; its standard error gives a one-sided lower bound on
   the relative gain (``promotion.confidence_z``).

Decision (:func:`decide`): REJECT when the challenger's log loss is worse by more than
``max_log_loss_increase``, its ECE worse by more than ``max_ece_increase``, or its expected profit lower
by more than ``max_profit_drop`` (share of the champion's) with confidence (the upper bound of the gain,
``confidence_z`` paired standard errors, lies below it: a difference within the noise of the request
sample is not "lower"); else AUTO_APPROVE when auto-approval is enabled and the gain is clear: either
the lower bound of the profit gain reaches ``auto_approve_gain`` with a log loss that is not worse, or
the log loss is better by at least ``auto_approve_log_loss_gain`` (and by ``confidence_z`` standard
errors) with an expected profit at most ``auto_approve_max_profit_drop`` lower (after a market shift a
retrained model predicts much better while the profit of its prices moves little: profit is flat near
its optimum); else NEEDS_APPROVAL (a human decides in the Prefect UI).

Registry (MLflow 3 aliases, no stages): :func:`promote` moves ``champion`` to the approved version and
gives the replaced champion ``previous-champion``; :func:`rollback` swaps the two back. Every decision is
written as tags on the model version (``promotion.decision``, ``.reviewer``, ``.comment``,
``.decided_at``, ``.metrics``, ...). MLflow is imported lazily; no Prefect here.
"""

from __future__ import annotations

import getpass
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import expit

from pricing.config import Config, PromotionConfig
from pricing.tracking import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION

__all__ = [
    "AUTOMATIC_REVIEWER",
    "Contender",
    "ProfitComparison",
    "PromotionDecision",
    "PromotionError",
    "PromotionReview",
    "ReviewDeferred",
    "compare_profit",
    "current_reviewer",
    "decide",
    "fit_blend",
    "fitted_until",
    "holdout_offers",
    "promote",
    "record_decision",
    "review",
    "review_pair",
    "rollback",
    "version_tags",
]

Verdict = Literal["reject", "needs_approval", "auto_approve"]
REJECT: Verdict = "reject"
NEEDS_APPROVAL: Verdict = "needs_approval"
AUTO_APPROVE: Verdict = "auto_approve"

#: who decided when the rules did
AUTOMATIC_REVIEWER = "automatic (promotion rules)"
#: prefix of the decision tags written on a model version
TAG = "promotion."
ROLLBACK_TAG = "rollback."
#: MLflow limits a model-version tag value to 5,000 characters; keep well inside it
_MAX_TAG_CHARS = 4_000
#: probabilities are clipped to [_EPS, 1 - _EPS] for the per-row log loss
_EPS = 1e-12
#: and to [_BLEND_EPS, 1 - _BLEND_EPS] before taking log-odds for the model-based yardstick
_BLEND_EPS = 1e-6


class PromotionError(ValueError):
    """An alias move that must not happen (nothing to promote, stale review, no previous champion)."""


class ReviewDeferred(ValueError):
    """Too few offers after the models' training data for a fair comparison yet: review later."""


# --------------------------------------------------------------------------------------------------
# the comparison
# --------------------------------------------------------------------------------------------------


@dataclass
class Contender:
    """One side of the review: a registered version with its model and feature builder."""

    role: Literal["champion", "challenger"]
    version: str
    model: Any  # pricing.model.AcceptanceModel
    builder: Any  # pricing.features.FeatureBuilder


@dataclass
class ProfitComparison:
    """Expected profit of each model's price choices on the same requests, under one yardstick."""

    yardstick: Literal["truth", "models"]
    yardstick_note: str
    n_requests: int
    profit_per_offer: dict[str, float]  # role -> mean expected profit per request
    diff_mean: float  # challenger - champion, per request
    diff_se: float  # paired standard error of diff_mean
    table: pd.DataFrame  # one row per policy (champion, challenger[, clairvoyant])
    cross: pd.DataFrame  # policy x valued-by (each model, truth when known): profit per offer
    price_rel: dict[str, np.ndarray]  # role -> chosen price / list price (for the plot)

    def gain(self) -> float:
        """Relative profit gain of the challenger over the champion (nan when the champion earns <= 0)."""
        base = self.profit_per_offer["champion"]
        return self.diff_mean / base if base > 0 else float("nan")

    def gain_lower_bound(self, z: float) -> float:
        base = self.profit_per_offer["champion"]
        return (self.diff_mean - z * self.diff_se) / base if base > 0 else float("nan")

    def gain_upper_bound(self, z: float) -> float:
        base = self.profit_per_offer["champion"]
        return (self.diff_mean + z * self.diff_se) / base if base > 0 else float("nan")


@dataclass
class PromotionDecision:
    verdict: Verdict
    reasons: list[str]
    metrics: dict[str, float]  # flat: the numbers the rules looked at

    @property
    def rejected(self) -> bool:
        return self.verdict == REJECT


@dataclass
class PromotionReview:
    """Everything the review report shows; :meth:`to_markdown` renders it."""

    model_name: str
    champion_version: str
    challenger_version: str
    holdout: dict[str, Any]  # n, start, end, base_rate
    metrics: pd.DataFrame  # metric, champion, challenger, difference
    calibration: dict[str, pd.DataFrame]  # role -> reliability table on the holdout
    profit: ProfitComparison
    decision: PromotionDecision
    notes: list[str] = field(default_factory=list)
    config: PromotionConfig = field(default_factory=PromotionConfig)

    def flat_metrics(self) -> dict[str, float]:
        """Finite numbers for MLflow metrics and the version tags."""
        out: dict[str, float] = {}
        for r in self.metrics.itertuples():
            for role in ("champion", "challenger"):
                v = float(getattr(r, role))
                if math.isfinite(v):
                    out[f"{role}_{r.metric}"] = v
        out.update({k: v for k, v in self.decision.metrics.items() if math.isfinite(v)})
        out["holdout_offers"] = float(self.holdout["n"])
        out["profit_requests"] = float(self.profit.n_requests)
        return out

    def to_markdown(self, review_run_id: str | None = None, plot: str | None = None) -> str:
        d = self.decision
        verdict = {REJECT: "**rejected** (automatic)", NEEDS_APPROVAL: "**waits for approval**",
                   AUTO_APPROVE: "**approved automatically** (clear gain)"}[d.verdict]
        h = self.holdout
        lines = [
            (f"# Promotion review: `{self.model_name}` v{self.challenger_version} (challenger) vs "
            f"v{self.champion_version} (champion)"),
            "",
            f"Verdict: {verdict}",
            "",
            *[f"- {r}" for r in d.reasons],
            "",
            (f"Holdout: the latest {h['n']:,} offers of the snapshot ({h['start']} to {h['end']}, "
            f"acceptance rate {h['base_rate']:.3f}); each model builds their features with its own "
            "feature builder."),
            "",
            "## Prediction quality on the holdout",
            "",
            "| metric | champion | challenger | challenger - champion |",
            "|---|---:|---:|---:|",
        ]
        for r in self.metrics.itertuples():
            lines.append(f"| {r.metric} | {_fmt(r.champion)} | {_fmt(r.challenger)} | {_fmt(r.difference, sign=True)} |")
        p = self.profit
        lines += [
            "",
            "## Expected profit of each model's prices",
            "",
            p.yardstick_note,
            "",
            "| policy | expected profit per offer | acceptance | price / list |"
            + (" share of clairvoyant |" if "share_of_clairvoyant" in p.table else ""),
            "|---|---:|---:|---:|" + ("---:|" if "share_of_clairvoyant" in p.table else ""),
        ]
        for r in p.table.itertuples():
            row = f"| {r.policy} | {r.profit_per_offer:.4f} | {r.acceptance:.4f} | {r.price_rel:.3f} |"
            if "share_of_clairvoyant" in p.table:
                row += f" {r.share_of_clairvoyant:.3f} |"
            lines.append(row)
        cfg = self.config
        lines += [
            "",
            (f"Challenger - champion: {p.diff_mean:+.4f} per offer (standard error {p.diff_se:.4f}, "
            f"{p.n_requests:,} requests); relative gain {_fmt(p.gain(), sign=True, pct=True)}, one-sided "
            f"lower bound (z = {cfg.confidence_z}) {_fmt(p.gain_lower_bound(cfg.confidence_z), sign=True, pct=True)}."),
            "",
            "Each policy valued by each model (profit per offer; how much a model believes in its own prices):",
            "",
            "| policy \\ valued by | " + " | ".join(p.cross.columns) + " |",
            "|---|" + "---:|" * len(p.cross.columns),
        ]
        for idx, row in p.cross.iterrows():
            lines.append(f"| {idx} | " + " | ".join(f"{v:.4f}" for v in row.to_numpy()) + " |")
        lines += [
            "",
            "## Rules",
            "",
            (f"- reject when log loss is worse by more than {cfg.max_log_loss_increase}, ECE worse by more than "
            f"{cfg.max_ece_increase}, or expected profit lower by more than {cfg.max_profit_drop:.1%}"),
            (f"- approve automatically (when enabled) when log loss is not worse and the lower bound of the "
            f"profit gain is at least {cfg.auto_approve_gain:.1%}; otherwise a human decides"),
        ]
        if self.notes:
            lines += ["", "## Notes", "", *[f"- {n}" for n in self.notes]]
        if plot or review_run_id:
            lines += ["", "## Plots", ""]
            if plot:
                lines.append(f"Reliability on the holdout and the chosen prices: `{plot}` in MLflow run `{review_run_id}`.")
        return "\n".join(lines)


def _fmt(v: float, sign: bool = False, pct: bool = False) -> str:
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    if pct:
        return f"{v:+.2%}" if sign else f"{v:.2%}"
    return f"{v:+.4f}" if sign else f"{v:.4f}"


def holdout_offers(offers: pd.DataFrame, n: int, test_share: float, after: Any = None) -> pd.DataFrame:
    """The latest ``min(n, floor(test_share * len(offers)))`` offers by time (at least one); with
    ``after`` (a timestamp), only those strictly later than it (possibly none).

    Raises :class:`ValueError` when there are no offers to compare on.
    """
    if offers is None or len(offers) == 0:
        raise ValueError(
            "the snapshot has no offers: a promotion review compares the models on the latest offers and their "
            "outcomes; ingest data with an offers log first"
        )
    k = max(1, min(int(n), math.floor(test_share * len(offers))))
    out = offers.sort_values("offer_time", kind="mergesort").tail(k)
    if after is not None:
        out = out[pd.to_datetime(out["offer_time"], utc=True) > pd.Timestamp(after)]
    return out.reset_index(drop=True)


def fitted_until(*contenders: Contender) -> pd.Timestamp | None:
    """The latest training-data time of the contenders (UTC), None when no model records it."""
    from pricing.model import fitted_until_utc

    times = [t for t in (fitted_until_utc(c.model) for c in contenders) if t is not None]
    return max(times) if times else None


def _holdout_scores(tables: dict[str, pd.DataFrame], holdout: pd.DataFrame, c: Contender) -> tuple[np.ndarray, np.ndarray]:
    from pricing.features import offer_training_frame

    X, y, _t, _ids = offer_training_frame(c.builder, tables, holdout)  # features see the whole offers log
    return y.astype(np.float64), np.asarray(c.model.predict_proba(X), dtype=np.float64)


def _row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return -(y * np.log(q) + (1 - y) * np.log(1 - q))


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), _BLEND_EPS, 1 - _BLEND_EPS)
    return np.log(q / (1 - q))


def fit_blend(y: np.ndarray, z: np.ndarray, l2: float = 1e-4) -> tuple[float, np.ndarray]:
    """Logistic stacking ``P = sigmoid(a + z @ b)`` with ``b >= 0``, by maximum likelihood.

    ``z``: ``[n, k]`` log-odds of k models on the same rows with outcomes ``y``. A tiny ridge ``l2`` on
    ``b`` keeps collinear inputs stable. Returns ``(a, b)``.
    """
    from scipy.optimize import minimize

    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    n, k = z.shape

    def nll(w: np.ndarray) -> tuple[float, np.ndarray]:
        eta = w[0] + z @ w[1:]
        loss = float(np.sum(np.logaddexp(0.0, eta) - y * eta)) / n + l2 * float(w[1:] @ w[1:])
        r = (expit(eta) - y) / n
        grad = np.concatenate([[r.sum()], z.T @ r + 2 * l2 * w[1:]])
        return loss, grad

    w0 = np.concatenate([[0.0], np.full(k, 1.0 / k)])
    res = minimize(nll, w0, jac=True, method="L-BFGS-B", bounds=[(None, None)] + [(0.0, None)] * k)
    return float(res.x[0]), np.asarray(res.x[1:])


def _policy_prices(model: Any, builder: Any, ctx: pd.DataFrame, candidates: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Per request, the candidate price with the highest expected profit under ``model``."""
    from pricing.scoring import score_prices

    acc = score_prices(model, builder, ctx, candidates)
    profit = np.where(np.isfinite(candidates), acc * (candidates - cost[:, None]), -np.inf)
    j = np.argmax(profit, axis=1)
    return candidates[np.arange(len(j)), j]


def _value(model: Any, builder: Any, ctx: pd.DataFrame, price: np.ndarray) -> np.ndarray:
    from pricing.scoring import score_prices

    return score_prices(model, builder, ctx, price[:, None])[:, 0]


def compare_profit(
    tables: dict[str, pd.DataFrame],
    holdout: pd.DataFrame,
    champion: Contender,
    challenger: Contender,
    config: Config,
    truth_dir: Any = None,
    holdout_scores: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> ProfitComparison:
    """Each model's price choice on a sample of the holdout's requests, valued by one yardstick.

    See the module docstring. ``truth_dir``: the simulator's ``_truth`` folder, when known;
    ``holdout_scores``: role -> (outcomes, predicted acceptance) on ``holdout`` (computed when None; used
    to fit the model-based yardstick).
    """
    from pricing.features import context_features
    from pricing.ladder import build_ladder
    from pricing.pricebook import catalog

    cfg = config.promotion
    rng = np.random.default_rng(cfg.seed)
    take = np.sort(rng.choice(len(holdout), size=min(cfg.profit_requests, len(holdout)), replace=False))
    sample = holdout.iloc[take].reset_index(drop=True)
    requests = pd.DataFrame(
        {"customer_id": sample["customer_id"].astype(str), "bundle_id": sample["bundle_id"].astype(str),
         "time": sample["offer_time"]}
    )
    cat = catalog(tables)
    ladder = build_ladder(cat.list_sum, cat.cost_sum, config.optimize, bundle_ids=cat.bundle_ids)
    bi = pd.Index(cat.bundle_ids).get_indexer(requests["bundle_id"])
    if (bi < 0).any():
        missing = requests.loc[bi < 0, "bundle_id"].unique()[:5].tolist()
        raise ValueError(f"holdout offers name bundles missing from the catalog: {missing}")
    candidates = np.where(ladder.allowed[bi], ladder.prices[bi], np.nan)
    cost, list_sum = cat.cost_sum[bi], cat.list_sum[bi]

    sides = {"champion": champion, "challenger": challenger}
    ctx = {role: context_features(c.builder, tables, requests) for role, c in sides.items()}
    price = {role: _policy_prices(c.model, c.builder, ctx[role], candidates, cost) for role, c in sides.items()}
    # acceptance of each policy's prices under each model: valued[valuer][policy]
    valued = {v: {pol: _value(sides[v].model, sides[v].builder, ctx[v], price[pol]) for pol in sides} for v in sides}
    truth: dict[str, np.ndarray] | None = None
    clair: tuple[np.ndarray, np.ndarray] | None = None
    if truth_dir is not None:
        from pricing.simulator import (
            bundle_index,
            clairvoyant_prices,
            customer_index,
            load_market,
            true_accept_prob,
        )

        market = load_market(truth_dir)
        ci = customer_index(market, requests["customer_id"].to_numpy())
        mbi = bundle_index(market, requests["bundle_id"].to_numpy())
        truth = {pol: true_accept_prob(market, ci, mbi, price[pol], requests["time"]) for pol in sides}
        clair = clairvoyant_prices(market, ci, mbi, requests["time"])

    if truth is not None:
        acc = truth
        yardstick: Literal["truth", "models"] = "truth"
        note = (
            "Yardstick: the simulator's **true** acceptance probability at each chosen price (this data is "
            "simulated), so neither model judges its own prices."
        )
    else:
        if holdout_scores is None:
            holdout_scores = {role: _holdout_scores(tables, holdout, c) for role, c in sides.items()}
        y = holdout_scores["champion"][0]
        a, b = fit_blend(y, np.column_stack([_logit(holdout_scores[r][1]) for r in sides]))
        acc = {
            pol: expit(a + b[0] * _logit(valued["champion"][pol]) + b[1] * _logit(valued["challenger"][pol]))
            for pol in sides
        }
        yardstick = "models"
        note = (
            "Yardstick: **model-based direct estimate** (no simulator truth for this data; no propensities "
            "needed): each chosen price is valued by a blend of both models fitted to the realized holdout "
            f"outcomes, sigmoid({a:.3f} + {b[0]:.3f} logit p_champion + {b[1]:.3f} logit p_challenger). "
            "A model's weight is earned by its predictions, but the yardstick is still built from the models "
            "under review; read it with the 2 x 2 table below."
        )
    prof = {pol: acc[pol] * (price[pol] - cost) for pol in sides}
    diff = prof["challenger"] - prof["champion"]
    n = len(diff)
    rows = [
        {"policy": f"{pol} v{sides[pol].version}", "profit_per_offer": float(prof[pol].mean()),
         "acceptance": float(acc[pol].mean()), "price_rel": float(np.mean(price[pol] / list_sum))}
        for pol in sides
    ]
    price_rel = {pol: price[pol] / list_sum for pol in sides}
    if clair is not None:
        c_price, c_profit = clair
        rows.append({"policy": "clairvoyant (knows the truth)", "profit_per_offer": float(c_profit.mean()),
                     "acceptance": float(np.mean(c_profit / np.maximum(c_price - cost, 1e-12))),
                     "price_rel": float(np.mean(c_price / list_sum))})
        price_rel["clairvoyant"] = c_price / list_sum
    table = pd.DataFrame(rows)
    if clair is not None:
        table["share_of_clairvoyant"] = table["profit_per_offer"] / float(clair[1].mean())
    cross = pd.DataFrame(
        {f"{v} v{sides[v].version}": [float((valued[v][pol] * (price[pol] - cost)).mean()) for pol in sides]
         for v in sides},
        index=[f"{pol} v{sides[pol].version} prices" for pol in sides],
    )
    if truth is not None:
        cross["truth"] = [float(prof[pol].mean()) for pol in sides]
    return ProfitComparison(
        yardstick=yardstick,
        yardstick_note=note,
        n_requests=n,
        profit_per_offer={pol: float(prof[pol].mean()) for pol in sides},
        diff_mean=float(diff.mean()),
        diff_se=float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else float("inf"),
        table=table,
        cross=cross,
        price_rel=price_rel,
    )


def decide(metrics: pd.DataFrame, profit: ProfitComparison, cfg: PromotionConfig, auto_approve: bool,
           log_loss_diff_se: float = float("nan")) -> PromotionDecision:
    """The verdict from the holdout metrics and the profit comparison (see the module docstring).

    ``log_loss_diff_se``: standard error of the paired per-offer log-loss difference (its evidence).
    """
    m = metrics.set_index("metric")
    d_ll = float(m.loc["log_loss", "difference"])
    d_ece = float(m.loc["ece", "difference"])
    z = cfg.confidence_z
    gain = profit.gain()
    gain_lo, gain_hi = profit.gain_lower_bound(z), profit.gain_upper_bound(z)
    numbers = {
        "log_loss_diff": d_ll,
        "log_loss_diff_se": log_loss_diff_se,
        "ece_diff": d_ece,
        "profit_diff_per_offer": profit.diff_mean,
        "profit_diff_se": profit.diff_se,
        "profit_gain": gain,
        "profit_gain_lower_bound": gain_lo,
        "profit_gain_upper_bound": gain_hi,
    }
    reasons: list[str] = []
    if d_ll > cfg.max_log_loss_increase:
        reasons.append(f"log loss is worse by {d_ll:.4f} (tolerance {cfg.max_log_loss_increase})")
    if d_ece > cfg.max_ece_increase:
        reasons.append(f"calibration error (ECE) is worse by {d_ece:.4f} (tolerance {cfg.max_ece_increase})")
    lower = (gain_hi < -cfg.max_profit_drop) if math.isfinite(gain_hi) else (profit.diff_mean < 0)
    if lower:
        reasons.append(
            f"expected profit is lower: {profit.diff_mean:+.4f} per offer ({_fmt(gain, sign=True, pct=True)}, upper "
            f"bound {_fmt(gain_hi, sign=True, pct=True)}; tolerance {cfg.max_profit_drop:.1%}; yardstick: "
            f"{profit.yardstick})"
        )
    if reasons:
        return PromotionDecision(REJECT, reasons, numbers)
    summary = (
        f"log loss {d_ll:+.4f}, ECE {d_ece:+.4f}, expected profit {_fmt(gain, sign=True, pct=True)} "
        f"(bounds {_fmt(gain_lo, sign=True, pct=True)} .. {_fmt(gain_hi, sign=True, pct=True)}; yardstick: "
        f"{profit.yardstick})"
    )
    profit_clear = d_ll <= 0 and math.isfinite(gain_lo) and gain_lo >= cfg.auto_approve_gain
    ll_clear = (
        -d_ll >= cfg.auto_approve_log_loss_gain
        and math.isfinite(log_loss_diff_se) and d_ll + z * log_loss_diff_se < 0
        and math.isfinite(gain) and gain >= -cfg.auto_approve_max_profit_drop
    )
    clear = profit_clear or ll_clear
    what = (f"the profit gain is clear (lower bound {_fmt(gain_lo, sign=True, pct=True)})" if profit_clear else
            f"the predictions are clearly better (log loss {d_ll:+.4f} +- {z * log_loss_diff_se:.4f}) and the "
            f"expected profit is within {cfg.auto_approve_max_profit_drop:.1%}")
    if clear and auto_approve:
        return PromotionDecision(AUTO_APPROVE, [f"not worse on any rule and {what}: {summary}"], numbers)
    why = (
        f"{what}, but auto-approval is off"
        if clear
        else "the gain is not clear enough to approve automatically (needs a profit gain with a lower bound of at "
        f"least {cfg.auto_approve_gain:.1%} and a log loss that is not worse, or a log loss better by at least "
        f"{cfg.auto_approve_log_loss_gain} with confidence and the profit within {cfg.auto_approve_max_profit_drop:.1%})"
    )
    return PromotionDecision(NEEDS_APPROVAL, [f"not worse on any rule: {summary}", f"{why}: a human decides"], numbers)


def review(
    tables: dict[str, pd.DataFrame],
    champion: Contender,
    challenger: Contender,
    config: Config,
    model_name: str,
    truth_dir: Any = None,
    auto_approve: bool | None = None,
) -> PromotionReview:
    """Compare ``challenger`` with ``champion`` on the snapshot's latest offers and decide."""
    from pricing.model import calibration_table, evaluate

    cfg = config.promotion
    if champion.version == challenger.version:
        raise PromotionError(
            f"challenger and champion are the same version ({champion.version}) of '{model_name}': nothing to review"
        )
    seen_until = fitted_until(champion, challenger)
    holdout = holdout_offers(tables.get("offers"), cfg.holdout_offers, config.model.test_share, after=seen_until)
    if len(holdout) < cfg.min_holdout_offers:
        raise ReviewDeferred(
            f"only {len(holdout):,} offers of the snapshot come after the models' training data (up to {seen_until}); "
            f"a fair review needs promotion.min_holdout_offers = {cfg.min_holdout_offers:,}: review v{challenger.version} "
            "again on a snapshot with newer offers (after the next period)"
        )
    bins = config.model.calibration_bins
    scores = {c.role: _holdout_scores(tables, holdout, c) for c in (champion, challenger)}
    y = scores["champion"][0]
    ev = {role: evaluate(yy, p, bins) for role, (yy, p) in scores.items()}
    keys = ("log_loss", "auc", "brier", "ece")
    metrics = pd.DataFrame(
        {
            "metric": [*keys, "mean_predicted"],
            "champion": [ev["champion"][k] for k in keys] + [float(scores["champion"][1].mean())],
            "challenger": [ev["challenger"][k] for k in keys] + [float(scores["challenger"][1].mean())],
        }
    )
    metrics["difference"] = metrics["challenger"] - metrics["champion"]
    ll_rows = _row_log_loss(y, scores["challenger"][1]) - _row_log_loss(y, scores["champion"][1])
    notes: list[str] = []
    start, end = holdout["offer_time"].min(), holdout["offer_time"].max()
    for c in (champion, challenger):
        cut = getattr(c.builder, "cutoff", None)
        if cut is not None and pd.Timestamp(cut) > pd.Timestamp(start):
            notes.append(
                f"{c.role} v{c.version} was fitted on offers up to {cut}, after the holdout starts ({start}): "
                "its holdout metrics are optimistic. Review on a newer snapshot."
            )
    profit = compare_profit(tables, holdout, champion, challenger, config, truth_dir, scores)
    ll_se = float(ll_rows.std(ddof=1) / math.sqrt(len(ll_rows))) if len(ll_rows) > 1 else float("nan")
    decision = decide(metrics, profit, cfg, cfg.auto_approve if auto_approve is None else auto_approve, ll_se)
    if profit.yardstick == "models":
        notes.append("no simulator truth for this data: the profit comparison is a model-based estimate")
    return PromotionReview(
        model_name=model_name,
        champion_version=champion.version,
        challenger_version=challenger.version,
        holdout={"n": len(holdout), "start": str(start), "end": str(end), "base_rate": float(y.mean())},
        metrics=metrics,
        calibration={role: calibration_table(yy, p, bins) for role, (yy, p) in scores.items()},
        profit=profit,
        decision=decision,
        notes=notes,
        config=cfg,
    )


# --------------------------------------------------------------------------------------------------
# the registry: aliases and decision tags (MLflow, imported lazily)
# --------------------------------------------------------------------------------------------------


def current_reviewer() -> str:
    """The person running a command (for the decision tags)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (containers): fall back to the environment
        return os.environ.get("USER") or "unknown"


def _now() -> str:
    return pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def _aliases(name: str) -> dict[str, str]:
    from pricing.tracking import alias_map

    return alias_map(name)


def _metrics_tag(metrics: dict[str, float] | None) -> str:
    if not metrics:
        return ""
    clean = {k: round(float(v), 6) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(float(v))}
    text = json.dumps(clean, sort_keys=True)
    return text if len(text) <= _MAX_TAG_CHARS else text[: _MAX_TAG_CHARS - 3] + "..."


def _set_tags(name: str, version: str, tags: dict[str, str]) -> None:
    client = _client()
    for k, v in tags.items():
        client.set_model_version_tag(name, str(version), k, str(v)[:_MAX_TAG_CHARS])


def version_tags(name: str, version: str) -> dict[str, str]:
    """All tags of a registered model version."""
    return dict(_client().get_model_version(name, str(version)).tags or {})


def record_decision(
    name: str,
    version: str,
    decision: str,
    reviewer: str,
    comment: str = "",
    metrics: dict[str, float] | None = None,
    review_run_id: str | None = None,
    against: str | None = None,
) -> dict[str, str]:
    """Write a review decision as tags on ``version`` (no alias moves). Returns the tags written."""
    tags = {
        f"{TAG}decision": decision,
        f"{TAG}reviewer": reviewer,
        f"{TAG}comment": comment or "",
        f"{TAG}decided_at": _now(),
        f"{TAG}metrics": _metrics_tag(metrics),
    }
    if review_run_id:
        tags[f"{TAG}review_run_id"] = review_run_id
    if against:
        tags[f"{TAG}compared_with"] = str(against)
    _set_tags(name, version, tags)
    return tags


def promote(
    name: str,
    version: str,
    reviewer: str,
    comment: str = "",
    metrics: dict[str, float] | None = None,
    review_run_id: str | None = None,
    expected_champion: str | None = None,
    decision: str = "approved",
) -> dict[str, str | None]:
    """Make ``version`` the ``champion``; the replaced champion gets ``previous-champion``.

    ``expected_champion``: the champion the review compared against; when the champion moved since,
    nothing changes and :class:`PromotionError` says so (a stale review must not promote).
    Returns ``{"champion": version, "previous_champion": old or None}``.
    """
    version = str(version)
    client = _client()
    try:
        client.get_model_version(name, version)
    except Exception as exc:
        raise PromotionError(f"'{name}' has no version {version} to promote") from exc
    aliases = _aliases(name)
    old = aliases.get(CHAMPION)
    if old == version:
        raise PromotionError(f"version {version} of '{name}' is already the champion: nothing to promote")
    if expected_champion is not None and old != str(expected_champion):
        raise PromotionError(
            f"the champion of '{name}' moved from version {expected_champion} to {old} since the review: "
            "run the review again; no alias changed"
        )
    if old is not None:  # first the fallback, then the move: a crash in between leaves the champion as is
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, old)
    client.set_registered_model_alias(name, CHAMPION, version)
    record_decision(name, version, decision, reviewer, comment, metrics, review_run_id, against=old)
    _set_tags(name, version, {f"{TAG}promoted_at": _now(), f"{TAG}previous_champion": old or ""})
    if old is not None:
        _set_tags(name, old, {f"{TAG}replaced_by": version, f"{TAG}replaced_at": _now()})
    return {"champion": version, "previous_champion": old}


def rollback(name: str, reviewer: str, comment: str = "") -> dict[str, str]:
    """Swap ``champion`` and ``previous-champion`` back; tags both versions. Raises when there is none."""
    aliases = _aliases(name)
    if not aliases:
        raise PromotionError(f"no registered model '{name}': nothing to roll back")
    prev, cur = aliases.get(PREVIOUS_CHAMPION), aliases.get(CHAMPION)
    if prev is None:
        raise PromotionError(
            f"'{name}' has no '{PREVIOUS_CHAMPION}' alias (champion is version {cur}): nothing to roll back to; "
            "a previous champion exists only after a promotion"
        )
    if prev == cur:
        raise PromotionError(f"'{PREVIOUS_CHAMPION}' and '{CHAMPION}' are the same version ({cur}) of '{name}'")
    client = _client()
    client.set_registered_model_alias(name, CHAMPION, prev)
    if cur is not None:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, cur)
    at = _now()
    common = {f"{ROLLBACK_TAG}at": at, f"{ROLLBACK_TAG}reviewer": reviewer, f"{ROLLBACK_TAG}comment": comment or ""}
    _set_tags(name, prev, {**common, f"{ROLLBACK_TAG}restored_from": cur or ""})
    if cur is not None:
        _set_tags(name, cur, {**common, f"{ROLLBACK_TAG}rolled_back_to": prev, f"{TAG}decision": "rolled back"})
    return {"champion": prev, "previous_champion": cur or ""}


def review_pair(name: str, challenger_version: str | None = None, champion_version: str | None = None) -> tuple[str, str]:
    """(champion, challenger) versions to review: the given ones, else the aliases.

    Raises :class:`PromotionError` with a clear message when a side is missing or both are the same.
    """
    aliases = _aliases(name)
    if not aliases and not (challenger_version and champion_version):
        raise PromotionError(f"no registered model '{name}' (or it has no aliases): train a model first")
    champ = str(champion_version) if champion_version else aliases.get(CHAMPION)
    chal = str(challenger_version) if challenger_version else aliases.get(CHALLENGER)
    if champ is None:
        raise PromotionError(f"'{name}' has no '{CHAMPION}' alias: nothing to compare against")
    if chal is None:
        raise PromotionError(f"'{name}' has no '{CHALLENGER}' alias: train a new model first")
    if champ == chal:
        raise PromotionError(
            f"nothing to review: the challenger of '{name}' is the champion (version {champ}); "
            "train a new model to get a challenger"
        )
    return champ, chal
