"""Figures of the feedback report (matplotlib, Agg canvas; see :mod:`pricing.plots`).

Each function returns the :class:`~matplotlib.figure.Figure` and writes it as PNG when ``path`` is given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import norm

from pricing.plots import _new_figure, _save

__all__ = ["calibration_by_segment_plot", "psi_plot"]

_BAND_LEVEL = 0.95  # error bars: this two-sided level of the binomial standard error under the model


def calibration_by_segment_plot(by_segment: pd.DataFrame, path: str | Path | None = None,
                                title: str = "Realized vs predicted conversion by segment") -> Figure:
    """Predicted conversion (bars) and realized conversion with a 95% band under the model, per segment."""
    fig, ax = _new_figure(max(4.0, 0.9 * len(by_segment) + 2.0), 3.6)
    x = np.arange(len(by_segment))
    pred = by_segment["predicted_conversion"].to_numpy(dtype=float)
    real = by_segment["realized_conversion"].to_numpy(dtype=float)
    half = norm.ppf(0.5 + _BAND_LEVEL / 2) * by_segment["se"].to_numpy(dtype=float)
    ax.bar(x, pred, color="tab:blue", alpha=0.5, label="predicted (model)")
    ax.errorbar(x, real, yerr=half, fmt="o", color="tab:red", capsize=3, label="realized (95% band under the model)")
    ax.set_xticks(x, [f"{s}\n(n={int(n)})" for s, n in zip(by_segment["segment_id"], by_segment["offers"])], fontsize=8)
    ax.set_ylabel("conversion")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def psi_plot(drift: pd.DataFrame, threshold: float, path: str | Path | None = None, top: int = 15,
             title: str = "Feature drift: population stability index") -> Figure:
    """Horizontal bars of the largest PSIs with the trigger threshold."""
    d = drift.head(top).iloc[::-1]
    fig, ax = _new_figure(6.5, max(2.5, 0.3 * len(d) + 1.2))
    colors = np.where(d["psi"].to_numpy(dtype=float) > threshold, "tab:red", "tab:blue")
    ax.barh(np.arange(len(d)), d["psi"].to_numpy(dtype=float), color=colors)
    ax.set_yticks(np.arange(len(d)), d["feature"].tolist(), fontsize=8)
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("PSI (period vs reference window)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)
