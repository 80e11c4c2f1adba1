"""The purchase-probability model: P(accept | offer context, price), monotone in price.

Pure functions and small typed objects; no orchestration and no experiment tracking here (the training
task logs :class:`TrainResult` to MLflow elsewhere).

Pipeline (:func:`train_model`)
------------------------------
1. :func:`check_training_data` stops early, with a message a user can act on, when the offers cannot
   support a model (no offers, one class only, too few rows / accepted / declined offers, or a time
   split left (nearly) empty, e.g. because every offer carries the same timestamp).
2. :func:`time_split` orders the offers by time, **no shuffling**: the oldest ``1 - valid - test``
   share trains, the next ``valid_share`` is the validation split (early stopping and calibration),
   the latest ``test_share`` is held out for the reported metrics. Offers with the same timestamp are
   kept in the same split.
3. The price response, ``cfg.price_response``:

   * ``"structured"`` (default): ``log-odds = level(x) - sensitivity(x) * (log(price / list) - ell_ref)``
     with ``sensitivity = exp(slope_base + slope(x)) > 0``. Two LightGBM boosters over the **non-price**
     features ``x``: the level (a classifier whose ``init_score`` is the current price term) and the
     log sensitivity (a custom objective: gradient and Gauss-Newton Hessian of the log loss through the
     price term). They start from one global logistic curve in the log price ratio and alternate
     ``structured_rounds`` times, each early-stopped on the validation log loss, then the level once
     more. Acceptance is smooth and strictly decreasing in the price by construction, each customer and
     bundle gets its own slope, and a price ladder costs two booster predictions per row
     (:meth:`AcceptanceModel.predict_proba_at_discounts`). On the default market it earns 0.951 of the
     clairvoyant optimum pricing every shown pair, the tree model 0.922 (docs/pricing.md): one
     monotone tree ensemble averages the slopes of customers it cannot tell apart and flattens them.
   * ``"trees"``: one LightGBM binary classifier over every feature with a **monotone constraint on
     every price-derived feature** (what follows); the form LightGBM's Dask interface can train.

   The tree model: a LightGBM binary classifier with a **monotone constraint on every price-derived feature**
   (:func:`monotone_vector`; the sign says how acceptance moves as the feature grows, e.g. -1 for
   ``price``, +1 for ``discount_pct``). When the price rises, every price-derived column moves in the
   direction its constraint calls "less acceptance", so the model's acceptance can never rise with the
   price (the composition of coordinate-wise monotone pieces is monotone). ``n_estimators`` is an upper
   bound; LightGBM's own ``early_stopping`` callback on the validation log loss picks the number of
   trees (``best_iteration``).
4. Calibration (``cfg.calibration``): a calibrator fitted on the **validation** split maps the raw
   probability to a calibrated one: :class:`IsotonicCalibrator` for the tree model,
   :class:`PlattCalibrator` (logistic on the log-odds, keeps the price curves smooth) for the
   structured one. Both are non-decreasing, so the calibrated acceptance is still non-increasing in
   price. ``"isotonic"`` / ``"platt"`` always calibrate,
   ``"none"`` never, ``"auto"`` decides with :func:`decide_calibration` (see there): fitting *and*
   judging isotonic on the same validation rows is optimistic, so the decision uses a **cross-fitted**
   estimate (K-fold inside the validation split: fit on K-1 folds, predict the held-out fold).
5. Metrics on the validation and test splits (:func:`evaluate`: AUC, log loss, Brier, ECE, base rate,
   n), reliability tables before/after calibration, and feature importance (gain and split).

Calibration error
-----------------
:func:`expected_calibration_error` = ``sum_b (n_b / n) * |mean(p in b) - mean(y in b)|``. Bins are
**equal-mass** by default (``strategy="quantile"``): a row falls in bin
``floor(n_bins * (#rows with a smaller p) / n)``, so tied predictions always share a bin and acceptance
rates concentrated near 0 are still resolved (equal-width bins would put most offers into the first
bin). ``strategy="uniform"`` gives the textbook equal-width variant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import lightgbm
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from pricing.config import ModelConfig

__all__ = [
    "AcceptanceModel",
    "CalibrationDecision",
    "IsotonicCalibrator",
    "MonotoneReport",
    "PlattCalibrator",
    "TrainResult",
    "TrainingDataError",
    "calibration_table",
    "calibrator_from_dict",
    "check_monotone",
    "check_training_data",
    "decide_calibration",
    "early_stopping_iteration",
    "ece_noise_floor",
    "evaluate",
    "expected_calibration_error",
    "log_price_ratio",
    "monotone_vector",
    "time_split",
    "train_model",
    "validation_log_loss_curve",
]

SPLITS: tuple[str, ...] = ("train", "valid", "test")
BinStrategy = Literal["quantile", "uniform"]

#: calibrated probabilities are kept inside [CAL_EPS, 1 - CAL_EPS]: an isotonic block without a single
#: accepted (or declined) offer would otherwise predict exactly 0 (or 1) and give an infinite log loss.
CAL_EPS = 1e-4
#: "auto" calibration: the cross-fitted isotonic ECE must be lower than the raw ECE by at least
#: max(AUTO_ABS_MARGIN, AUTO_REL_MARGIN * raw ECE, ECE noise floor) (see :func:`decide_calibration`).
AUTO_ABS_MARGIN = 0.005
AUTO_REL_MARGIN = 0.2
#: folds of the cross-fitted estimate inside the validation split
AUTO_FOLDS = 5
#: the two forms of the price response (``ModelConfig.price_response``)
STRUCTURED, TREES = "structured", "trees"
#: the structured model's log sensitivity is kept inside [-_SLOPE_CLIP, _SLOPE_CLIP] (exp(12) ~ 1.6e5:
#: only a guard against overflow, never reached by a fitted model)
_SLOPE_CLIP = 12.0


class TrainingDataError(ValueError):
    """The offers cannot support a model; the message says why and what to do."""


# --------------------------------------------------------------------------------------------------
# data checks and the time split
# --------------------------------------------------------------------------------------------------


def _as_labels(y: Any) -> np.ndarray:
    arr = np.asarray(pd.Series(y).to_numpy(dtype="float64", na_value=np.nan), dtype="float64")
    if np.isnan(arr).any():
        raise TrainingDataError(
            f"{int(np.isnan(arr).sum())} offers have no outcome (accepted is missing); "
            "drop or resolve them before training."
        )
    bad = ~np.isin(arr, (0.0, 1.0))
    if bad.any():
        examples = sorted(set(arr[bad].tolist()))[:5]
        raise TrainingDataError(f"the outcome must be 0 (declined) or 1 (accepted); found values {examples}.")
    return arr.astype(np.int8)


def _split_minimum(share: float, cfg: ModelConfig) -> int:
    """Least rows a split must hold: half its nominal share of ``cfg.min_rows`` (at least 5)."""
    return max(5, math.ceil(0.5 * share * cfg.min_rows))


def check_training_data(y: Any, times: Any, cfg: ModelConfig) -> None:
    """Stop with a :class:`TrainingDataError` when the offers cannot support a model.

    Checks, in order: no offers at all; missing or invalid outcomes or timestamps; fewer than
    ``cfg.min_rows`` offers; a single class (every offer accepted, or none); fewer than
    ``cfg.min_positives`` accepted or declined offers; a time split (train / validation / test) with
    too few offers (less than half its nominal share of ``cfg.min_rows``, at least 5; happens when many
    offers share a timestamp) or without both an accepted and a declined offer.
    """
    n = len(y)
    if n == 0:
        raise TrainingDataError(
            "no offers at all: the offer log is empty (after filtering), so there is nothing to learn "
            "acceptance from. Check the offers table and the training window."
        )
    labels = _as_labels(y)
    t = pd.Series(times)
    if len(t) != n:
        raise TrainingDataError(f"{n} outcomes but {len(t)} timestamps: they must align row by row.")
    if t.isna().any():
        raise TrainingDataError(
            f"{int(t.isna().sum())} offers have no timestamp; the time split needs one per offer."
        )
    if n < cfg.min_rows:
        raise TrainingDataError(
            f"too few offers to train: {n} rows, fewer than model.min_rows = {cfg.min_rows}. "
            "Collect more offers (or lower model.min_rows, at the risk of a weak model)."
        )
    pos = int(labels.sum())
    neg = n - pos
    if pos == 0 or neg == 0:
        which = "accepted" if neg == 0 else "declined"
        raise TrainingDataError(
            f"a single class: all {n} offers were {which}, so acceptance cannot be modelled. "
            "The offer log needs both accepted and declined offers."
        )
    if pos < cfg.min_positives or neg < cfg.min_positives:
        few, count = ("accepted", pos) if pos < cfg.min_positives else ("declined", neg)
        raise TrainingDataError(
            f"too few {few} offers: {count} of {n}, fewer than model.min_positives = {cfg.min_positives}. "
            "Collect more offers (or lower model.min_positives)."
        )
    masks = time_split(t, cfg.valid_share, cfg.test_share)
    shares = {
        "train": 1.0 - cfg.valid_share - cfg.test_share,
        "valid": cfg.valid_share,
        "test": cfg.test_share,
    }
    for name, mask in zip(SPLITS, masks, strict=True):
        rows = int(mask.sum())
        need = _split_minimum(shares[name], cfg)
        if rows < need:
            raise TrainingDataError(
                f"too few offers in the {name} split: {rows} rows, need at least {need} "
                f"(offers are split by time, ties kept together; {t.nunique()} distinct timestamps among {n} "
                "offers). Provide offers spread over a longer period."
            )
        k = int(labels[mask].sum())
        if k == 0 or k == rows:
            raise TrainingDataError(
                f"the {name} split ({rows} offers) holds only "
                f"{'declined' if k == 0 else 'accepted'} offers; every split needs both accepted and "
                "declined offers. Provide offers spread over a longer period."
            )


def time_split(
    times: Any, valid_share: float, test_share: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (train, valid, test) in the original row order, by time order, no shuffling.

    With ``n`` offers sorted by time, validation starts at the timestamp of sorted position
    ``floor(n * (1 - valid_share - test_share))`` and test at the one of position
    ``floor(n * (1 - test_share))``; every offer at a boundary timestamp joins the later split, so
    offers with equal timestamps always share a split. If one timestamp spans both boundaries, it goes
    to validation and test starts at the next later timestamp. Works for numbers and (tz-aware)
    datetimes; missing times are an error.
    """
    if not (0 < valid_share < 1 and 0 < test_share < 1 and valid_share + test_share < 1):
        raise ValueError(
            f"valid_share and test_share must be in (0, 1) with a sum < 1, got {valid_share}, {test_share}"
        )
    t = pd.Series(times).reset_index(drop=True)
    n = len(t)
    if n == 0:
        empty = np.zeros(0, dtype=bool)
        return empty, empty.copy(), empty.copy()
    if t.isna().any():
        raise ValueError("time_split: missing timestamps")
    s = t.sort_values(kind="mergesort").reset_index(drop=True)
    b1 = min(math.floor(n * (1.0 - valid_share - test_share)), n - 1)
    b2 = min(math.floor(n * (1.0 - test_share)), n - 1)
    t1 = s.iloc[b1]
    t2 = s.iloc[b2]
    if not t2 > t1:
        later = s[s > t1]
        t2 = later.iloc[0] if len(later) else None
    valid_or_test = (t >= t1).to_numpy(dtype=bool)
    test = (t >= t2).to_numpy(dtype=bool) if t2 is not None else np.zeros(n, dtype=bool)
    return ~valid_or_test, valid_or_test & ~test, test


def monotone_vector(feature_names: Sequence[str], price_features: Mapping[str, int]) -> list[int]:
    """LightGBM ``monotone_constraints`` for ``feature_names``: the direction for price features, 0 else."""
    for name, d in price_features.items():
        if d not in (-1, 0, 1):
            raise ValueError(f"monotone direction of {name!r} must be -1, 0 or +1, got {d!r}")
    return [int(price_features.get(f, 0)) for f in feature_names]


# --------------------------------------------------------------------------------------------------
# calibration metrics
# --------------------------------------------------------------------------------------------------


def _bin_index(p: np.ndarray, n_bins: int, strategy: BinStrategy) -> np.ndarray:
    n = len(p)
    if strategy == "uniform":
        return np.minimum((p * n_bins).astype(np.int64), n_bins - 1).clip(0)
    if strategy == "quantile":
        smaller = np.searchsorted(np.sort(p, kind="mergesort"), p, side="left")
        return (smaller * n_bins) // max(n, 1)
    raise ValueError(f"unknown bin strategy {strategy!r} (quantile | uniform)")


def calibration_table(y: Any, p: Any, n_bins: int = 15, strategy: BinStrategy = "quantile") -> pd.DataFrame:
    """Reliability table: one row per non-empty bin with ``bin, p_min, p_max, mean_predicted,
    observed_rate, count``. Bins: see :func:`expected_calibration_error`."""
    yy = np.asarray(y, dtype="float64")
    pp = np.asarray(p, dtype="float64")
    cols = ["bin", "p_min", "p_max", "mean_predicted", "observed_rate", "count"]
    if len(pp) == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    b = _bin_index(pp, n_bins, strategy)
    count = np.bincount(b, minlength=n_bins)
    keep = count > 0
    sum_p = np.bincount(b, weights=pp, minlength=n_bins)
    sum_y = np.bincount(b, weights=yy, minlength=n_bins)
    pmin = np.full(n_bins, np.inf)
    pmax = np.full(n_bins, -np.inf)
    np.minimum.at(pmin, b, pp)
    np.maximum.at(pmax, b, pp)
    idx = np.arange(n_bins)[keep]
    return pd.DataFrame(
        {
            "bin": idx,
            "p_min": pmin[keep],
            "p_max": pmax[keep],
            "mean_predicted": sum_p[keep] / count[keep],
            "observed_rate": sum_y[keep] / count[keep],
            "count": count[keep].astype(np.int64),
        }
    )


def expected_calibration_error(y: Any, p: Any, n_bins: int = 15, strategy: BinStrategy = "quantile") -> float:
    """ECE = sum over bins of (share of rows) * |mean predicted - observed rate|; nan without rows."""
    tab = calibration_table(y, p, n_bins, strategy)
    n = tab["count"].sum()
    if n == 0:
        return float("nan")
    return float((tab["count"] / n * (tab["mean_predicted"] - tab["observed_rate"]).abs()).sum())


def ece_noise_floor(p: Any, n_bins: int = 15, strategy: BinStrategy = "quantile") -> float:
    """ECE a *perfectly calibrated* model with predictions ``p`` would show from sampling noise alone
    (approximately): sum_b (n_b / n) * sqrt(2 / pi) * sqrt(pbar_b (1 - pbar_b) / n_b), the mean of a
    half-normal per bin. Compare an ECE against this before calling a model miscalibrated."""
    pp = np.asarray(p, dtype="float64")
    if len(pp) == 0:
        return float("nan")
    tab = calibration_table(np.zeros(len(pp)), pp, n_bins, strategy)
    w = tab["count"] / tab["count"].sum()
    pbar = tab["mean_predicted"]
    return float((w * math.sqrt(2 / math.pi) * np.sqrt(pbar * (1 - pbar) / tab["count"])).sum())


def evaluate(y: Any, p: Any, n_bins: int = 15) -> dict[str, float]:
    """auc (sklearn ``roc_auc_score``; nan with a single class), log_loss, brier, ece, base_rate, n."""
    yy = np.asarray(y, dtype="float64")
    pp = np.asarray(p, dtype="float64")
    n = len(yy)
    if n == 0:
        nan = float("nan")
        return {"auc": nan, "log_loss": nan, "brier": nan, "ece": nan, "base_rate": nan, "n": 0.0}
    auc = float(roc_auc_score(yy, pp)) if 0 < yy.sum() < n else float("nan")
    return {
        "auc": auc,
        "log_loss": float(log_loss(yy, pp, labels=[0, 1])),
        "brier": float(brier_score_loss(yy, pp)),
        "ece": expected_calibration_error(yy, pp, n_bins),
        "base_rate": float(yy.mean()),
        "n": float(n),
    }


# --------------------------------------------------------------------------------------------------
# the isotonic calibrator
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IsotonicCalibrator:
    """Non-decreasing map raw probability -> calibrated probability (centred isotonic regression).

    Fitting runs the pool-adjacent-violators algorithm (sklearn ``IsotonicRegression``); each block of
    the step function is then represented by one knot at its (row-weighted) mean raw probability with
    the block's observed acceptance rate, and :meth:`transform` interpolates linearly between knots
    (constant beyond the first/last knot). This is Oron and Flournoy's *centred* isotonic regression:
    still non-decreasing (so monotonicity in price survives calibration) but strictly increasing between
    knots, so demand curves have no artificial flat steps for the price optimiser to jump along.
    Values are kept in [CAL_EPS, 1 - CAL_EPS]. ``x`` and ``y`` are plain float lists, JSON-ready.
    """

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype="float64")
        y = np.asarray(self.y, dtype="float64")
        if len(x) == 0 or len(x) != len(y):
            raise ValueError("IsotonicCalibrator needs as many knots x as values y (at least one)")
        if np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
            raise ValueError(
                "IsotonicCalibrator knots must be strictly increasing in x and non-decreasing in y"
            )

    @classmethod
    def fit(cls, p: Any, y: Any) -> IsotonicCalibrator:
        pp = np.asarray(p, dtype="float64")
        yy = np.asarray(y, dtype="float64")
        if len(pp) == 0:
            raise ValueError("cannot fit a calibrator without rows")
        order = np.argsort(pp, kind="mergesort")
        ps, ys = pp[order], yy[order]
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        fitted = iso.fit(ps, ys).predict(ps)
        # blocks = runs of equal fitted values along the sorted raw probabilities
        start = np.r_[0, np.flatnonzero(np.diff(fitted) != 0) + 1]
        counts = np.diff(np.r_[start, len(ps)])
        xs = np.add.reduceat(ps, start) / counts
        vs = fitted[start]
        # guard against floating-point ties of block centres (possible with huge blocks)
        keep = np.r_[True, np.diff(xs) > 0]
        xs, vs = xs[keep], vs[keep]
        vs = np.clip(np.maximum.accumulate(vs), CAL_EPS, 1.0 - CAL_EPS)
        return cls(x=tuple(float(v) for v in xs), y=tuple(float(v) for v in vs))

    def transform(self, p: Any) -> np.ndarray:
        return np.interp(np.asarray(p, dtype="float64"), np.asarray(self.x), np.asarray(self.y))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "centred_isotonic", "input": "raw_probability", "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IsotonicCalibrator:
        kind = d.get("kind", "centred_isotonic")
        if kind != "centred_isotonic":
            raise ValueError(f"unknown calibrator kind {kind!r}")
        return cls(x=tuple(float(v) for v in d["x"]), y=tuple(float(v) for v in d["y"]))


def _logistic_line(x: np.ndarray, y: Any, start: tuple[float, float] = (0.0, 0.0), iters: int = 50,
                   tol: float = 1e-10) -> tuple[float, float]:
    """Maximum-likelihood ``(a, b)`` of ``P(y = 1) = sigmoid(a + b * x)`` by Newton's method (a tiny ridge
    keeps the 2x2 system solvable); Platt's calibrator and the structured model's start share it."""
    a, b = start
    yy = np.asarray(y, dtype="float64")
    Z = np.stack([np.ones_like(x), x], axis=1)
    for _ in range(iters):
        q = expit(a + b * x)
        w = np.maximum(q * (1 - q), 1e-12)
        step = np.linalg.solve((Z * w[:, None]).T @ Z + 1e-9 * np.eye(2), Z.T @ (yy - q))
        a, b = a + float(step[0]), b + float(step[1])
        if np.abs(step).max() < tol:
            break
    return a, b


@dataclass(frozen=True)
class PlattCalibrator:
    """Logistic recalibration of the log-odds: ``p -> sigmoid(a + b * logit(p))`` with ``b > 0``.

    Two parameters fitted by maximum likelihood (Newton's method) on the validation split. Being a
    smooth, strictly increasing map of the log-odds, it keeps a structured model's price curves
    log-linear (it scales every price sensitivity by ``b``), where isotonic regression's
    piecewise-linear map bends them (docs/pricing.md: -0.011 of the clairvoyant optimum once).
    """

    a: float
    b: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.a) and math.isfinite(self.b) and self.b > 0):
            raise ValueError(f"PlattCalibrator needs finite a and b > 0, got a={self.a}, b={self.b}")

    @staticmethod
    def _logit(p: Any) -> np.ndarray:
        q = np.clip(np.asarray(p, dtype="float64"), CAL_EPS, 1.0 - CAL_EPS)
        return np.log(q) - np.log1p(-q)

    @classmethod
    def fit(cls, p: Any, y: Any, iters: int = 50) -> PlattCalibrator:
        z = cls._logit(p)
        yy = np.asarray(y, dtype="float64")
        if len(z) == 0:
            raise ValueError("cannot fit a calibrator without rows")
        a, b = _logistic_line(z, yy, start=(0.0, 1.0), iters=iters)
        return cls(a=float(a), b=float(max(b, 1e-3)))

    def transform(self, p: Any) -> np.ndarray:
        return np.clip(expit(self.a + self.b * self._logit(p)), CAL_EPS, 1.0 - CAL_EPS)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "platt", "input": "raw_probability", "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlattCalibrator:
        if d.get("kind") != "platt":
            raise ValueError(f"not a Platt calibrator: kind {d.get('kind')!r}")
        return cls(a=float(d["a"]), b=float(d["b"]))


Calibrator = IsotonicCalibrator | PlattCalibrator
CALIBRATORS: dict[str, type[IsotonicCalibrator | PlattCalibrator]] = {
    "isotonic": IsotonicCalibrator, "platt": PlattCalibrator,
}


def calibrator_from_dict(d: Mapping[str, Any] | None) -> Calibrator | None:
    """A calibrator from its :meth:`to_dict` form (None stays None)."""
    if d is None:
        return None
    kind = d.get("kind", "centred_isotonic")
    if kind == "platt":
        return PlattCalibrator.from_dict(d)
    return IsotonicCalibrator.from_dict(d)


@dataclass(frozen=True)
class CalibrationDecision:
    """Whether (and with which calibrator) to calibrate, and why; the numbers are on the validation split."""

    use_calibrator: bool
    method: str  # the calibrator judged: "isotonic" or "platt"
    reason: str
    ece_raw: float
    ece_calibrated_cv: float
    ece_noise_floor: float
    brier_raw: float
    brier_calibrated_cv: float

    @property
    def use_isotonic(self) -> bool:
        return self.use_calibrator and self.method == "isotonic"

    def metrics(self) -> dict[str, float]:
        """Flat metrics; the raw ECE / Brier are ``valid_raw_ece`` / ``valid_raw_brier`` in TrainResult."""
        return {
            "calibration_isotonic": float(self.use_calibrator and self.method == "isotonic"),
            "calibration_platt": float(self.use_calibrator and self.method == "platt"),
            "valid_calibrated_cv_ece": self.ece_calibrated_cv,
            "valid_calibrated_cv_brier": self.brier_calibrated_cv,
            "valid_ece_noise_floor": self.ece_noise_floor,
        }


def _cross_fitted(p: np.ndarray, y: np.ndarray, folds: int, seed: int, method: str = "isotonic") -> np.ndarray:
    cal = CALIBRATORS[method]
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(p)) % folds
    out = np.empty(len(p))
    for k in range(folds):
        held = fold == k
        if held.all() or not held.any():
            out[held] = p[held]
            continue
        out[held] = cal.fit(p[~held], y[~held]).transform(p[held])
    return out


def decide_calibration(
    p_raw: Any, y: Any, mode: Literal["auto", "isotonic", "platt", "none"], n_bins: int, seed: int = 0,
    method: Literal["isotonic", "platt"] = "isotonic",
) -> CalibrationDecision:
    """Decide whether to calibrate, from raw validation probabilities and outcomes.

    ``"isotonic"`` / ``"platt"`` / ``"none"`` are obeyed. ``"auto"`` judges the calibrator ``method``
    (the tree model's is isotonic, the structured model's Platt: see :class:`PlattCalibrator`) and
    picks it only when both hold:

    1. it lowers the ECE by a clear margin, judged **cross-fitted** (``AUTO_FOLDS``-fold inside
       the validation split: each fold is predicted by a calibrator fitted on the other folds, so the
       judge never sees its own training rows):
       ``ECE_raw - ECE_cv >= max(AUTO_ABS_MARGIN, AUTO_REL_MARGIN * ECE_raw, floor)``, i.e. at least
       0.005, at least 20 % of the raw ECE, and at least :func:`ece_noise_floor` (the ECE a perfectly
       calibrated model would show on these rows from sampling noise alone; ~0.02 for 3k validation
       rows, ~0.002 for 400k), so a difference sampling noise could produce never switches it on;
    2. it does not make the Brier score (a proper scoring rule) worse, cross-fitted.

    The numbers are computed and reported in every mode (metrics ``valid_calibrated_cv_ece``,
    ``valid_calibrated_cv_brier``, ``valid_ece_noise_floor``; ``reason`` spells the decision out).
    """
    if mode in CALIBRATORS:
        method = mode  # type: ignore[assignment]
    elif mode not in ("auto", "none"):
        raise ValueError(f"unknown calibration mode {mode!r} (auto | isotonic | platt | none)")
    if method not in CALIBRATORS:
        raise ValueError(f"unknown calibrator {method!r} (isotonic | platt)")
    pp = np.asarray(p_raw, dtype="float64")
    yy = np.asarray(y, dtype="float64")
    ece_raw = expected_calibration_error(yy, pp, n_bins)
    floor = ece_noise_floor(pp, n_bins)
    p_cv = _cross_fitted(pp, yy, AUTO_FOLDS, seed, method)
    ece_cv = expected_calibration_error(yy, p_cv, n_bins)
    brier_raw = float(brier_score_loss(yy, pp))
    brier_cv = float(brier_score_loss(yy, p_cv))
    margin = max(AUTO_ABS_MARGIN, AUTO_REL_MARGIN * ece_raw, floor)
    nums = (
        f"validation ECE raw {ece_raw:.4f} (noise floor {floor:.4f}), {method} cross-fitted {ece_cv:.4f} "
        f"(needs an improvement >= {margin:.4f}); Brier raw {brier_raw:.5f}, {method} cross-fitted {brier_cv:.5f}"
    )
    if mode in CALIBRATORS:
        use, reason = True, f"calibration={mode} (forced); {nums}"
    elif mode == "none":
        use, reason = False, f"calibration=none (forced); {nums}"
    else:
        why = []
        if not ece_raw - ece_cv >= margin:
            why.append(f"{method} does not lower ECE by a clear margin")
        if not brier_cv <= brier_raw:
            why.append(f"{method} worsens the Brier score")
        use = not why
        reason = f"calibration=auto -> {method if use else 'none'} ({'; '.join(why) or 'all criteria met'}); {nums}"
    return CalibrationDecision(use, method, reason, ece_raw, ece_cv, floor, brier_raw, brier_cv)


# --------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------


@dataclass
class AcceptanceModel:
    """A fitted acceptance model: LightGBM booster(s) (+ optional isotonic calibrator).

    Two forms (``price_response``):

    * ``"trees"``: one LightGBM classifier over every feature, monotone constraints on the price
      features; acceptance is a step function of the price.
    * ``"structured"``: ``log-odds = level(x) - sensitivity(x) * (log(price / list_sum) - ell_ref)``
      with ``sensitivity(x) = exp(slope_base + slope(x))``: ``classifier`` grows the **level** and
      ``slope_booster`` the **log price sensitivity**, both from the non-price features ``x`` only. The
      price enters through ``discount_pct`` (``log(price / list_sum) = log(1 - discount_pct)``), so
      acceptance is smooth and strictly decreasing in the price by construction, and each customer and
      bundle gets its own price slope (a single tree model averages slopes over customers it cannot tell
      apart and flattens them; docs/pricing.md measures the difference).

    ``classifier`` may also be a bare ``lightgbm.Booster`` (e.g. as loaded from a model file); rebuild
    a model from a logged classifier with :meth:`from_dict` (inverse of :meth:`to_dict`).
    """

    classifier: lightgbm.LGBMClassifier
    calibrator: IsotonicCalibrator | PlattCalibrator | None
    feature_names: list[str]
    categorical: list[str]
    price_features: dict[str, int]
    best_iteration: int
    #: per price feature, its training distribution: ``{"min", "q01", "q99", "max"}``. Trees predict a
    #: constant beyond the training range, so a price optimiser should stay inside it (revenue grows
    #: without bound where acceptance is flat).
    price_feature_ranges: dict[str, dict[str, float]] = field(default_factory=dict)
    #: time of the latest offer the model was fitted on (trees, early stopping or calibration), ISO
    #: format; None when unknown (older models, or times that are not timestamps). A fair comparison of
    #: two models uses only offers after it (:func:`pricing.promotion.review`).
    fitted_until: str | None = None
    #: out-of-sample performance of the time-split model on its test window (AUC, log loss, the model's
    #: own expectation of both, their standard errors: :func:`pricing.feedback.performance`). A model
    #: refitted on every offer has no unseen window left in its data; feedback compares with this.
    holdout_performance: dict[str, float] | None = None
    #: "trees" or "structured" (see the class docstring)
    price_response: str = "trees"
    #: structured: the log price sensitivity booster, its constant and number of trees, the reference
    #: log price ratio (log-odds at ``price = list_sum * exp(ell_ref)`` is the level)
    slope_booster: lightgbm.Booster | None = None
    slope_base: float = 0.0
    slope_best_iteration: int = 0
    ell_ref: float = 0.0

    # -- prediction ---------------------------------------------------------------------------------
    @property
    def booster(self) -> lightgbm.Booster:
        c = self.classifier
        return c if isinstance(c, lightgbm.Booster) else c.booster_

    @property
    def structured(self) -> bool:
        return self.price_response == STRUCTURED

    @property
    def categorical_context(self) -> list[str]:
        return [c for c in self.categorical if c in self.context_features]

    @property
    def context_features(self) -> list[str]:
        """The boosters' input columns: every feature (trees), the non-price ones (structured)."""
        if not self.structured:
            return list(self.feature_names)
        return [c for c in self.feature_names if c not in self.price_features]

    def _matrix(self, X: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"X must be a pandas DataFrame with columns {self.feature_names[:5]}..., got {type(X).__name__}"
            )
        missing = [c for c in self.feature_names if c not in X.columns]
        if missing:
            raise KeyError(f"X lacks {len(missing)} model feature(s): {missing[:10]}")
        return X[self.feature_names]

    def _predict(self, X: pd.DataFrame, **kw: Any) -> np.ndarray:
        Xm = self._matrix(X)
        if len(Xm) == 0:
            return np.zeros((0, len(self.feature_names) + 1)) if kw.get("pred_contrib") else np.zeros(0)
        return self.booster.predict(Xm, num_iteration=self.best_iteration, **kw)

    def _structured_parts(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(level log-odds, sensitivity, centred log price ratio) per row of a structured model."""
        Xm = self._matrix(X)
        if len(Xm) == 0:
            z = np.zeros(0)
            return z, z, z
        level, sens = self._level_and_sensitivity(Xm)
        return level, sens, log_price_ratio(Xm) - self.ell_ref

    def _level_and_sensitivity(self, Xm: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The two boosters of a structured model on a model matrix (non-empty): level log-odds, sensitivity."""
        Xc = Xm[self.context_features]
        level = np.asarray(self.booster.predict(Xc, num_iteration=self.best_iteration, raw_score=True), dtype="float64")
        return level, self.sensitivity(Xc)

    def sensitivity(self, X: pd.DataFrame) -> np.ndarray:
        """Structured model: ``d log-odds / d log price`` (negated) per row, > 0; ``X`` needs the
        non-price features only. A tree model has no such closed form (use two prices instead)."""
        if not self.structured or self.slope_booster is None:
            raise ValueError("sensitivity() needs a structured model (model.price_response: structured)")
        Xc = X[self.context_features]
        if len(Xc) == 0:
            return np.zeros(0)
        g = self.slope_booster.predict(Xc, num_iteration=self.slope_best_iteration or None, raw_score=True)
        return np.exp(np.clip(self.slope_base + np.asarray(g, dtype="float64"), -_SLOPE_CLIP, _SLOPE_CLIP))

    def predict_proba_at_discounts(self, X: pd.DataFrame, discount: np.ndarray) -> np.ndarray:
        """Structured model: calibrated acceptance of every row of ``X`` at each of its ``discount`` columns.

        ``discount [n, L]`` holds ``discount_pct`` values (``1 - price / list_sum``, NaN = no price; the
        result is NaN there). The boosters run once per row, the price term once per cell: a price
        ladder costs two predictions per row instead of ``L`` (equal, to rounding, to setting the price
        columns and calling :meth:`predict_proba` per column).
        """
        if not self.structured:
            raise ValueError("predict_proba_at_discounts() needs a structured model")
        d = np.asarray(discount, dtype="float64")
        if d.ndim != 2 or d.shape[0] != len(X):
            raise ValueError(f"discount must be [len(X), L], got {d.shape} for {len(X)} rows")
        if len(X) == 0:
            return np.zeros(d.shape)
        level, sens = self._level_and_sensitivity(self._matrix(X))
        ok = np.isfinite(d)
        ell = _log_ratio_of_discount(d) - self.ell_ref
        p = expit(level[:, None] - sens[:, None] * ell)
        if self.calibrator is not None:
            p = self.calibrator.transform(p.ravel()).reshape(p.shape)
        return np.where(ok, p, np.nan)

    def predict_log_odds(self, X: pd.DataFrame) -> np.ndarray:
        """Raw (uncalibrated) log-odds; ``contributions(X).sum(axis=1)`` equals this."""
        if self.structured:
            level, sens, ell = self._structured_parts(X)
            return level - sens * ell
        return np.asarray(self._predict(X, raw_score=True), dtype="float64")

    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated P(accept), 1-D."""
        if self.structured:
            return expit(self.predict_log_odds(X))
        return np.asarray(self._predict(X), dtype="float64")

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated P(accept), 1-D (= :meth:`predict_raw` when there is no calibrator)."""
        raw = self.predict_raw(X)
        return raw if self.calibrator is None else self.calibrator.transform(raw)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-row additive explanation of the raw log-odds: one column per feature plus ``bias``; rows
        sum to :meth:`predict_log_odds`. The calibrator is not included (it is a monotone map of the total).

        Trees: LightGBM ``pred_contrib=True`` (TreeSHAP). Structured: TreeSHAP of the level booster on the
        non-price features, and the whole price term ``-sensitivity * (log(price / list_sum) - ell_ref)``
        in the ``price`` column (the other price columns are 0): "how much this price moves the log-odds
        against the reference price", with the customer's own sensitivity."""
        if not self.structured:
            c = np.asarray(self._predict(X, pred_contrib=True), dtype="float64")
            return pd.DataFrame(c, columns=[*self.feature_names, "bias"], index=X.index)
        Xm = self._matrix(X)
        out = pd.DataFrame(0.0, columns=[*self.feature_names, "bias"], index=X.index)
        if len(Xm) == 0:
            return out
        ctx_cols = self.context_features
        c = np.asarray(self.booster.predict(Xm[ctx_cols], num_iteration=self.best_iteration, pred_contrib=True),
                       dtype="float64")
        out[ctx_cols] = c[:, :-1]
        out["bias"] = c[:, -1]
        price_col = "price" if "price" in self.price_features else next(iter(self.price_features))
        _level, sens, ell = self._structured_parts(X)
        out[price_col] = -sens * ell
        return out

    # -- serialisation (the classifier itself is logged as a LightGBM model elsewhere) ---------------
    def calibrator_to_dict(self) -> dict[str, Any] | None:
        return None if self.calibrator is None else self.calibrator.to_dict()

    @staticmethod
    def calibrator_from_dict(d: Mapping[str, Any] | None) -> Calibrator | None:
        return calibrator_from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the boosters, JSON-serialisable (log it beside the LightGBM model; a structured
        model's sensitivity booster goes beside it as text, :meth:`slope_model_text`)."""
        return {
            "feature_names": list(self.feature_names),
            "categorical": list(self.categorical),
            "price_features": {k: int(v) for k, v in self.price_features.items()},
            "best_iteration": int(self.best_iteration),
            "calibrator": self.calibrator_to_dict(),
            "price_feature_ranges": {k: dict(v) for k, v in self.price_feature_ranges.items()},
            "fitted_until": self.fitted_until,
            "holdout_performance": self.holdout_performance,
            "price_response": self.price_response,
            "slope_base": float(self.slope_base),
            "slope_best_iteration": int(self.slope_best_iteration),
            "ell_ref": float(self.ell_ref),
        }

    def slope_model_text(self) -> str | None:
        """The sensitivity booster as LightGBM model text (None for a tree model)."""
        return None if self.slope_booster is None else self.slope_booster.model_to_string()

    @classmethod
    def from_dict(
        cls,
        classifier: lightgbm.LGBMClassifier | lightgbm.Booster,
        d: Mapping[str, Any],
        slope_booster: lightgbm.Booster | str | None = None,
    ) -> AcceptanceModel:
        """Inverse of :meth:`to_dict`; a structured model needs its ``slope_booster`` (a Booster or its
        model text)."""
        response = str(d.get("price_response", TREES))
        if isinstance(slope_booster, str):
            slope_booster = lightgbm.Booster(model_str=slope_booster)
        if response == STRUCTURED and slope_booster is None:
            raise ValueError("a structured acceptance model needs its sensitivity booster (slope_booster)")
        return cls(
            classifier=classifier,
            calibrator=cls.calibrator_from_dict(d.get("calibrator")),
            feature_names=list(d["feature_names"]),
            categorical=list(d["categorical"]),
            price_features={k: int(v) for k, v in d["price_features"].items()},
            best_iteration=int(d["best_iteration"]),
            price_feature_ranges={
                k: {q: float(x) for q, x in v.items()}
                for k, v in (d.get("price_feature_ranges") or {}).items()
            },
            fitted_until=d.get("fitted_until"),
            holdout_performance=d.get("holdout_performance"),
            price_response=response,
            slope_booster=slope_booster,
            slope_base=float(d.get("slope_base", 0.0)),
            slope_best_iteration=int(d.get("slope_best_iteration", 0)),
            ell_ref=float(d.get("ell_ref", 0.0)),
        )


@dataclass
class TrainResult:
    """What :func:`train_model` returns (all of it loggable: metrics flat, tables as DataFrames).

    * ``metrics``: ``{split}_{auc|log_loss|brier|ece|base_rate|n}`` for ``valid`` and ``test`` with the
      final (calibrated, if chosen) predictions, ``{split}_raw_{...}`` with the raw ones,
      ``train_n``, ``best_iteration``, ``n_estimators_max`` and the calibration-decision numbers
      (:meth:`CalibrationDecision.metrics`). Valid metrics after calibration are optimistic (the
      calibrator was fitted there); the test split is the honest one.
    * ``splits``: boolean masks ``train``/``valid``/``test`` over the rows of X.
    * ``calibration``: reliability tables, long format: ``split, stage (before|after), bin, p_min,
      p_max, mean_predicted, observed_rate, count``; :meth:`reliability` picks one.
    * ``feature_importance``: ``feature, gain, split`` (at the best iteration), by gain descending.
    * ``learning_curve``: ``iteration, valid_log_loss``.
    """

    model: AcceptanceModel
    metrics: dict[str, float]
    splits: dict[str, np.ndarray]
    calibration: pd.DataFrame
    feature_importance: pd.DataFrame
    calibration_decision: CalibrationDecision
    learning_curve: pd.DataFrame = field(default_factory=pd.DataFrame)

    def reliability(self, split: str = "test", stage: str = "after") -> pd.DataFrame:
        t = self.calibration
        return (
            t[(t["split"] == split) & (t["stage"] == stage)]
            .drop(columns=["split", "stage"])
            .reset_index(drop=True)
        )


def _check_matrix(
    X: pd.DataFrame, price_features: Mapping[str, int], categorical_codes: Sequence[str] = ()
) -> tuple[list[str], list[str], dict[str, int]]:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X must be a pandas DataFrame, got {type(X).__name__}")
    if X.columns.has_duplicates:
        raise ValueError(f"duplicate feature names: {X.columns[X.columns.duplicated()].tolist()}")
    names = [str(c) for c in X.columns]
    categorical: list[str] = []
    bad: list[str] = []
    for c in X.columns:
        dt = X[c].dtype
        if isinstance(dt, pd.CategoricalDtype) or (
            str(c) in categorical_codes and pd.api.types.is_numeric_dtype(dt)
        ):
            categorical.append(str(c))
        elif not (pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt)):
            bad.append(f"{c} ({dt})")
    if bad:
        raise TypeError(f"model features must be numeric or pandas 'category'; convert: {bad[:10]}")
    unknown = [c for c in categorical_codes if c not in names]
    if unknown:
        raise ValueError(f"categorical columns not in X: {unknown}")
    for c in categorical_codes:
        if isinstance(X[c].dtype, pd.CategoricalDtype):
            continue
        v = X[c].to_numpy(dtype="float64", na_value=np.nan)
        v = v[~np.isnan(v)]
        if len(v) and (v.min() < 0 or not np.array_equal(v, np.floor(v)) or v.max() > 2**31 - 1):
            raise ValueError(
                f"categorical column {c!r} must hold non-negative integer codes (NaN for missing / unseen), "
                f"found values in [{v.min()}, {v.max()}]"
            )
    present = {k: int(v) for k, v in price_features.items() if k in names}
    if not present:
        raise ValueError(
            f"none of the price features {sorted(price_features)} is a column of X: the model could not be "
            "made monotone in price"
        )
    cat_price = [k for k in present if k in categorical]
    if cat_price:
        raise ValueError(f"price features must be numeric, not categorical: {cat_price}")
    return names, categorical, present


def _classifier(cfg: ModelConfig, constraints: list[int]) -> lightgbm.LGBMClassifier:
    return lightgbm.LGBMClassifier(
        objective="binary",
        n_estimators=cfg.n_estimators,
        learning_rate=cfg.learning_rate,
        num_leaves=cfg.num_leaves,
        min_child_samples=cfg.min_child_samples,
        colsample_bytree=cfg.feature_fraction,
        subsample=cfg.bagging_fraction,
        # LightGBM bags only when bagging_freq > 0; a fraction < 1 in the config means "bag every tree"
        subsample_freq=1 if cfg.bagging_fraction < 1 else 0,
        reg_lambda=cfg.lambda_l2,
        monotone_constraints=constraints,
        monotone_constraints_method=cfg.monotone_constraints_method,
        n_jobs=cfg.n_threads,
        random_state=cfg.seed,
        verbose=-1,
    )


def validation_log_loss_curve(booster: lightgbm.Booster, X: pd.DataFrame, y: Any, block_rows: int = 0) -> np.ndarray:
    """Log loss of ``booster``'s raw probability on ``(X, y)`` after each of its trees (1, 2, ..., T).

    One pass: the leaf each row reaches in every tree (``pred_leaf``), the leaves' outputs summed
    cumulatively along the trees (the average score is part of the first tree). Rows go in blocks of
    ``block_rows`` (default: about 2 million cells per block) so memory stays bounded.
    """
    yy = np.asarray(y, dtype="float64")
    T = booster.num_trees()
    if T == 0 or len(X) == 0:
        return np.zeros(0)
    n_leaves = [t["num_leaves"] for t in booster.dump_model(num_iteration=-1)["tree_info"]]
    values = np.zeros((T, max(n_leaves)))
    for t, k in enumerate(n_leaves):
        values[t, :k] = [booster.get_leaf_output(t, leaf) for leaf in range(k)]
    block = block_rows or max(1, 2_000_000 // T)
    total = np.zeros(T)
    trees = np.arange(T)[None, :]
    for start in range(0, len(X), block):
        leaves = np.asarray(
            booster.predict(X.iloc[start : start + block], pred_leaf=True, start_iteration=0, num_iteration=T),
            dtype=np.int64,
        )
        z = np.cumsum(values[trees, leaves.reshape(len(leaves), T)], axis=1)  # [rows, T] raw log-odds
        yb = yy[start : start + block, None]
        # log loss of sigmoid(z): log(1 + e^z) - y z, computed stably
        total += (np.logaddexp(0.0, z) - yb * z).sum(axis=0)
    return total / len(X)


def early_stopping_iteration(curve: Sequence[float], rounds: int) -> int:
    """The number of trees ``lightgbm.early_stopping(rounds)`` would keep for this validation curve.

    Walks the curve in order like the callback: a strict improvement makes a new best; ``rounds``
    rounds without one stop the walk; the answer is the (1-based) best round, so applying it after
    training all rounds keeps exactly the trees early stopping would have kept.
    """
    best_i, best = 0, math.inf
    for i, v in enumerate(curve):
        if v < best:
            best_i, best = i, float(v)
        elif i - best_i >= rounds:
            break
    return best_i + 1


def _fit_on_dask(
    client: Any,
    cfg: ModelConfig,
    constraints: list[int],
    X_tr: pd.DataFrame,
    y_tr: np.ndarray,
    X_va: pd.DataFrame,
    y_va: np.ndarray,
    categorical: Sequence[str],
    cut: bool = True,
) -> tuple[lightgbm.LGBMClassifier, int, list[float]]:
    """Grow the trees with ``lightgbm.DaskLGBMClassifier`` (data-parallel over the Dask workers).

    Same parameters as local training (monotone constraints, categorical features, bagging, seed);
    LightGBM sets the threads per worker from the Dask worker's ``nthreads``. The training rows become
    a Dask DataFrame with one partition per worker.

    Early stopping: LightGBM's Dask interface does not support it (lightgbm issues #3712, #6351:
    workers may stop at different rounds and the training hangs), so all ``cfg.n_estimators`` rounds
    are grown. Afterwards the validation log loss after every round is computed from the local booster
    (:func:`validation_log_loss_curve`) and :func:`early_stopping_iteration` applies the callback's
    rule, so ``best_iteration`` is the round early stopping would have picked on this curve. Cost:
    the rounds after that point are grown for nothing (lower ``model.n_estimators`` when the usual
    number of trees is known). The returned classifier keeps the first ``best_iteration`` trees, like a
    locally early-stopped one.

    Returns the local ``LGBMClassifier`` (``.to_local()``), the best iteration and the full curve.
    """
    import warnings

    import dask.dataframe as dd
    from lightgbm.dask import DaskLGBMClassifier

    workers = client.nthreads()
    if not workers:
        raise RuntimeError("the Dask cluster has no workers: start some (dask worker <scheduler address>)")
    n_parts = max(1, min(len(workers), len(X_tr)))
    params = _classifier(cfg, constraints).get_params()
    params.pop("n_jobs", None)  # the Dask interface uses each worker's own thread count
    model = DaskLGBMClassifier(client=client, **params)
    dX = dd.from_pandas(X_tr.reset_index(drop=True), npartitions=n_parts, sort=True)
    dy = dd.from_pandas(pd.Series(np.asarray(y_tr), name="accepted"), npartitions=n_parts, sort=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        model.fit(dX, dy, categorical_feature=list(categorical) or "auto")
    clf = model.to_local()
    if not cut:  # a refit with a fixed number of trees: no validation curve
        return clf, int(cfg.n_estimators), []
    curve = validation_log_loss_curve(clf.booster_, X_va, y_va)
    best = early_stopping_iteration(curve, cfg.early_stopping_rounds)
    # keep the first `best` trees only, as lightgbm.train does after early stopping (the logged model
    # then predicts the same through any interface, MLflow's included)
    clf.booster_.model_from_string(clf.booster_.model_to_string(num_iteration=best))
    return clf, best, [float(v) for v in curve]


# --------------------------------------------------------------------------------------------------
# the structured price response: level(x) - sensitivity(x) * log price ratio
# --------------------------------------------------------------------------------------------------


def log_price_ratio(X: pd.DataFrame) -> np.ndarray:
    """``log(price / list_sum)`` per row, from the ``discount_pct`` column (``1 - price / list_sum``)."""
    if "discount_pct" not in X.columns:
        raise KeyError("the structured price response needs the price feature 'discount_pct' (1 - price / list_sum)")
    return _log_ratio_of_discount(X["discount_pct"].to_numpy(dtype="float64", na_value=np.nan))


def _log_ratio_of_discount(d: np.ndarray) -> np.ndarray:
    """``log(1 - d)``, and 0 where it is not finite (no price or unknown list price: the reference price,
    no price term)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.log1p(-d)
    return np.where(np.isfinite(out), out, 0.0)


def _global_price_logit(ell: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Intercept and (positive) slope of ``logit P = a - b * ell``: the structured model's start."""
    a, b = _logistic_line(-np.asarray(ell, dtype="float64"), y, start=(0.0, 0.0))  # a + b * (-ell)
    return float(a), float(max(b, 0.5))


@dataclass
class _StructuredFit:
    level: lightgbm.LGBMClassifier
    slope: lightgbm.Booster
    slope_base: float
    ell_ref: float
    best_level: int
    best_slope: int
    curve: list[float]  # the last level fit's validation log loss per tree


def _level_classifier(cfg: ModelConfig, n_trees: int | None = None) -> lightgbm.LGBMClassifier:
    """The level booster: the tree model's parameters without monotone constraints (it sees no price;
    LightGBM 4.7 crashes on an empty constraint list with the 'advanced' method)."""
    fixed = cfg if n_trees is None else cfg.model_copy(update={"n_estimators": int(n_trees)})
    clf = _classifier(fixed, [])
    clf.set_params(monotone_constraints=None, monotone_constraints_method="basic")
    return clf


def _fit_level(cfg: ModelConfig, X: pd.DataFrame, y: np.ndarray, offset: np.ndarray, rows: np.ndarray,
               valid: np.ndarray | None, categorical: Sequence[str], n_trees: int | None = None,
               ) -> lightgbm.LGBMClassifier:
    """The level booster on ``rows`` with the price term as LightGBM ``init_score`` (early-stopped on ``valid``)."""
    clf = _level_classifier(cfg, n_trees)
    kw: dict[str, Any] = {"init_score": offset[rows], "categorical_feature": list(categorical) or "auto"}
    if valid is not None:
        kw.update(eval_X=(X.iloc[valid],), eval_y=(y[valid],), eval_init_score=[offset[valid]], eval_names=["valid"],
                  eval_metric="binary_logloss",
                  callbacks=[lightgbm.early_stopping(cfg.early_stopping_rounds, first_metric_only=True, verbose=False)])
    clf.fit(X.iloc[rows], y[rows], **kw)
    return clf


def _fit_slope(cfg: ModelConfig, X: pd.DataFrame, y: np.ndarray, level: np.ndarray, ell: np.ndarray, base: float,
               rows: np.ndarray, valid: np.ndarray | None, categorical: Sequence[str],
               n_trees: int | None = None) -> lightgbm.Booster:
    """The log sensitivity booster ``g`` with ``log-odds = level - exp(base + g) * ell``, level fixed.

    LightGBM with a custom objective: gradient ``(p - y) * dz/dg`` with ``dz/dg = -exp(base + g) * ell``
    and the Gauss-Newton Hessian ``p (1 - p) (dz/dg)^2``; early stopping on the validation log loss.
    """
    lv, el, yy = level[rows], ell[rows], y[rows].astype("float64")

    def objective(preds: np.ndarray, _data: lightgbm.Dataset) -> tuple[np.ndarray, np.ndarray]:
        dz = -np.exp(np.clip(base + preds, -_SLOPE_CLIP, _SLOPE_CLIP)) * el
        p = expit(lv + dz)
        return (p - yy) * dz, np.maximum(p * (1 - p) * dz * dz, 1e-9)

    params = {
        "objective": objective, "metric": "None", "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves,
        "min_child_samples": cfg.min_child_samples, "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction, "bagging_freq": 1 if cfg.bagging_fraction < 1 else 0,
        "lambda_l2": cfg.lambda_l2, "num_threads": cfg.n_threads, "seed": cfg.seed, "verbose": -1,
    }
    train = lightgbm.Dataset(X.iloc[rows], label=yy, categorical_feature=list(categorical) or "auto",
                             free_raw_data=True)
    if valid is None:
        return lightgbm.train(params, train, num_boost_round=int(n_trees or cfg.n_estimators))
    lv_v, el_v, y_v = level[valid], ell[valid], y[valid].astype("float64")

    def valid_log_loss(preds: np.ndarray, _data: lightgbm.Dataset) -> tuple[str, float, bool]:
        z = lv_v - np.exp(np.clip(base + preds, -_SLOPE_CLIP, _SLOPE_CLIP)) * el_v
        return "log_loss", float(np.mean(np.logaddexp(0.0, z) - y_v * z)), False

    vset = lightgbm.Dataset(X.iloc[valid], label=y_v, reference=train, categorical_feature=list(categorical) or "auto")
    return lightgbm.train(params, train, num_boost_round=cfg.n_estimators, valid_sets=[vset], valid_names=["valid"],
                          feval=valid_log_loss,
                          callbacks=[lightgbm.early_stopping(cfg.early_stopping_rounds, verbose=False)])


def _slope_of(booster: lightgbm.Booster, X: pd.DataFrame, base: float, n_trees: int | None = None) -> np.ndarray:
    g = np.asarray(booster.predict(X, num_iteration=n_trees, raw_score=True), dtype="float64")
    return np.exp(np.clip(base + g, -_SLOPE_CLIP, _SLOPE_CLIP))


def _fit_structured(cfg: ModelConfig, Xc: pd.DataFrame, y: np.ndarray, ell_raw: np.ndarray, tr: np.ndarray,
                    va: np.ndarray, categorical: Sequence[str]) -> _StructuredFit:
    """Alternate the level and sensitivity boosters (``cfg.structured_rounds`` times, then the level once more).

    Start: one global logistic curve in the log price ratio. Each level fit sees the current price term
    as a fixed offset, each sensitivity fit the current level; both are early-stopped on ``va``.
    """
    tr_i, va_i = np.flatnonzero(tr), np.flatnonzero(va)
    ell_ref = float(np.median(ell_raw[tr_i]))
    ell = ell_raw - ell_ref
    _a, b = _global_price_logit(ell[tr_i], y[tr_i].astype("float64"))
    base = math.log(b)
    sens = np.full(len(y), b)
    slope: lightgbm.Booster | None = None
    for _ in range(cfg.structured_rounds):
        level_clf = _fit_level(cfg, Xc, y, -sens * ell, tr_i, va_i, categorical)
        level = np.asarray(level_clf.predict(Xc, raw_score=True), dtype="float64")
        slope = _fit_slope(cfg, Xc, y, level, ell, base, tr_i, va_i, categorical)
        sens = _slope_of(slope, Xc, base, slope.best_iteration or None)
    level_clf = _fit_level(cfg, Xc, y, -sens * ell, tr_i, va_i, categorical)
    assert slope is not None
    return _StructuredFit(
        level=level_clf, slope=slope, slope_base=base, ell_ref=ell_ref,
        best_level=int(level_clf.best_iteration_ or level_clf.n_estimators),
        best_slope=int(slope.best_iteration or slope.current_iteration()),
        curve=list(level_clf.evals_result_.get("valid", {}).get("binary_logloss", [])),
    )


def _refit_structured(cfg: ModelConfig, Xc: pd.DataFrame, y: np.ndarray, ell_raw: np.ndarray, fit: _StructuredFit,
                      categorical: Sequence[str]) -> tuple[lightgbm.LGBMClassifier, lightgbm.Booster]:
    """The split model's tree counts grown on every row: level (price term of the split sensitivity),
    sensitivity (that level), level again (the new sensitivity)."""
    rows = np.arange(len(y))
    ell = ell_raw - fit.ell_ref
    sens = _slope_of(fit.slope, Xc, fit.slope_base, fit.best_slope)
    level_clf = _fit_level(cfg, Xc, y, -sens * ell, rows, None, categorical, fit.best_level)
    level = np.asarray(level_clf.predict(Xc, raw_score=True), dtype="float64")
    slope = _fit_slope(cfg, Xc, y, level, ell, fit.slope_base, rows, None, categorical, fit.best_slope)
    sens = _slope_of(slope, Xc, fit.slope_base)
    level_clf = _fit_level(cfg, Xc, y, -sens * ell, rows, None, categorical, fit.best_level)
    return level_clf, slope


def _price_ranges(X: pd.DataFrame, present: Mapping[str, int], rows: np.ndarray) -> dict[str, dict[str, float]]:
    ranges = {}
    for k in present:
        col = X[k].to_numpy(dtype="float64", na_value=np.nan)[rows]
        q = np.nanquantile(col, [0.0, 0.01, 0.99, 1.0]) if np.isfinite(col).any() else [np.nan] * 4
        ranges[k] = {"min": float(q[0]), "q01": float(q[1]), "q99": float(q[2]), "max": float(q[3])}
    return ranges


def fitted_until_utc(model: Any) -> pd.Timestamp | None:
    """``model.fitted_until`` as a UTC timestamp (naive times are taken as UTC); None when not recorded."""
    until = getattr(model, "fitted_until", None)
    if not until:
        return None
    t = pd.Timestamp(until)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _latest_time(times: Any, rows: np.ndarray) -> str | None:
    """ISO time of the latest of ``times[rows]``, or None when they are not timestamps."""
    t = pd.Series(times).reset_index(drop=True)[rows]
    if not len(t) or not (pd.api.types.is_datetime64_any_dtype(t) or isinstance(t.iloc[0], pd.Timestamp)):
        return None
    return pd.Timestamp(t.max()).isoformat()


def _refit(cfg: ModelConfig, constraints: list[int], X: pd.DataFrame, labels: np.ndarray,
           categorical: Sequence[str], n_trees: int, dask_client: Any | None) -> lightgbm.LGBMClassifier:
    """``n_trees`` trees with the same parameters on every row (locally, or on the Dask cluster)."""
    fixed = cfg.model_copy(update={"n_estimators": int(n_trees)})
    if dask_client is None:
        clf = _classifier(fixed, constraints)
        clf.fit(X, labels, categorical_feature=list(categorical) or "auto")
        return clf
    clf, _best, _curve = _fit_on_dask(dask_client, fixed, constraints, X, labels, X.iloc[:0], labels[:0],
                                      categorical, cut=False)
    return clf


def train_model(
    X: pd.DataFrame,
    y: Any,
    times: Any,
    price_features: Mapping[str, int],
    cfg: ModelConfig,
    categorical: Sequence[str] = (),
    dask_client: Any | None = None,
) -> TrainResult:
    """Time split -> monotone LightGBM with early stopping on validation -> calibration -> metrics.

    ``X``: model matrix (numeric and 'category' columns), ``y``: 0/1 accepted, ``times``: offer time
    per row (aligned with X by position), ``price_features``: price-derived feature -> direction of
    acceptance as it grows (entries not in X are ignored; at least one must be present),
    ``categorical``: numeric columns holding category codes (non-negative integers, NaN = missing /
    unseen) that LightGBM should split as categories; pandas 'category' columns are categorical anyway.
    The model file records the categorical splits, so prediction needs no declaration.
    ``dask_client``: a ``distributed.Client``; when given, the trees are grown by LightGBM's Dask
    interface on the cluster's workers (:func:`_fit_on_dask`, with its note on early stopping) and the
    rest (calibration, metrics, the returned model) is the same as for local training.
    Raises :class:`TrainingDataError` when the offers cannot support a model.
    """
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    check_training_data(y, times, cfg)
    names, categorical, present = _check_matrix(X, price_features, categorical)
    labels = _as_labels(y)
    tr, va, te = time_split(times, cfg.valid_share, cfg.test_share)
    constraints = monotone_vector(names, present)

    X_va, y_va = X.iloc[np.flatnonzero(va)], labels[va]
    structured = cfg.price_response == STRUCTURED
    fit: _StructuredFit | None = None
    if structured:
        if dask_client is not None:
            raise ValueError("training on Dask needs model.price_response: trees (see scaleout.train_on_dask)")
        ctx_names = [c for c in names if c not in present]
        ctx_categorical = [c for c in categorical if c in ctx_names]
        ell_raw = log_price_ratio(X)
        fit = _fit_structured(cfg, X[ctx_names], labels, ell_raw, tr, va, ctx_categorical)
        clf, best, curve_vals = fit.level, fit.best_level, fit.curve
    elif dask_client is None:
        clf = _classifier(cfg, constraints)
        clf.fit(
            X.iloc[np.flatnonzero(tr)],
            labels[tr],
            eval_X=(X_va,),
            eval_y=(y_va,),
            eval_names=["valid"],
            eval_metric="binary_logloss",
            categorical_feature=categorical or "auto",
            callbacks=[lightgbm.early_stopping(cfg.early_stopping_rounds, first_metric_only=True, verbose=False)],
        )
        best = int(clf.best_iteration_ or clf.n_estimators)
        curve_vals = list(clf.evals_result_.get("valid", {}).get("binary_logloss", []))
    else:
        clf, best, curve_vals = _fit_on_dask(
            dask_client, cfg, constraints, X.iloc[np.flatnonzero(tr)], labels[tr], X_va, y_va, categorical
        )
    ranges = _price_ranges(X, present, tr)
    model = AcceptanceModel(
        classifier=clf,
        calibrator=None,
        feature_names=names,
        categorical=categorical,
        price_features=present,
        best_iteration=best,
        price_feature_ranges=ranges,
    )
    if fit is not None:
        model.price_response = STRUCTURED
        model.slope_booster = fit.slope
        model.slope_base = fit.slope_base
        model.slope_best_iteration = fit.best_slope
        model.ell_ref = fit.ell_ref

    X_te, y_te = X.iloc[np.flatnonzero(te)], labels[te]
    raw = {"valid": model.predict_raw(X_va), "test": model.predict_raw(X_te)}
    ys = {"valid": y_va, "test": y_te}
    decision = decide_calibration(raw["valid"], y_va, cfg.calibration, cfg.calibration_bins, seed=cfg.seed,
                                  method="platt" if structured else "isotonic")
    if decision.use_calibrator:
        model.calibrator = CALIBRATORS[decision.method].fit(raw["valid"], y_va)
    final = {k: (v if model.calibrator is None else model.calibrator.transform(v)) for k, v in raw.items()}

    metrics: dict[str, float] = {
        "train_n": float(tr.sum()),
        "best_iteration": float(best),
        "n_estimators_max": float(cfg.n_estimators),
    }
    tables = []
    for split in ("valid", "test"):
        for k, v in evaluate(ys[split], final[split], cfg.calibration_bins).items():
            metrics[f"{split}_{k}"] = v
        for k, v in evaluate(ys[split], raw[split], cfg.calibration_bins).items():
            if k not in ("base_rate", "n"):
                metrics[f"{split}_raw_{k}"] = v
        for stage, p in (("before", raw[split]), ("after", final[split])):
            tab = calibration_table(ys[split], p, cfg.calibration_bins)
            tab.insert(0, "stage", stage)
            tab.insert(0, "split", split)
            tables.append(tab)
    metrics.update(decision.metrics())
    from pricing.feedback import performance  # lazy: feedback builds on this module

    model.holdout_performance = performance(y_te, final["test"]) if len(y_te) else None
    model.fitted_until = _latest_time(times, np.ones(len(X), dtype=bool) if cfg.refit_on_all else tr | va)
    metrics["refit_on_all"] = float(cfg.refit_on_all)
    metrics["price_response_structured"] = float(structured)
    if fit is not None:
        metrics["slope_best_iteration"] = float(fit.best_slope)
    if cfg.refit_on_all:
        # the number of trees and the calibration were chosen on the time split; the published trees are
        # grown on every offer, so the latest ones (after a market shift: the only ones that show it)
        # shape the model. The metrics above describe the split model (the honest out-of-sample ones).
        if fit is not None:
            clf, model.slope_booster = _refit_structured(cfg, X[model.context_features], labels, log_price_ratio(X),
                                                         fit, model.categorical_context)
        else:
            clf = _refit(cfg, constraints, X, labels, categorical, best, dask_client)
        model.classifier = clf
        model.price_feature_ranges = _price_ranges(X, present, np.ones(len(X), dtype=bool))
        metrics["refit_n"] = float(len(X))

    booster = clf.booster_
    imp = {
        "feature": model.context_features,
        "gain": booster.feature_importance(importance_type="gain", iteration=best),
        "split": booster.feature_importance(importance_type="split", iteration=best),
    }
    if model.slope_booster is not None:  # the sensitivity booster's own importance, beside the level's
        it = model.slope_best_iteration or None
        imp["sensitivity_gain"] = model.slope_booster.feature_importance(importance_type="gain", iteration=it)
        imp["sensitivity_split"] = model.slope_booster.feature_importance(importance_type="split", iteration=it)
    importance = (
        pd.DataFrame(imp)
        .sort_values(["gain", "split"], ascending=False, kind="mergesort")
        .reset_index(drop=True)
    )
    curve = pd.DataFrame({"iteration": np.arange(1, len(curve_vals) + 1), "valid_log_loss": curve_vals})
    return TrainResult(
        model=model,
        metrics=metrics,
        splits={"train": tr, "valid": va, "test": te},
        calibration=pd.concat(tables, ignore_index=True),
        feature_importance=importance,
        calibration_decision=decision,
        learning_curve=curve,
    )


# --------------------------------------------------------------------------------------------------
# monotonicity check (tests, and a guard before publishing a model)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonotoneReport:
    """``curves[i, j]``: acceptance of row i at its j-th grid price (prices ascending along j)."""

    prices: np.ndarray
    curves: np.ndarray
    max_rise: float
    worst_row: int

    def ok(self, tol: float = 1e-12) -> bool:
        return self.max_rise <= tol


def check_monotone(
    model: AcceptanceModel,
    X: pd.DataFrame,
    price_col_fn: Callable[[pd.DataFrame, np.ndarray], pd.DataFrame | Mapping[str, Any]],
    grid: Any,
    calibrated: bool = True,
) -> MonotoneReport:
    """Acceptance of each row of ``X`` along a price grid; ``max_rise`` is the largest increase of
    acceptance between consecutive (ascending) grid prices, over all rows (<= 0 when monotone).

    ``price_col_fn(rows, prices)`` returns the price-derived columns for ``rows`` priced at ``prices``
    (one price per row), e.g. a wrapper of ``pricing.features.price_features``. ``grid`` is 1-D (the same
    prices for every row) or 2-D ``(len(X), n_grid)`` (per-row prices, e.g. multiples of list price).
    """
    n = len(X)
    g = np.asarray(grid, dtype="float64")
    prices = np.broadcast_to(g, (n, g.shape[-1])) if g.ndim == 1 else g
    if prices.shape[0] != n:
        raise ValueError(f"grid has {prices.shape[0]} rows for {n} rows of X")
    prices = np.sort(prices, axis=1)
    m = prices.shape[1]
    frames = []
    for j in range(m):
        Xj = X.copy()
        cols = price_col_fn(X, prices[:, j].copy())
        for c, v in cols.items():
            Xj[c] = np.asarray(v)
        frames.append(Xj)
    big = pd.concat(frames, ignore_index=True)
    p = model.predict_proba(big) if calibrated else model.predict_raw(big)
    curves = p.reshape(m, n).T
    rises = np.diff(curves, axis=1) if m > 1 else np.zeros((n, 1))
    worst = int(np.unravel_index(np.argmax(rises), rises.shape)[0]) if rises.size else 0
    return MonotoneReport(
        prices=prices, curves=curves, max_rise=float(rises.max(initial=-np.inf)), worst_row=worst
    )
