"""Feedback on a played price book: realized vs predicted, lift over control, drift, and the retraining trigger.

Inputs: the published price book (with its experiment groups, :mod:`pricing.experiment`), the realized
tables of the period that followed it (``offers`` with ``accepted``; ``orders``; optionally ``events`` and
``competitor_prices``), the acceptance model with its feature builder, and the snapshot tables before
the period. Pure: no Prefect, no MLflow (the feedback flow logs the :class:`FeedbackReport`).

What is computed (:func:`compute_feedback`)
------------------------------------------
* **Predictions**: every realized offer is scored by the model with its point-in-time features (the
  snapshot plus the period's own earlier rows, :func:`offer_features`) at the price it was shown.
* **Calibration**: realized vs predicted conversion overall, per segment and per bundle; standard error
  the larger of the binomial one under the model, ``sqrt(sum p (1 - p)) / n``, and the cluster-robust one
  by customer (:func:`mean_se`: a customer's offers share the model's error about that customer); a
  reliability table.
* **Profit**: realized profit ``sum accepted * (price - cost)`` vs expected ``sum p * (price - cost)``,
  overall and per experiment group.
* **Lift** of treatment over control, in profit per offer and in conversion: difference of the group
  means with a **Welch normal-approximation** interval, ``diff +- z * sqrt(s_t^2 / n_t + s_c^2 / n_c)``
  (unequal variances, large-sample normal quantile ``z`` for ``feedback.ci_level``), and the relative
  lift ``diff / mean_c`` with a delta-method interval. Offers are shown independently of price (the
  traffic does not depend on the group), so the comparison is a randomized one.
* **Drift**: population stability index per feature between the *reference window* (the latest
  ``model.test_share`` of the snapshot's offers, at most ``feedback.reference_offers``: the model's
  out-of-sample test window) and the period's offers, ``PSI = sum_b (a_b - e_b) ln(a_b / e_b)`` over
  ``feedback.psi_bins`` reference-quantile bins (one bin for missing values; categoricals: one bin per
  level) with Jeffreys smoothing ``(count + 0.5) / (n + 0.5 k)``. Our own prices, the calendar and
  counts since the data began move by design and are left out (``feedback.drift_exclude``). Each
  feature's **natural PSI** -- the largest PSI against the reference of the ``psi_natural_windows``
  earlier windows of as many offers -- says how far it moved on its own in the recent history:
  market-level series (competitor prices, demand in a few categories) of a shop with few bundles and
  categories move a lot on a stable market (tiny market: PSI up to ~1 between windows a few weeks apart;
  a single earlier window is too noisy a yardstick for such series, hence the largest of several).
* **Performance**: AUC and log loss (scikit-learn) on the period and on the reference window, each next to
  what the model *itself expects* on the same rows if it were right: ``E[log loss] = mean H(p)``
  (binary entropy) and ``E[AUC]`` from the predictions (:func:`expected_auc`). The price mix and base
  rate of a period differ by design from the randomized history and move both raw numbers (so they are
  not compared with the training-time test metrics directly, which the report shows for reference); the
  departure from the model's own expectation does not. AUC drop = the period's shortfall below its
  expected AUC minus the reference window's (one-sided). Log-loss gap = the period's ``log loss - E[log
  loss]`` minus the reference window's, one-sided (a loss of performance): ``log loss - E[log loss] =
  mean((p - y) logit p)`` also falls when the probabilities are off in some ways (an over-predicting
  model shows a *lower* log loss than it expects on a market where acceptance fell), but those are the
  calibration checks' to catch; a model that merely predicts better than it expects is no reason to
  retrain (a model refitted on every offer does so on the tiny market: its period log loss 0.29 where
  it expects 0.34). The reference window is a yardstick only out of sample: when the model was fitted
  on it (``model.refit_on_all``), the split model's test window recorded at training
  (``AcceptanceModel.holdout_performance``) takes its place.
* **Retraining trigger** (:class:`RetrainDecision`): a check fires when its deviation is both material
  (beyond its threshold) and clear of sampling noise (``|z| > feedback.significance_z``): overall and
  per-segment calibration gap (segments with ``min_offers_per_cell`` offers; bundles are reported, not
  judged: too many small cells), drift (a feature whose PSI exceeds ``max_psi`` *and*
  ``psi_natural_factor`` times its natural PSI: the evidence bar of drift is that ratio, not a z score),
  AUC drop and log-loss gap; and the model's age (end of its training data to the end of the period).
  With fewer than ``feedback.min_offers`` offers the data checks give no verdict.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.metrics import log_loss, roc_auc_score

from pricing.config import Config, FeedbackConfig, IngestConfig
from pricing.contract import TABLES, ContractError
from pricing.experiment import CONTROL, TREATMENT
from pricing.pricebook import PriceBook

__all__ = [
    "REALIZED_TABLES",
    "FeedbackDataError",
    "FeedbackReport",
    "RetrainDecision",
    "check_realized",
    "compute_feedback",
    "expected_auc",
    "load_realized",
    "markdown_table",
    "mean_se",
    "merge_period",
    "offer_features",
    "performance",
    "psi",
    "psi_table",
    "welch_diff",
    "write_period_data",
]

#: tables a realized period may hold (offers is required)
REALIZED_TABLES: tuple[str, ...] = ("offers", "orders", "events", "competitor_prices")
_PSI_PRIOR = 0.5  # Jeffreys pseudo-count per bin
_PROB_EPS = 1e-6  # predictions are clipped into [eps, 1 - eps] for log loss and entropy
_EXAMPLES = 5  # offending ids quoted in an error message
_NO_SEGMENT = "none"


class FeedbackDataError(ValueError):
    """The realized data of the period cannot be judged (empty, unknown ids, wrong columns); says why."""


# --------------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------------
def psi(reference: Any, current: Any, bins: int = 10, categorical: bool = False) -> float:
    """Population stability index of ``current`` against ``reference`` (see the module docstring).

    Numeric values are cut at the reference's quantiles (``bins`` equal-mass bins; tied quantiles merge),
    missing values form their own bin; ``categorical`` values get one bin per distinct value.
    0 means the same distribution; 0.1 is commonly read as a moderate, 0.25 as a major shift.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if len(ref) == 0 or len(cur) == 0:
        raise ValueError("psi needs values on both sides")
    if categorical:
        levels = np.unique(np.concatenate([ref[np.isfinite(ref)], cur[np.isfinite(cur)]]))
        r_idx = np.where(np.isfinite(ref), np.searchsorted(levels, ref), len(levels))
        c_idx = np.where(np.isfinite(cur), np.searchsorted(levels, cur), len(levels))
        k = len(levels) + 1
    else:
        finite = ref[np.isfinite(ref)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if len(finite) else np.array([])
        r_idx = np.where(np.isfinite(ref), np.searchsorted(edges, ref, side="right"), len(edges) + 1)
        c_idx = np.where(np.isfinite(cur), np.searchsorted(edges, cur, side="right"), len(edges) + 1)
        k = len(edges) + 2
    r_cnt = np.bincount(r_idx, minlength=k).astype(np.float64)
    c_cnt = np.bincount(c_idx, minlength=k).astype(np.float64)
    used = (r_cnt > 0) | (c_cnt > 0)
    r_cnt, c_cnt = r_cnt[used], c_cnt[used]
    m = len(r_cnt)
    e = (r_cnt + _PSI_PRIOR) / (r_cnt.sum() + _PSI_PRIOR * m)
    a = (c_cnt + _PSI_PRIOR) / (c_cnt.sum() + _PSI_PRIOR * m)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_table(
    X_ref: pd.DataFrame,
    X_new: pd.DataFrame,
    features: list[str],
    bins: int,
    categorical: tuple[str, ...] = (),
    X_prev: list[pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """``feature, psi, natural_psi, ratio, ref_mean, new_mean`` for ``features``, largest PSI first.

    ``natural_psi``: the largest PSI of the earlier windows ``X_prev`` against the reference, i.e. how far
    the feature moved on its own in the recent history (nan without ``X_prev``); ``ratio = psi / natural_psi``.
    """
    nan = float("nan")
    rows = []
    for f in features:
        r = X_ref[f].to_numpy(dtype=np.float64, na_value=np.nan)
        c = X_new[f].to_numpy(dtype=np.float64, na_value=np.nan)
        is_cat = f in categorical
        value = psi(r, c, bins, categorical=is_cat)
        natural = nan
        if X_prev:
            natural = max(psi(r, w[f].to_numpy(dtype=np.float64, na_value=np.nan), bins, categorical=is_cat)
                          for w in X_prev)
        rows.append({
            "feature": f,
            "psi": value,
            "natural_psi": natural,
            "ratio": value / natural if natural > 0 else nan,
            "ref_mean": float(np.nanmean(r)) if np.isfinite(r).any() else nan,
            "new_mean": float(np.nanmean(c)) if np.isfinite(c).any() else nan,
        })
    out = pd.DataFrame(rows, columns=["feature", "psi", "natural_psi", "ratio", "ref_mean", "new_mean"])
    return out.sort_values("psi", ascending=False, kind="mergesort").reset_index(drop=True)


def welch_diff(treated: Any, control: Any, level: float = 0.95) -> dict[str, float]:
    """Difference of means ``treated - control`` with a Welch normal-approximation interval.

    Returns ``mean_t, mean_c, n_t, n_c, diff, se, low, high, rel, rel_low, rel_high`` (``rel`` = diff /
    mean_c with a delta-method interval; nan when the control mean is 0 or a side has < 2 values).
    """
    t = np.asarray(treated, dtype=np.float64)
    c = np.asarray(control, dtype=np.float64)
    nan = float("nan")
    out = {"mean_t": nan, "mean_c": nan, "n_t": float(len(t)), "n_c": float(len(c)), "diff": nan, "se": nan,
           "low": nan, "high": nan, "rel": nan, "rel_low": nan, "rel_high": nan}
    if len(t) < 2 or len(c) < 2:
        return out
    z = float(norm.ppf(0.5 + level / 2))
    mt, mc = float(t.mean()), float(c.mean())
    vt, vc = float(t.var(ddof=1)) / len(t), float(c.var(ddof=1)) / len(c)
    diff, se = mt - mc, math.sqrt(vt + vc)
    out.update({"mean_t": mt, "mean_c": mc, "diff": diff, "se": se, "low": diff - z * se, "high": diff + z * se})
    if mc != 0:
        rel = diff / mc
        se_rel = math.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
        out.update({"rel": rel, "rel_low": rel - z * se_rel, "rel_high": rel + z * se_rel})
    return out


def expected_auc(p: Any) -> float:
    """AUC the model expects on rows with predictions ``p`` if its probabilities were true.

    Ratio estimator ``sum_{i != j} p_i (1 - p_j) 1[p_i > p_j] / sum_{i != j} p_i (1 - p_j)`` (ties count
    one half): the expected number of correctly ordered (positive, negative) pairs over the expected
    number of pairs. O(n log n).
    """
    pp = np.sort(np.asarray(p, dtype=np.float64))
    if len(pp) < 2:
        return float("nan")
    q = 1.0 - pp
    uniq, start, counts = np.unique(pp, return_index=True, return_counts=True)
    q_before = np.concatenate([[0.0], np.cumsum(q)])[start]  # sum of (1 - p_j) over strictly smaller p_j
    q_tie = np.add.reduceat(q, start)
    p_tie = np.add.reduceat(pp, start)
    correct = np.sum(p_tie * q_before) + 0.5 * np.sum(p_tie * q_tie - uniq * (1 - uniq) * counts)
    total = pp.sum() * q.sum() - np.sum(pp * q)
    return float(correct / total) if total > 0 else float("nan")


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def _loss_variance(p: np.ndarray) -> np.ndarray:
    """Variance of one row's log loss if y ~ Bernoulli(p)."""
    return p * (1 - p) * np.log(p / (1 - p)) ** 2


def _auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley-McNeil standard error of an AUC."""
    if not (np.isfinite(auc) and n_pos > 0 and n_neg > 0):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def performance(y: Any, p: Any, customers: Any = None) -> dict[str, float]:
    """AUC and log loss, the model's own expectation of both, and their standard errors (the log loss's
    clustered by customer when ``customers`` is given, see :func:`mean_se`)."""
    y = np.asarray(y, dtype=np.float64)
    pc = np.clip(np.asarray(p, dtype=np.float64), _PROB_EPS, 1 - _PROB_EPS)
    n = len(y)
    if customers is None:
        customers = np.arange(n)
    n_pos = int(y.sum())
    both = 0 < n_pos < n
    auc = float(roc_auc_score(y, pc)) if both else float("nan")
    ll = float(log_loss(y, pc, labels=[0, 1])) if n else float("nan")
    return {
        "n": float(n),
        "auc": auc,
        "expected_auc": expected_auc(pc),
        "auc_se": _auc_se(auc, n_pos, n - n_pos),
        "log_loss": ll,
        "expected_log_loss": float(_entropy(pc).mean()) if n else float("nan"),
        "log_loss_se": mean_se(-(y * np.log(pc) + (1 - y) * np.log1p(-pc)) - _entropy(pc), _loss_variance(pc),
                               customers),
    }


# --------------------------------------------------------------------------------------------------
# realized data: loading and checks
# --------------------------------------------------------------------------------------------------
def load_realized(realized_dir: str | Path, ingest: IngestConfig | None = None) -> dict[str, pd.DataFrame]:
    """Read and type the period's tables from a folder in the contract format (CSV or Parquet).

    Uses the ingestion readers (:func:`pricing.ingest.prepare_table`: required columns, types). ``offers``
    is required; ``orders``, ``events`` and ``competitor_prices`` are optional. Raises
    :class:`FeedbackDataError` naming the table and the problem.
    """
    from pricing.ingest import ROW_ID, prepare_table
    from pricing.io import find_table_file

    d = Path(realized_dir)
    if not d.is_dir():
        raise FeedbackDataError(f"the realized-data folder {d} does not exist")
    cfg = ingest or IngestConfig()
    out: dict[str, pd.DataFrame] = {}
    for table in REALIZED_TABLES:
        if find_table_file(d, table) is None:
            if table == "offers":
                raise FeedbackDataError(
                    f"no offers.csv (or .parquet) in {d}: the period's offers (with accepted 0/1) are needed"
                )
            continue
        try:
            prep = prepare_table(d, table, cfg)
        except ContractError as exc:
            if table == "offers" and exc.rule in ("has rows", "file not empty"):
                raise FeedbackDataError(f"the period has no offers ({exc.message}): nothing to judge") from exc
            raise FeedbackDataError(f"realized data in {d} breaks the data contract: {exc}") from exc
        if prep is None:
            continue
        bad = {c: len(r) for c, r in prep.type_failures.items()}
        if bad:
            raise FeedbackDataError(
                f"{table}: values that do not parse in {', '.join(f'{c} ({n} rows)' for c, n in bad.items())}"
            )
        out[table] = prep.typed.drop(columns=[ROW_ID])
    return out


def _unknown(values: pd.Series, known: pd.Index) -> list[str]:
    v = values.dropna().astype(str)
    return sorted(set(v[~v.isin(known)]))


def check_realized(realized: dict[str, pd.DataFrame], tables: dict[str, pd.DataFrame], book: PriceBook) -> None:
    """Stop with a :class:`FeedbackDataError` when the period's data cannot be judged against ``book``.

    The period must have offers; every offer needs an id, a time, a known customer (snapshot), a bundle
    of the price book, a positive price and ``accepted`` in {0, 1}; offer ids must be new (not in the
    snapshot); offers may not predate the snapshot's latest offer; orders must reference known
    customers, products and bundles.
    """
    offers = realized.get("offers")
    if offers is None or len(offers) == 0:
        raise FeedbackDataError("the period has no offers: nothing to judge (an empty period gives no feedback)")
    required = TABLES["offers"].column_names
    missing = [c for c in required if c not in offers.columns]
    if missing:
        raise FeedbackDataError(f"realized offers lack column(s) {', '.join(missing)}")
    for col in required:
        if offers[col].isna().any():
            raise FeedbackDataError(f"{int(offers[col].isna().sum())} realized offers have no {col}")
    acc = offers["accepted"].to_numpy(dtype=np.float64)
    if not np.isin(acc, (0.0, 1.0)).all():
        raise FeedbackDataError(f"realized offers: accepted must be 0 or 1, found {sorted(set(acc) - {0.0, 1.0})[:5]}")
    if (offers["offered_price"].to_numpy(dtype=np.float64) <= 0).any():
        raise FeedbackDataError("realized offers: offered_price must be > 0")
    dup = offers["offer_id"].astype(str).duplicated()
    if dup.any():
        raise FeedbackDataError(f"realized offers repeat offer ids {offers['offer_id'][dup].astype(str).unique()[:_EXAMPLES].tolist()}")

    customers = pd.Index(tables["customers"]["customer_id"].astype(str).unique())
    bad = _unknown(offers["customer_id"], customers)
    if bad:
        raise FeedbackDataError(
            f"{int(offers['customer_id'].astype(str).isin(bad).sum())} realized offers are for unknown customers "
            f"(not in the snapshot's customers), e.g. {bad[:_EXAMPLES]}"
        )
    book_bundles = pd.Index(book.bundle_prices["bundle_id"].astype(str).unique())
    bad = _unknown(offers["bundle_id"], book_bundles)
    if bad:
        raise FeedbackDataError(
            f"{int(offers['bundle_id'].astype(str).isin(bad).sum())} realized offers are for bundles the price "
            f"book does not price, e.g. {bad[:_EXAMPLES]}"
        )
    old = tables.get("offers")
    if old is not None and len(old):
        seen = offers["offer_id"].astype(str).isin(pd.Index(old["offer_id"].astype(str)))
        if seen.any():
            raise FeedbackDataError(
                f"{int(seen.sum())} realized offers are already in the snapshot (e.g. "
                f"{offers['offer_id'][seen].astype(str).head(_EXAMPLES).tolist()}): give the new period only"
            )
        last = pd.Timestamp(old["offer_time"].max())
        early = pd.to_datetime(offers["offer_time"], utc=True) <= last
        if early.any():
            raise FeedbackDataError(
                f"{int(early.sum())} realized offers are not later than the snapshot's latest offer ({last}): "
                "the realized folder must hold the period after the price book"
            )
    orders = realized.get("orders")
    if orders is not None and len(orders):
        products = pd.Index(tables["products"]["product_id"].astype(str).unique())
        bundles = pd.Index(tables["bundles"]["bundle_id"].astype(str).unique()) if "bundles" in tables else book_bundles
        for col, known, what in (("customer_id", customers, "customers"), ("product_id", products, "products"),
                                 ("bundle_id", bundles, "bundles")):
            bad = _unknown(orders[col], known)
            if bad:
                raise FeedbackDataError(f"realized orders reference unknown {what}, e.g. {bad[:_EXAMPLES]}")


def merge_period(tables: dict[str, pd.DataFrame], realized: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The snapshot tables with the period's rows appended (contract columns; static tables unchanged)."""
    out = dict(tables)
    for name, df in realized.items():
        if name not in TABLES:
            continue
        cols = TABLES[name].column_names
        new = df[[c for c in cols if c in df.columns]]
        if name in tables and len(tables[name]):
            old = tables[name]
            new = new.astype({c: old[c].dtype for c in new.columns if c in old.columns}, errors="ignore")
            out[name] = pd.concat([old, new], ignore_index=True)
        else:
            out[name] = new.reset_index(drop=True)
    return out


def write_period_data(tables: dict[str, pd.DataFrame], realized: dict[str, pd.DataFrame], out_dir: str | Path) -> Path:
    """Write the snapshot tables plus the period (:func:`merge_period`) as contract Parquet files into
    ``out_dir``: the raw data of the next ingestion, e.g. for retraining. Older table files there are
    replaced; anything else (a simulator's ``_truth``) is left alone."""
    from pricing.contract import TABLE_ORDER
    from pricing.io import write_table

    merged = merge_period(tables, {k: v for k, v in realized.items() if k in REALIZED_TABLES})
    out = Path(out_dir)
    for name in TABLE_ORDER:
        for old in (out / f"{name}.csv", out / f"{name}.parquet"):
            old.unlink(missing_ok=True)
    for name in TABLE_ORDER:
        if name in merged:
            df = merged[name]
            write_table(df[[c for c in TABLES[name].column_names if c in df.columns]], out, name, "parquet")
    return out


def offer_features(builder: Any, tables: dict[str, pd.DataFrame], offers: pd.DataFrame) -> pd.DataFrame:
    """Model matrix of ``offers`` at their own times and prices (rows of ``tables`` strictly before each offer)."""
    from pricing.features import assemble, context_features, price_features

    requests = pd.DataFrame(
        {"customer_id": offers["customer_id"].astype(str).to_numpy(), "bundle_id": offers["bundle_id"].astype(str).to_numpy(),
         "time": pd.to_datetime(offers["offer_time"], utc=True).to_numpy()},
    )
    requests["time"] = pd.to_datetime(requests["time"], utc=True)
    ctx = context_features(builder, tables, requests)
    return assemble(ctx, price_features(ctx, offers["offered_price"].to_numpy(dtype=np.float64)), builder)


# --------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------
@dataclass
class RetrainDecision:
    """Whether to retrain, why, and every check behind it (``checks``: one row per check)."""

    fire: bool
    reasons: list[str]
    checks: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class FeedbackReport:
    period: dict[str, Any]
    overall: dict[str, float]
    by_group: pd.DataFrame
    by_segment: pd.DataFrame
    by_bundle: pd.DataFrame
    reliability: pd.DataFrame
    lift: pd.DataFrame
    drift: pd.DataFrame
    performance: dict[str, dict[str, float]]
    decision: RetrainDecision
    model: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Flat numeric metrics (MLflow)."""
        m: dict[str, float] = {f"overall_{k}": float(v) for k, v in self.overall.items()}
        for window, perf in self.performance.items():
            m.update({f"{window}_{k}": float(v) for k, v in perf.items()})
        for r in self.lift.itertuples():
            for k in ("diff", "low", "high", "rel", "rel_low", "rel_high"):
                m[f"lift_{r.metric}_{k}"] = float(getattr(r, k))
        if len(self.drift):
            m["drift_max_psi"] = float(self.drift["psi"].max())
            m["drift_features_over_threshold"] = float(self.period.get("drifting_features", 0))
        m["retrain"] = float(self.decision.fire)
        m["model_age_days"] = float(self.period.get("model_age_days", float("nan")))
        return {k: v for k, v in m.items() if np.isfinite(v)}

    def summary_lines(self) -> list[str]:
        """A one-screen text summary (CLI)."""
        o, p = self.overall, self.period
        lines = [
            (f"period {p['start']} .. {p['end']}: {int(o['offers']):,} offers, {int(o['accepted']):,} accepted "
            f"(model {self.model.get('name', '?')} v{self.model.get('version', '?')}, age {p['model_age_days']:.0f} days)"),
            (f"conversion realized {o['realized_conversion']:.4f} vs predicted {o['predicted_conversion']:.4f} "
            f"(gap {o['calibration_gap']:+.4f}, z {o['calibration_z']:+.1f})"),
            f"profit realized {o['realized_profit']:,.2f} vs expected {o['expected_profit']:,.2f}",
        ]
        for r in self.lift.itertuples():
            lines.append(
                f"lift treatment - control, {r.metric}: {r.diff:+.4f} [{r.low:+.4f}, {r.high:+.4f}] "
                f"({r.rel:+.1%} of control; n {int(r.n_t)} / {int(r.n_c)})"
            )
        if len(self.drift):
            top = ", ".join(f"{f} {v:.3f} ({r:.1f}x natural)"
                            for f, v, r in self.drift.head(3)[["feature", "psi", "ratio"]].itertuples(index=False))
            lines.append(f"drift (PSI, top 3): {top}; {int(self.drift['drifted'].sum())} feature(s) drifted")
        new = self.performance.get("period", {})
        lines.append(
            f"period AUC {new.get('auc', float('nan')):.4f} (model expects {new.get('expected_auc', float('nan')):.4f}), "
            f"log loss {new.get('log_loss', float('nan')):.4f} (expects {new.get('expected_log_loss', float('nan')):.4f})"
        )
        verdict = "RETRAIN" if self.decision.fire else "no retraining needed"
        lines.append(f"trigger: {verdict}" + (": " + "; ".join(self.decision.reasons) if self.decision.reasons else ""))
        lines += [f"note: {n}" for n in self.notes]
        return lines

    def to_markdown(self) -> str:
        """The report as markdown (Prefect artifact, MLflow)."""
        table = markdown_table
        verdict = "**retraining triggered**" if self.decision.fire else "no retraining needed"
        perf = pd.DataFrame(self.performance).T.reset_index(names="window")
        parts = [
            "# Feedback on the price book", "",
            *[f"- {line}" for line in self.summary_lines()], "",
            f"## Trigger: {verdict}", "", table(self.decision.checks), "",
            "## Realized vs predicted by group", "", table(self.by_group), "",
            "## Lift of treatment over control (Welch normal approximation)", "", table(self.lift), "",
            "## Calibration by segment", "", table(self.by_segment), "",
            "## Calibration by bundle (most offered)", "", table(self.by_bundle.head(15)), "",
            "## Drift (population stability index, top features)", "", table(self.drift.head(15)), "",
            "## Model performance (period vs reference window)", "", table(perf), "",
        ]
        return "\n".join(parts)


def markdown_table(df: pd.DataFrame | None, floatfmt: str = ".4f") -> str:
    """A DataFrame as a markdown table (floats formatted with ``floatfmt``); ``_none_`` when empty."""
    if df is None or not len(df):
        return "_none_"
    cols = list(df.columns)
    out = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def mean_se(resid: Any, model_var: Any, cluster: Any) -> float:
    """Standard error of ``mean(resid)``: the larger of the model-based one, ``sqrt(sum model_var) / n``, and
    the cluster-robust (CR1) one with clusters ``cluster`` (a customer's offers share the model's error
    about that customer, so they are not independent draws).
    """
    r = np.asarray(resid, dtype=np.float64)
    n = len(r)
    if n == 0:
        return float("nan")
    model = math.sqrt(float(np.sum(model_var))) / n
    codes, uniq = pd.factorize(np.asarray(cluster))
    k = len(uniq)
    if k < 2:
        return model
    centred = r - r.mean()
    per = np.bincount(codes, weights=centred, minlength=k)
    robust = math.sqrt(float(np.sum(per**2)) * k / (k - 1)) / n
    return max(model, robust)


def _calibration_rows(df: pd.DataFrame, key: str) -> pd.DataFrame:
    g = df.groupby(key, sort=True, observed=True)
    out = pd.DataFrame({
        "offers": g.size(),
        "realized_conversion": g["accepted"].mean(),
        "predicted_conversion": g["p"].mean(),
        "realized_profit": g["profit"].sum(),
        "expected_profit": g["expected_profit"].sum(),
    })
    out["calibration_gap"] = out["realized_conversion"] - out["predicted_conversion"]
    out["se"] = g[["accepted", "p", "customer_id"]].apply(
        lambda d: mean_se(d["accepted"] - d["p"], d["p"] * (1 - d["p"]), d["customer_id"]))
    out["z"] = out["calibration_gap"] / out["se"].where(out["se"] > 0)
    return out.reset_index()


def _drift_features(builder: Any, cfg: FeedbackConfig) -> list[str]:
    return [f for f in builder.feature_names if not any(fnmatch.fnmatchcase(f, pat) for pat in cfg.drift_exclude)]


def _check(name: str, value: float, threshold: float, evidence: float, judged: bool, evidence_min: float,
           detail: str, two_sided: bool = True) -> dict[str, Any]:
    """One row of the trigger table: fires when judged, |value| (or value) > threshold and the evidence
    (a z score, or for drift the ratio to the natural PSI) beyond ``evidence_min`` (nan: no evidence bar)."""
    size = abs(value) if two_sided else value
    ev = abs(evidence) if two_sided else evidence
    fired = bool(judged and np.isfinite(size) and size > threshold and (not np.isfinite(evidence) or ev > evidence_min))
    return {"check": name, "value": value, "threshold": threshold, "evidence": evidence, "evidence_min": evidence_min,
            "judged": judged, "fired": fired, "detail": detail}


def compute_feedback(
    book: PriceBook,
    realized: dict[str, pd.DataFrame],
    tables: dict[str, pd.DataFrame],
    model: Any,
    builder: Any,
    config: Config,
    trained_until: pd.Timestamp | None = None,
    model_info: dict[str, Any] | None = None,
) -> FeedbackReport:
    """The feedback report and retraining decision for one played period (see the module docstring).

    ``tables``: the snapshot before the period; ``realized``: the period's tables (typed as in a snapshot);
    ``trained_until``: end of the model's training data (default: the snapshot's latest offer), for its
    age; ``model_info``: name, version, training-time metrics, shown in the report.
    """
    cfg = config.feedback
    check_realized(realized, tables, book)
    offers = realized["offers"].reset_index(drop=True)
    merged = merge_period(tables, realized)

    # -- predictions on the period and on the reference window ----------------------------------
    X_new = offer_features(builder, merged, offers)
    p = np.clip(model.predict_proba(X_new), _PROB_EPS, 1 - _PROB_EPS)
    y = offers["accepted"].to_numpy(dtype=np.float64)
    old = tables["offers"].sort_values("offer_time", kind="stable")
    n_ref = min(cfg.reference_offers, max(math.ceil(config.model.test_share * len(old)), 1))
    ref = old.tail(n_ref).reset_index(drop=True)
    X_ref = offer_features(builder, tables, ref)
    X_prev = []  # up to psi_natural_windows full windows of n_ref offers before the reference window
    for k in range(1, cfg.psi_natural_windows + 1):
        lo, hi = len(old) - (k + 1) * n_ref, len(old) - k * n_ref
        if lo < 0:
            break
        X_prev.append(offer_features(builder, tables, old.iloc[lo:hi].reset_index(drop=True)))
    p_ref = np.clip(model.predict_proba(X_ref), _PROB_EPS, 1 - _PROB_EPS)
    y_ref = ref["accepted"].to_numpy(dtype=np.float64)

    # -- per-offer frame --------------------------------------------------------------------------
    cost = book.bundle_prices.astype({"bundle_id": str}).groupby("bundle_id")["unit_cost"].first()
    seg = book.customer_segments.astype(str).drop_duplicates("customer_id").set_index("customer_id")
    cust = offers["customer_id"].astype(str)
    price = offers["offered_price"].to_numpy(dtype=np.float64)
    margin = price - offers["bundle_id"].astype(str).map(cost).to_numpy(dtype=np.float64)
    has_groups = "group" in seg.columns
    df = pd.DataFrame({
        "customer_id": cust.to_numpy(),
        "bundle_id": offers["bundle_id"].astype(str).to_numpy(),
        "segment_id": cust.map(seg["segment_id"]).fillna(_NO_SEGMENT).to_numpy(),
        "group": cust.map(seg["group"]).fillna(TREATMENT).to_numpy() if has_groups else TREATMENT,
        "accepted": y,
        "p": p,
        "profit": y * margin,
        "expected_profit": p * margin,
    })
    n = len(df)
    overall = {
        "offers": float(n),
        "accepted": float(y.sum()),
        "realized_conversion": float(y.mean()),
        "predicted_conversion": float(p.mean()),
        "calibration_gap": float(y.mean() - p.mean()),
        "calibration_se": mean_se(y - p, p * (1 - p), df["customer_id"].to_numpy()),
        "realized_profit": float(df["profit"].sum()),
        "expected_profit": float(df["expected_profit"].sum()),
        "realized_profit_per_offer": float(df["profit"].mean()),
        "expected_profit_per_offer": float(df["expected_profit"].mean()),
    }
    overall["calibration_z"] = overall["calibration_gap"] / overall["calibration_se"]
    by_group = _calibration_rows(df, "group")
    by_segment = _calibration_rows(df, "segment_id")
    by_bundle = _calibration_rows(df, "bundle_id").sort_values("offers", ascending=False, kind="mergesort")
    from pricing.model import calibration_table

    reliability = calibration_table(y, p, cfg.calibration_bins)

    # -- lift ---------------------------------------------------------------------------------------
    notes: list[str] = []
    lift_rows = []
    t_mask, c_mask = df["group"] == TREATMENT, df["group"] == CONTROL
    if has_groups and c_mask.any():
        for metric, col in (("profit_per_offer", "profit"), ("conversion", "accepted")):
            lift_rows.append({"metric": metric, **welch_diff(df.loc[t_mask, col], df.loc[c_mask, col], cfg.ci_level)})
    else:
        notes.append("no control offers in the period (the book has no experiment groups?): no lift measured")
    lift = pd.DataFrame(lift_rows, columns=["metric", "mean_t", "mean_c", "n_t", "n_c", "diff", "se", "low", "high",
                                            "rel", "rel_low", "rel_high"])

    # -- drift and performance -----------------------------------------------------------------
    from pricing.features import CATEGORICAL_FEATURES

    features = _drift_features(builder, cfg)
    drift = psi_table(X_ref, X_new, features, cfg.psi_bins, tuple(CATEGORICAL_FEATURES), X_prev)
    natural_ok = drift["ratio"].isna() | (drift["ratio"] > cfg.psi_natural_factor)
    drift.insert(4, "drifted", (drift["psi"] > cfg.max_psi) & natural_ok)
    perf_new = performance(y, p, df["customer_id"].to_numpy())
    perf_ref = performance(y_ref, p_ref, ref["customer_id"].astype(str).to_numpy())
    perf = {"period": perf_new, "reference": perf_ref}
    # The yardstick of the performance checks is the model's usual departure from its own expectation
    # out of sample. A model refitted on every offer (model.refit_on_all) was fitted on the reference
    # window too, where it looks far better than it expects (tiny market: AUC 0.95, expects 0.85): its
    # yardstick is then the split model's test window, recorded at training (same trees, same calibrator).
    from pricing.model import fitted_until_utc

    ys, ys_name = perf_ref, "reference"
    until_fit = fitted_until_utc(model)
    if until_fit is not None and until_fit >= pd.to_datetime(ref["offer_time"], utc=True).min():
        held = getattr(model, "holdout_performance", None)
        if held:
            ys, ys_name = {k: float(v) for k, v in held.items()}, "training test window"
            perf["training_test_window"] = ys
            notes.append("the model was fitted on the reference window (refit on every offer): the performance "
                         "checks compare with its training-time test window instead")
        else:  # a model that meets its own expectation exactly, with no sampling error: zero departure
            ys = {**perf_new, "auc": perf_new["expected_auc"], "log_loss": perf_new["expected_log_loss"],
                  "auc_se": 0.0, "log_loss_se": 0.0}
            ys_name = "own expectation"
            notes.append("the model was fitted on the reference window and records no test-window performance: "
                         "the performance checks compare with the model's own expectation only")
    if model_info and model_info.get("training_metrics"):
        tm = model_info["training_metrics"]
        perf["training_test"] = {k: float(tm[f"test_{k}"]) for k in ("auc", "log_loss", "n") if f"test_{k}" in tm}

    # -- the period and the model's age -------------------------------------------------------------
    t = pd.to_datetime(offers["offer_time"], utc=True)
    until = pd.Timestamp(trained_until) if trained_until is not None else pd.Timestamp(old["offer_time"].max())
    if until.tzinfo is None:
        until = until.tz_localize("UTC")
    age = (t.max() - until) / pd.Timedelta(days=1)
    period = {
        "start": str(t.min()), "end": str(t.max()), "days": float((t.max() - t.min()) / pd.Timedelta(days=1)),
        "reference_offers": int(n_ref), "trained_until": str(until), "model_age_days": float(age),
        "drifting_features": int(drift["drifted"].sum()),
        "price_book_mode": book.manifest.get("mode"), "experiment": bool(has_groups),
    }

    # -- the trigger ----------------------------------------------------------------------------------
    z_min = cfg.significance_z
    enough = n >= cfg.min_offers
    if not enough:
        notes.append(f"only {n} offers (feedback.min_offers = {cfg.min_offers}): the data checks give no verdict")
    checks = [
        _check("calibration (overall)", overall["calibration_gap"], cfg.max_calibration_gap, overall["calibration_z"],
               enough, z_min, f"realized {overall['realized_conversion']:.4f} vs predicted "
               f"{overall['predicted_conversion']:.4f} over {n} offers"),
    ]
    judged_seg = by_segment[by_segment["offers"] >= cfg.min_offers_per_cell]
    if len(judged_seg):
        worst = judged_seg.loc[judged_seg["calibration_gap"].abs().idxmax()]
        hits = judged_seg[(judged_seg["calibration_gap"].abs() > cfg.max_segment_calibration_gap)
                          & (judged_seg["z"].abs() > z_min)]
        row = hits.loc[hits["calibration_gap"].abs().idxmax()] if len(hits) else worst
        checks.append(_check(
            "calibration (segment)", float(row["calibration_gap"]), cfg.max_segment_calibration_gap, float(row["z"]),
            enough,
            z_min, f"segment {row['segment_id']}: realized {row['realized_conversion']:.4f} vs predicted "
            f"{row['predicted_conversion']:.4f} over {int(row['offers'])} offers "
            f"({len(judged_seg)} segments with >= {cfg.min_offers_per_cell} offers judged)"))
    drifted = drift[drift["drifted"]]
    top = drifted.iloc[0] if len(drifted) else (drift.iloc[0] if len(drift) else None)
    checks.append(_check(
        "drift (max PSI)", float(top["psi"]) if top is not None else float("nan"), cfg.max_psi,
        float(top["ratio"]) if top is not None else float("nan"), enough, cfg.psi_natural_factor,
        (f"{top['feature']}: PSI {top['psi']:.3f}, {top['ratio']:.1f}x its natural PSI {top['natural_psi']:.3f}; "
         f"mean {top['ref_mean']:.4g} -> {top['new_mean']:.4g}; {period['drifting_features']} feature(s) drifted")
        if top is not None else "no features", two_sided=False))
    auc_drop = (perf_new["expected_auc"] - perf_new["auc"]) - (ys["expected_auc"] - ys["auc"])
    auc_se = math.hypot(perf_new["auc_se"], ys["auc_se"])
    checks.append(_check(
        "AUC drop", auc_drop, cfg.max_auc_drop, auc_drop / auc_se if auc_se > 0 else float("nan"), enough, z_min,
        f"period AUC {perf_new['auc']:.4f} (model expects {perf_new['expected_auc']:.4f}); {ys_name} "
        f"{ys['auc']:.4f} (expects {ys['expected_auc']:.4f})", two_sided=False))
    ll_gap = (perf_new["log_loss"] - perf_new["expected_log_loss"]) - (ys["log_loss"] - ys["expected_log_loss"])
    ll_se = math.hypot(perf_new["log_loss_se"], ys["log_loss_se"])
    checks.append(_check(
        "log loss vs expectation", ll_gap, cfg.max_log_loss_gap, ll_gap / ll_se if ll_se > 0 else float("nan"), enough,
        z_min, f"period log loss {perf_new['log_loss']:.4f} (model expects {perf_new['expected_log_loss']:.4f}); "
        f"{ys_name} {ys['log_loss']:.4f} (expects {ys['expected_log_loss']:.4f})", two_sided=False))
    checks.append(_check(
        "model age (days)", float(age), cfg.max_model_age_days, float("nan"), True, z_min,
        f"trained on data up to {until.date()}, period ends {t.max().date()}", two_sided=False))
    check_df = pd.DataFrame(checks)
    reasons = [f"{r.check}: {r.value:+.4f} beyond {r.threshold:g} - {r.detail}" for r in check_df.itertuples() if r.fired]
    decision = RetrainDecision(fire=bool(check_df["fired"].any()), reasons=reasons, checks=check_df)
    return FeedbackReport(
        period=period, overall=overall, by_group=by_group, by_segment=by_segment, by_bundle=by_bundle,
        reliability=reliability, lift=lift, drift=drift, performance=perf, decision=decision,
        model=dict(model_info or {}), notes=notes,
    )
