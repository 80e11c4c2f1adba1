"""Model report figures (matplotlib, Agg canvas; no pyplot state, safe in worker threads).

Every function returns the :class:`~matplotlib.figure.Figure` and, when ``path`` is given, also writes
it there as PNG (parent folders are created).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["demand_curves_plot", "feature_importance_plot", "promotion_review_plot", "reliability_plot"]

_DPI = 110


def _new_figure(width: float, height: float, ncols: int = 1, **kw) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, **kw)
    return fig, axes


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, format="png")
    return fig


def reliability_plot(
    cal_table_before: pd.DataFrame,
    cal_table_after: pd.DataFrame | None,
    path: str | Path | None = None,
    title: str = "Reliability (test split)",
) -> Figure:
    """Observed acceptance rate vs mean predicted probability per bin, before and after calibration.

    Tables as from :func:`pricing.model.calibration_table` (``mean_predicted, observed_rate, count``);
    marker area grows with the bin's count. The lower panel shows the offers per bin.
    """
    fig = Figure(figsize=(6.0, 6.4), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    tables = [("before calibration", cal_table_before, "tab:red", "o")]
    if cal_table_after is not None:
        tables.append(("after calibration", cal_table_after, "tab:blue", "s"))
    hi = 0.0
    for label, tab, color, marker in tables:
        if tab is None or len(tab) == 0:
            continue
        x = tab["mean_predicted"].to_numpy(dtype=float)
        obs = tab["observed_rate"].to_numpy(dtype=float)
        cnt = tab["count"].to_numpy(dtype=float)
        n = cnt.sum()
        ece = float(np.sum(cnt / n * np.abs(x - obs))) if n else float("nan")
        size = 20 + 180 * cnt / max(cnt.max(), 1)
        ax.plot(x, obs, color=color, lw=1, alpha=0.7)
        ax.scatter(x, obs, s=size, color=color, marker=marker, alpha=0.8, label=f"{label} (ECE {ece:.3f})")
        ax_n.vlines(x, 0, cnt, color=color, lw=4, alpha=0.6)
        hi = max(hi, float(np.nanmax(x)), float(np.nanmax(obs)))
    hi = min(1.0, hi * 1.05 + 0.01) if hi > 0 else 1.0
    ax.plot([0, hi], [0, hi], ls="--", color="grey", lw=1, label="perfectly calibrated")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_ylabel("observed acceptance rate")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    ax_n.set_xlabel("mean predicted acceptance")
    ax_n.set_ylabel("offers")
    ax_n.grid(alpha=0.3)
    return _save(fig, path)


def demand_curves_plot(
    curves: pd.DataFrame,
    path: str | Path | None = None,
    title: str = "Acceptance vs price",
    max_groups: int = 12,
) -> Figure:
    """One line per ``group``: model acceptance ``p_model`` against ``price`` (solid) and, when the
    frame has a ``p_true`` column (simulated truth), the true acceptance (dashed, same colour).
    At most ``max_groups`` groups are drawn (the first ones in order of appearance)."""
    missing = {"group", "price", "p_model"} - set(curves.columns)
    if missing:
        raise KeyError(f"demand_curves_plot needs columns group, price, p_model; missing {sorted(missing)}")
    fig, ax = _new_figure(7.0, 4.8)
    groups = list(pd.unique(curves["group"]))[:max_groups]
    has_true = "p_true" in curves.columns
    colors = [f"C{i % 10}" for i in range(len(groups))]
    for g, color in zip(groups, colors, strict=True):
        d = curves[curves["group"] == g].sort_values("price")
        ax.plot(d["price"], d["p_model"], color=color, lw=1.8, label=str(g))
        if has_true and d["p_true"].notna().any():
            ax.plot(d["price"], d["p_true"], color=color, lw=1.2, ls="--")
    if has_true:
        ax.plot([], [], color="black", ls="--", lw=1.2, label="true (dashed)")
    ax.set_xlabel("price")
    ax.set_ylabel("P(accept)")
    ax.set_ylim(0, None)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(groups) <= 12:
        ax.legend(fontsize=7, ncols=2 if len(groups) > 6 else 1, loc="best")
    return _save(fig, path)


def feature_importance_plot(df: pd.DataFrame, path: str | Path | None = None, top: int = 20) -> Figure:
    """Horizontal bars of the ``top`` features by ``gain`` (share of total gain), with the ``split``
    counts beside them when present. ``df``: ``feature, gain[, split]`` as in ``TrainResult``."""
    if "feature" not in df.columns or "gain" not in df.columns:
        raise KeyError("feature_importance_plot needs columns feature and gain")
    d = df.sort_values("gain", ascending=False, kind="mergesort").head(top).iloc[::-1]
    total = float(df["gain"].sum()) or 1.0
    has_split = "split" in d.columns
    fig, axes = _new_figure(
        9.0 if has_split else 6.5, 0.6 + 0.28 * max(len(d), 1), ncols=2 if has_split else 1, sharey=True
    )
    ax = axes[0] if has_split else axes
    y = np.arange(len(d))
    ax.barh(y, d["gain"].to_numpy(dtype=float) / total, color="tab:blue")
    ax.set_yticks(y, d["feature"].astype(str).tolist(), fontsize=8)
    ax.set_xlabel("share of total gain")
    ax.set_title(f"Feature importance (top {len(d)})")
    ax.grid(axis="x", alpha=0.3)
    if has_split:
        axes[1].barh(y, d["split"].to_numpy(dtype=float), color="tab:grey")
        axes[1].set_xlabel("splits")
        axes[1].grid(axis="x", alpha=0.3)
    return _save(fig, path)


def promotion_review_plot(
    calibration: dict[str, pd.DataFrame],
    price_rel: dict[str, np.ndarray],
    path: str | Path | None = None,
    title: str = "Promotion review",
) -> Figure:
    """Left: reliability of each model on the holdout (observed vs mean predicted per bin; marker area
    grows with the bin's count). Right: distribution of the price each policy chose (price / list).

    ``calibration``: label -> table as from :func:`pricing.model.calibration_table`;
    ``price_rel``: label -> chosen price / list price per request.
    """
    fig, (ax, ax_p) = _new_figure(11.0, 4.6, ncols=2)
    colors = ("tab:grey", "tab:blue", "tab:green", "tab:orange")
    hi = 0.0
    for (label, tab), color in zip(calibration.items(), colors, strict=False):
        if tab is None or len(tab) == 0:
            continue
        x = tab["mean_predicted"].to_numpy(dtype=float)
        obs = tab["observed_rate"].to_numpy(dtype=float)
        cnt = tab["count"].to_numpy(dtype=float)
        ece = float(np.sum(cnt / cnt.sum() * np.abs(x - obs)))
        ax.plot(x, obs, color=color, lw=1, alpha=0.7)
        ax.scatter(x, obs, s=20 + 180 * cnt / max(cnt.max(), 1), color=color, alpha=0.8, label=f"{label} (ECE {ece:.3f})")
        hi = max(hi, float(np.nanmax(x)), float(np.nanmax(obs)))
    hi = min(1.0, hi * 1.05 + 0.01) if hi > 0 else 1.0
    ax.plot([0, hi], [0, hi], ls="--", color="grey", lw=1, label="perfectly calibrated")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel("mean predicted acceptance")
    ax.set_ylabel("observed acceptance rate")
    ax.set_title(f"{title}: reliability on the holdout")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    values = [np.asarray(v, dtype=float) for v in price_rel.values() if len(v)]
    if values:
        lo = min(float(np.nanmin(v)) for v in values)
        top = max(float(np.nanmax(v)) for v in values)
        bins = np.linspace(lo, top if top > lo else lo + 1e-3, 26)
        for (label, v), color in zip(price_rel.items(), colors, strict=False):
            ax_p.hist(np.asarray(v, dtype=float), bins=bins, histtype="step", lw=1.5, color=color,
                      label=f"{label} (mean {np.nanmean(v):.3f})")
    ax_p.set_xlabel("chosen price / list price")
    ax_p.set_ylabel("requests")
    ax_p.set_title("Prices each policy chose")
    ax_p.legend(fontsize=8)
    ax_p.grid(alpha=0.3)
    return _save(fig, path)
