"""Scoring the acceptance model along price ladders, and customer segments by predicted price response.

Only the price features change along a ladder (:data:`pricing.features.PRICE_FEATURES`), so the
context of a (customer, bundle) request is computed once and the model matrix is reused for every
rung with just those columns overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pricing.features import PRICE_FEATURES, assemble, context_features, price_features


def pricing_time(tables: dict[str, pd.DataFrame]) -> pd.Timestamp:
    """The moment prices are set for: just after the latest timestamp in the snapshot."""
    latest = []
    for table, col in (("orders", "order_time"), ("events", "event_time"), ("offers", "offer_time")):
        if table in tables and len(tables[table]):
            latest.append(pd.Timestamp(tables[table][col].max()))
    if not latest:
        return pd.Timestamp.now(tz="UTC").floor("s")
    return max(latest) + pd.Timedelta(seconds=1)


def requests_for(customer_ids: Any, bundle_ids: Any, at: pd.Timestamp) -> pd.DataFrame:
    """All (customer, bundle) pairs at time ``at`` (customer-major order)."""
    c = np.asarray(customer_ids)
    b = np.asarray(bundle_ids)
    return pd.DataFrame(
        {
            "customer_id": np.repeat(c, len(b)),
            "bundle_id": np.tile(b, len(c)),
            "time": pd.Series([at] * (len(c) * len(b)), dtype="datetime64[us, UTC]"),
        }
    )


def score_prices(model: Any, builder: Any, ctx: pd.DataFrame, prices: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    """Acceptance for every context row at each of its candidate prices.

    ``prices``: ``[n_rows, n_prices]`` (NaN = no candidate; scored as NaN). Returns the same shape.
    Works in chunks of rows so memory stays bounded.
    """
    prices = np.asarray(prices, dtype=np.float64)
    if prices.ndim == 1:
        prices = prices[:, None]
    n, L = prices.shape
    if n != len(ctx):
        raise ValueError(f"prices has {n} rows for {len(ctx)} contexts")
    out = np.full((n, L), np.nan)
    cols = list(PRICE_FEATURES)
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        c = ctx.iloc[sl]
        first = np.where(np.isfinite(prices[sl]), prices[sl], np.nan)
        fill = np.nanmax(np.where(np.isfinite(first), first, -np.inf), axis=1)
        fill = np.where(np.isfinite(fill), fill, c["list_sum"].to_numpy(dtype=np.float64))
        X = assemble(c, price_features(c, fill), builder)
        for j in range(L):
            pj = prices[sl, j]
            ok = np.isfinite(pj)
            if not ok.any():
                continue
            pf = price_features(c, np.where(ok, pj, fill))
            for col in cols:
                X[col] = pf[col].to_numpy(dtype=np.float32)
            p = model.predict_proba(X)
            out[sl, j] = np.where(ok, p, np.nan)
    return out


@dataclass
class Segmentation:
    segments: pd.DataFrame  # customer_id, segment_id, level, slope
    centers: pd.DataFrame  # segment_id, level, slope, size
    reference_bundles: list[str]


def customer_price_response(
    model: Any,
    builder: Any,
    tables: dict[str, pd.DataFrame],
    customer_ids: Any,
    reference_bundles: list[str],
    at: pd.Timestamp,
    discounts: tuple[float, float] = (0.3, 0.0),
) -> pd.DataFrame:
    """Per customer: predicted acceptance level (mean log-odds) and price slope (d log-odds / d log price),
    averaged over reference bundles at two prices (list price x (1 - discount))."""
    req = requests_for(customer_ids, reference_bundles, at)
    ctx = context_features(builder, tables, req)
    ls = ctx["list_sum"].to_numpy(dtype=np.float64)
    prices = np.stack([ls * (1 - d) for d in discounts], axis=1)
    p = np.clip(score_prices(model, builder, ctx, prices), 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))
    dlogp = np.log(1 - discounts[1]) - np.log(1 - discounts[0])
    frame = pd.DataFrame(
        {
            "customer_id": req["customer_id"].to_numpy(),
            "level": logit.mean(axis=1),
            "slope": (logit[:, 1] - logit[:, 0]) / dlogp,
        }
    )
    return frame.groupby("customer_id", sort=False, as_index=False).mean()


def segment_customers(response: pd.DataFrame, k: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """K segments by predicted price response (k-means on standardized level and slope).

    Segment ids ``S1..Sk`` are ordered from the most to the least price-sensitive (steepest slope first),
    so they read the same across runs.
    """
    from sklearn.cluster import KMeans

    feats = response[["level", "slope"]].to_numpy(dtype=np.float64)
    k = max(1, min(k, len(np.unique(feats.round(6), axis=0))))
    mu, sd = feats.mean(axis=0), feats.std(axis=0)
    z = (feats - mu) / np.where(sd > 0, sd, 1.0)
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z)
    labels = km.labels_
    centers = pd.DataFrame({"label": np.arange(k)})
    centers["level"] = [feats[labels == i, 0].mean() for i in range(k)]
    centers["slope"] = [feats[labels == i, 1].mean() for i in range(k)]
    centers["size"] = np.bincount(labels, minlength=k)
    centers = centers.sort_values("slope").reset_index(drop=True)
    centers["segment_id"] = [f"S{i + 1}" for i in range(k)]
    mapping = dict(zip(centers["label"], centers["segment_id"]))
    seg = response[["customer_id"]].copy()
    seg["segment_id"] = [mapping[x] for x in labels]
    seg["level"] = feats[:, 0]
    seg["slope"] = feats[:, 1]
    return seg, centers.drop(columns="label")[["segment_id", "level", "slope", "size"]]
