"""Scoring the acceptance model along price ladders, and customer segments by predicted price response.

Only the price features change along a ladder (:data:`pricing.features.PRICE_FEATURES`), so the
context of a (customer, bundle) request is computed once and the model matrix is reused for every
rung with just those columns overwritten. A structured model (``model.price_response: structured``)
goes further: its boosters see no price, so they run once per row and only the price term is
evaluated per rung (:meth:`pricing.model.AcceptanceModel.predict_proba_at_discounts`).
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
    structured = bool(getattr(model, "structured", False))
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        c = ctx.iloc[sl]
        first = np.where(np.isfinite(prices[sl]), prices[sl], np.nan)
        fill = np.nanmax(np.where(np.isfinite(first), first, -np.inf), axis=1)
        fill = np.where(np.isfinite(fill), fill, c["list_sum"].to_numpy(dtype=np.float64))
        X = assemble(c, price_features(c, fill), builder)
        if structured:
            # only the price term changes along the ladder: the boosters run once per row. The discount
            # goes through float32 as in the model matrix, so the result equals the per-rung path.
            with np.errstate(invalid="ignore", divide="ignore"):
                disc = (1.0 - first / c["list_sum"].to_numpy(dtype=np.float64)[:, None]).astype(np.float32)
            out[sl] = model.predict_proba_at_discounts(X, disc.astype(np.float64))
            continue
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
    ladder: np.ndarray | None = None,
    cost: np.ndarray | None = None,
    scorer: Any = None,
) -> pd.DataFrame:
    """Per customer: predicted acceptance level (mean log-odds) and price slope (d log-odds / d log price),
    averaged over reference bundles at two prices (list price x (1 - discount)).

    With ``ladder [R, L]`` (the reference bundles' allowed prices, NaN = not allowed) and ``cost [R]``,
    also the customer's **price profile**: columns ``best_1 .. best_R``, the price of each reference
    bundle that maximizes the model's expected profit for this customer, as a share of its list price
    (what the segments are built on by default, :func:`segment_customers`).
    """
    score = scorer or score_prices
    req = requests_for(customer_ids, reference_bundles, at)
    ctx = context_features(builder, tables, req)
    ls = ctx["list_sum"].to_numpy(dtype=np.float64)
    prices = np.stack([ls * (1 - d) for d in discounts], axis=1)
    R = len(reference_bundles)
    grid = None
    if ladder is not None:
        lad = np.asarray(ladder, dtype=np.float64)
        if lad.shape[0] != R or np.shape(cost) != (R,):
            raise ValueError(f"ladder must be [{R}, L] and cost [{R}] for {R} reference bundles")
        grid = np.tile(lad, (len(req) // R, 1))  # requests are customer-major: customer i's rows are i*R .. i*R+R-1
        # one scoring pass for the two slope prices and the ladder (each column is scored on its own)
        both = score(model, builder, ctx, np.hstack([prices, grid]))
        scored, acc = both[:, : len(discounts)], both[:, len(discounts) :]
    else:
        scored = score(model, builder, ctx, prices)
    p = np.clip(scored, 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))
    dlogp = np.log(1 - discounts[1]) - np.log(1 - discounts[0])
    frame = pd.DataFrame(
        {
            "customer_id": req["customer_id"].to_numpy(),
            "level": logit.mean(axis=1),
            "slope": (logit[:, 1] - logit[:, 0]) / dlogp,
        }
    )
    out = frame.groupby("customer_id", sort=False, as_index=False).mean()
    if grid is None:
        return out
    n_c = len(req) // R
    c = np.asarray(cost, dtype=np.float64)
    profit = np.where(np.isfinite(grid) & np.isfinite(acc), acc * (grid - np.tile(c, n_c)[:, None]), -np.inf)
    best = grid[np.arange(len(grid)), profit.argmax(axis=1)] / ls
    best = best.reshape(n_c, R)
    for j in range(R):
        out[f"best_{j + 1}"] = best[:, j]
    return out


def segment_customers(response: pd.DataFrame, k: int, seed: int = 0,
                      on: str = "price_profile") -> tuple[pd.DataFrame, pd.DataFrame]:
    """K segments by predicted price response: k-means (scikit-learn) on

    * ``on="price_profile"`` (default, needs the ``best_*`` columns of :func:`customer_price_response`):
      each customer's profit-maximizing price of the reference bundles, as shares of their list prices.
      Customers whose best prices are close share a segment, so one price per segment loses little
      profit on any of them (distances are in list-price shares, no standardization);
    * ``on="response"``: standardized level and slope (the two numbers summarize the demand curve but
      weigh a level difference like a slope difference, which the profit does not).

    Segment ids ``S1..Sk`` are ordered from the most to the least price-sensitive (steepest slope first),
    so they read the same across runs. Centres report level, slope, size (and the mean best price
    share with a profile).
    """
    from sklearn.cluster import KMeans

    prof_cols = [c for c in response.columns if c.startswith("best_")]
    if on == "price_profile":
        if not prof_cols:
            raise ValueError("segments on the price profile need customer_price_response(..., ladder=, cost=)")
        feats = response[prof_cols].to_numpy(dtype=np.float64)
        z = feats
    elif on == "response":
        feats = response[["level", "slope"]].to_numpy(dtype=np.float64)
        mu, sd = feats.mean(axis=0), feats.std(axis=0)
        z = (feats - mu) / np.where(sd > 0, sd, 1.0)
    else:
        raise ValueError(f"unknown segmentation {on!r} (price_profile | response)")
    k = max(1, min(k, len(np.unique(z.round(6), axis=0))))
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z)
    labels = km.labels_
    lv = response["level"].to_numpy(dtype=np.float64)
    sl = response["slope"].to_numpy(dtype=np.float64)
    centers = pd.DataFrame({"label": np.arange(k)})
    centers["level"] = [lv[labels == i].mean() for i in range(k)]
    centers["slope"] = [sl[labels == i].mean() for i in range(k)]
    if prof_cols:
        best = response[prof_cols].to_numpy(dtype=np.float64).mean(axis=1)
        centers["best_price_share"] = [best[labels == i].mean() for i in range(k)]
    centers["size"] = np.bincount(labels, minlength=k)
    centers = centers.sort_values("slope", kind="mergesort").reset_index(drop=True)
    centers["segment_id"] = [f"S{i + 1}" for i in range(k)]
    mapping = dict(zip(centers["label"], centers["segment_id"]))
    seg = response[["customer_id"]].copy()
    seg["segment_id"] = [mapping[x] for x in labels]
    seg["level"] = lv
    seg["slope"] = sl
    cols = ["segment_id", "level", "slope", *(["best_price_share"] if prof_cols else []), "size"]
    return seg, centers.drop(columns="label")[cols]
