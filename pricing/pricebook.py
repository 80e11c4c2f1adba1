"""The price book: segment and personal bundle prices from the acceptance model, under the rules.

    catalog sums -> ladder (rules) -> customer segments by predicted price response
    -> segment acceptance along the ladder (sampled customers; uncertainty band) -> segment MILP
    -> explanations (LightGBM contributions) -> personal candidates and band rungs -> Lagrangian
    personal prices -> rule re-check -> files (atomic)

With no offers log there is no model: :func:`exploration_price_book` gives randomized prices within
the rules (a price experiment) so the next round has data.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from pricing.config import Config
from pricing.contract import BUNDLE_ITEM_SEP
from pricing.features import assemble, context_features, price_features
from pricing.ladder import build_ladder
from pricing.optimize import (
    CustomerProblem,
    SegmentProblem,
    check_customer_rules,
    check_segment_rules,
    customer_rungs,
    solve_customer_prices,
    solve_segment_prices,
)
from pricing.scoring import (
    customer_price_response,
    pricing_time,
    requests_for,
    score_prices,
    segment_customers,
)

FILES = ("bundle_prices.csv", "customer_segments.csv", "customer_offers.csv", "manifest.json")


@dataclass
class Catalog:
    bundle_ids: list[str]
    list_sum: np.ndarray  # [B]
    cost_sum: np.ndarray  # [B]
    items: sparse.csr_matrix  # [B, P] units of each product
    product_ids: list[str]
    inventory: np.ndarray  # [P], inf = unlimited


def catalog(tables: dict[str, pd.DataFrame]) -> Catalog:
    products = tables["products"].drop_duplicates("product_id").reset_index(drop=True)
    pid = pd.Index(products["product_id"].astype(str))
    bundles = tables["bundles"].drop_duplicates("bundle_id").reset_index(drop=True)
    items = bundles["product_ids"].astype(str).str.split(BUNDLE_ITEM_SEP)
    rows = np.repeat(np.arange(len(bundles)), items.map(len).to_numpy())
    flat = np.concatenate(items.to_numpy()) if len(items) else np.array([], dtype=str)
    cols = pid.get_indexer(pd.Index([x.strip() for x in flat]))
    if (cols < 0).any():
        raise ValueError("bundles reference products missing from the catalog (ingestion should have caught this)")
    inc = sparse.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(bundles), len(pid)))
    lp = products["list_price"].to_numpy(dtype=np.float64)
    uc = products["unit_cost"].to_numpy(dtype=np.float64)
    inv = (
        products["inventory"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.inf)
        if "inventory" in products
        else np.full(len(pid), np.inf)
    )
    return Catalog(
        bundle_ids=bundles["bundle_id"].astype(str).tolist(),
        list_sum=np.asarray(inc @ lp).ravel(),
        cost_sum=np.asarray(inc @ uc).ravel(),
        items=inc,
        product_ids=pid.tolist(),
        inventory=inv,
    )


@dataclass
class PriceBook:
    bundle_prices: pd.DataFrame
    customer_segments: pd.DataFrame
    customer_offers: pd.DataFrame
    manifest: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)  # solver tables for reports (not written)

    def write(self, out_dir: str | Path) -> Path:
        """Write the four files atomically: a crash leaves the previous price book intact."""
        return write_price_book(self, out_dir)


def offers_rate(tables: dict[str, pd.DataFrame], cat: Catalog, n_customers: int, period_days: int,
                window_days: int | None = None) -> np.ndarray:
    """Expected offers of each bundle per customer in a period of ``period_days``, from the recent offers log.

    Counted over the latest ``window_days`` (default ``period_days``) of the log, or the whole log when
    it is shorter, and scaled to the period: a longer window steadies the estimate for rarely shown
    bundles (their inventory and budget usage rests on it).
    """
    offers = tables.get("offers")
    if offers is None or not len(offers):
        return np.full(len(cat.bundle_ids), 1.0 / max(len(cat.bundle_ids), 1))
    end = offers["offer_time"].max()
    window = pd.Timedelta(days=window_days or period_days)
    covered = min(window, end - offers["offer_time"].min())
    covered_days = max(covered / pd.Timedelta(days=1), 1.0)
    recent = offers[offers["offer_time"] > end - window]
    counts = recent["bundle_id"].astype(str).value_counts().reindex(cat.bundle_ids, fill_value=0).to_numpy()
    rate = counts / max(n_customers, 1) * (period_days / covered_days)
    floor = max(rate[rate > 0].min() if (rate > 0).any() else 1.0 / max(n_customers, 1), 1e-9)
    return np.where(rate > 0, rate, floor)


@dataclass
class CustomerExposure:
    """How likely each customer is to be shown each bundle in the next period (relative units).

    Shops show bundles of the categories a customer is interested in, and active customers see more
    offers, so ``exposure[c, b] = activity[c] * sum_k theta[c, k] * [b holds category k] / n_bundles(k)``:
    ``theta`` the customer's category shares of their product views, orders and past offers, shrunk
    towards the shares of the whole shop by ``prior`` pseudo-events; ``activity`` the customer's past
    offers relative to the average customer's, shrunk the same way (1 without an offers log).
    Build with :meth:`from_tables`; :meth:`rows` gives a block ``[len(idx), B]``.
    """

    M: sparse.csr_matrix  # [n_cat, B]: category -> bundle share
    counts: sparse.csr_matrix  # [C, n_cat] interest counts
    shop_shares: np.ndarray  # [n_cat]
    activity: np.ndarray  # [C]
    prior: float

    @classmethod
    def from_tables(cls, tables: dict[str, pd.DataFrame], cat: Catalog, customer_ids: np.ndarray,
                    prior: float = 5.0) -> CustomerExposure:
        B = len(cat.bundle_ids)
        products = tables["products"].drop_duplicates("product_id")
        pcat = pd.Index(cat.product_ids).get_indexer(products["product_id"].astype(str))
        categories = pd.Index(sorted(products["category"].astype(str).unique()))
        prod_cat = np.full(len(cat.product_ids), -1)
        prod_cat[pcat[pcat >= 0]] = categories.get_indexer(products["category"].astype(str))[pcat >= 0]
        n_cat = len(categories)
        # bundle x category incidence, each column normalised by the bundles holding the category
        bi, pi = cat.items.nonzero()
        inc = sparse.csr_matrix((np.ones(len(bi)), (bi, prod_cat[pi])), shape=(B, n_cat))
        inc.sum_duplicates()
        inc.data[:] = 1.0  # a bundle holds a category or not
        per_cat = np.asarray(inc.sum(axis=0)).ravel()
        M = (inc @ sparse.diags(1.0 / np.maximum(per_cat, 1.0))).T.tocsr()  # [n_cat, B]
        # customer x category interest counts: views/carts (events), order lines, past offers
        cidx = pd.Index(customer_ids)
        C = len(customer_ids)
        rows, cols = [], []
        events = tables.get("events")
        if events is not None and len(events) and "product_id" in events.columns:
            ev = events[events["product_id"].notna()]
            rows.append(cidx.get_indexer(ev["customer_id"].astype(str)))
            p = pd.Index(cat.product_ids).get_indexer(ev["product_id"].astype(str))
            cols.append(np.where(p >= 0, prod_cat[np.maximum(p, 0)], -1))
        orders = tables.get("orders")
        if orders is not None and len(orders):
            rows.append(cidx.get_indexer(orders["customer_id"].astype(str)))
            p = pd.Index(cat.product_ids).get_indexer(orders["product_id"].astype(str))
            cols.append(np.where(p >= 0, prod_cat[np.maximum(p, 0)], -1))
        activity = np.ones(C)
        offers = tables.get("offers")
        if offers is not None and len(offers):
            ob = pd.Index(cat.bundle_ids).get_indexer(offers["bundle_id"].astype(str))
            oc = cidx.get_indexer(offers["customer_id"].astype(str))
            ok = (ob >= 0) & (oc >= 0)
            bc = inc[ob[ok]].tocoo()  # one count per category of the offered bundle
            rows.append(oc[ok][bc.row])
            cols.append(bc.col)
            n_off = np.bincount(oc[ok], minlength=C).astype(np.float64)
            mean = n_off.mean() if C else 0.0
            if mean > 0:
                activity = (n_off + prior) / (mean + prior)
        if rows:
            r, c = np.concatenate(rows), np.concatenate(cols)
            good = (r >= 0) & (c >= 0)
            counts = sparse.csr_matrix((np.ones(int(good.sum())), (r[good], c[good])), shape=(C, n_cat))
        else:
            counts = sparse.csr_matrix((C, n_cat))
        total = np.asarray(counts.sum(axis=0)).ravel()
        g = total / total.sum() if total.sum() > 0 else np.full(n_cat, 1.0 / max(n_cat, 1))
        return cls(M=M, counts=counts, shop_shares=g, activity=activity, prior=float(prior))

    @property
    def n_bundles(self) -> int:
        return int(self.M.shape[1])

    def rows(self, idx: np.ndarray | slice, activity: bool = True) -> np.ndarray:
        """Exposure of customers ``idx`` (positions in ``customer_ids``) to every bundle, ``[n, B]``;
        ``activity=False``: the category part only (the bundle mix of one offer to the customer)."""
        cnt = self.counts[idx]
        n_c = np.asarray(cnt.sum(axis=1)).ravel()
        theta = (cnt.toarray() + self.prior * self.shop_shares[None, :]) / (n_c[:, None] + self.prior)
        out = np.asarray(self.M.T @ theta.T).T
        return out * self.activity[idx][:, None] if activity else out

    def expected_offers(self, rate: np.ndarray, bundles: np.ndarray, chunk: int = 20_000) -> np.ndarray:
        """Expected offers of bundle ``bundles[c, k]`` to customer ``c`` in the period, ``[C, K]`` float32.

        ``rate [B]``: offers of each bundle per customer in the period (:func:`offers_rate`). A bundle's
        offers are shared among the customers in proportion to their exposure to it,
        ``rate[b] * C * exposure[c, b] / sum_c' exposure[c', b]``, so the inventory and budget a personal
        price book uses follow who is likely shown what (docs/pricing.md measures the difference).
        """
        C = self.counts.shape[0]
        B = self.n_bundles
        rate = np.asarray(rate, dtype=np.float64).reshape(B)
        bundles = np.asarray(bundles)
        total = np.zeros(B)
        for start in range(0, C, chunk):
            total += self.rows(slice(start, min(start + chunk, C))).sum(axis=0)
        scale = np.where(total > 0, rate * C / np.where(total > 0, total, 1.0), rate)
        out = np.empty(bundles.shape, dtype=np.float32)
        for start in range(0, C, chunk):
            sl = slice(start, min(start + chunk, C))
            b = np.maximum(bundles[sl], 0)
            e = np.take_along_axis(self.rows(sl), b, axis=1) if total.any() else np.ones(b.shape)
            out[sl] = np.where(bundles[sl] >= 0, e * scale[b], 0.0)
        return out

    def segment_means(self, segment_index: np.ndarray, n_segments: int, chunk: int = 50_000) -> np.ndarray:
        """Mean exposure of each segment's customers to each bundle, ``[S, B]``."""
        C = len(segment_index)
        tot = np.zeros((n_segments, self.n_bundles))
        for start in range(0, C, chunk):
            sl = slice(start, min(start + chunk, C))
            np.add.at(tot, segment_index[sl], self.rows(sl))
        return tot / np.maximum(np.bincount(segment_index, minlength=n_segments), 1)[:, None]


def customer_exposure_candidates(
    tables: dict[str, pd.DataFrame],
    cat: Catalog,
    customer_ids: np.ndarray,
    value: np.ndarray,
    segment_index: np.ndarray,
    k: int,
    prior: float = 5.0,
    chunk: int = 50_000,
    exposure: CustomerExposure | None = None,
) -> np.ndarray:
    """Per customer, the ``k`` bundles with the most profit at stake: exposure x segment profit.

    A customer's exposure to a bundle (:class:`CustomerExposure`, its category part) estimates how
    likely an offer to them is of that bundle. ``value [S, B]`` (expected profit of an offer of each
    bundle in each segment) weighs it; ``segment_index [C]``. Returns bundle indices ``[C, k]``
    (int32, best first), computed in chunks of customers so memory stays bounded.
    """
    exp = exposure or CustomerExposure.from_tables(tables, cat, customer_ids, prior)
    B = exp.n_bundles
    k = min(k, B)
    C = len(customer_ids)
    value = np.maximum(np.nan_to_num(np.asarray(value, dtype=np.float64), nan=0.0), 0.0)
    out = np.empty((C, k), dtype=np.int32)
    for start in range(0, C, chunk):
        sl = slice(start, min(start + chunk, C))
        score = exp.rows(sl, activity=False) * value[segment_index[sl]]  # [c, B]
        top = np.argpartition(-score, k - 1, axis=1)[:, :k] if k < B else np.tile(np.arange(B), (score.shape[0], 1))
        order = np.argsort(-np.take_along_axis(score, top, 1), axis=1, kind="stable")
        out[sl] = np.take_along_axis(top, order, 1)
    return out


def _weighted_mean_se(p: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (bundle, rung): the ``w``-weighted mean of ``p [n, B, L]`` over its customers (weights
    ``w [n, B]``; NaN rungs skipped) and its standard error (Kish's effective sample size)."""
    ok = np.isfinite(p)
    ww = np.where(ok, w[:, :, None], 0.0)
    tot = ww.sum(axis=0)
    safe = np.where(tot > 0, tot, 1.0)
    mean = (np.where(ok, p, 0.0) * ww).sum(axis=0) / safe
    var = (ww * (np.where(ok, p, 0.0) - mean[None]) ** 2).sum(axis=0) / safe
    n_eff = tot**2 / np.maximum((ww**2).sum(axis=0), 1e-300)
    se = np.sqrt(var / np.maximum(n_eff, 1.0))
    return np.where(tot > 0, mean, np.nan), np.where(tot > 0, se, 0.0)


def model_error_by_level(model: Any, X: pd.DataFrame, y: np.ndarray, n_bins: int = 10) -> Callable[[np.ndarray], np.ndarray]:
    """Calibration error of the model on recent offers, as a function of the predicted level.

    Per quantile bin of the prediction: |observed rate - mean prediction| plus the binomial standard
    error of the observed rate. Used as the model part of the acceptance uncertainty band.
    """
    p = model.predict_proba(X)
    if len(p) < 50:
        return lambda q: np.full(np.shape(q), 0.02)
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    err = np.zeros(len(edges) - 1)
    for i in range(len(edges) - 1):
        m = idx == i
        if m.sum() == 0:
            continue
        obs, pred = y[m].mean(), p[m].mean()
        err[i] = abs(obs - pred) + np.sqrt(max(obs * (1 - obs), 1e-6) / m.sum())
    centers = 0.5 * (edges[:-1] + edges[1:])

    def f(q: np.ndarray) -> np.ndarray:
        return np.interp(q, centers, err)

    return f


def _recent_holdout(tables, model, builder, n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray] | None:
    from pricing.features import offer_training_frame

    offers = tables.get("offers")
    if offers is None or len(offers) < 100:
        return None
    recent = offers.sort_values("offer_time").tail(n)
    X, y, _t, _ids = offer_training_frame(builder, tables, recent.reset_index(drop=True))
    return X, y.astype(np.float64)


def _top_drivers(model, builder, ctx: pd.DataFrame, price: np.ndarray, k: int) -> list[str]:
    """Top-k features by |contribution| to the log-odds at the chosen price, with their sign."""
    X = assemble(ctx, price_features(ctx, price), builder)
    contrib = model.contributions(X).drop(columns="bias")
    out = []
    vals = contrib.to_numpy()
    names = np.asarray(contrib.columns)
    for row in vals:
        order = np.argsort(-np.abs(row))[:k]
        out.append("; ".join(f"{names[j]} {'+' if row[j] >= 0 else '-'}{abs(row[j]):.2f}" for j in order))
    return out


def segment_sample_size(per_segment: int, budget: int, n_segments: int, n_bundles: int) -> int:
    """Customers sampled per segment: ``per_segment``, fewer when the requests (segments x bundles x sample)
    would exceed ``budget`` (a 2,000-bundle shop scores 12 x 2,000 x 100 = 2.4M requests x 21 rungs
    otherwise: 580 s at bench size), never fewer than 10."""
    cap = budget // max(n_segments * n_bundles, 1)
    return max(min(per_segment, cap), min(per_segment, 10))


def build_price_book(
    tables: dict[str, pd.DataFrame],
    model: Any,
    builder: Any,
    config: Config,
    current: PriceBook | None = None,
    progress: Callable[[str], None] | None = None,
    scorer: Callable[..., np.ndarray] | None = None,
) -> PriceBook:
    """Segment and personal prices from the model (see the module docstring).

    ``scorer``: replaces :func:`pricing.scoring.score_prices` (same signature ``(model, builder, ctx,
    prices) -> acceptance``), e.g. to fan the scoring out over a Dask cluster; results must be equal.
    """
    say = progress or (lambda _m: None)
    score = scorer or score_prices
    pb = config.pricebook
    opt = config.optimize
    rng = np.random.default_rng(pb.seed)
    t_all = time.perf_counter()
    at = pricing_time(tables)
    cat = catalog(tables)
    B = len(cat.bundle_ids)
    customers = tables["customers"]["customer_id"].astype(str).drop_duplicates().to_numpy()
    C = len(customers)

    # -- current price book (max change) -------------------------------------------------------
    current_price = None
    if current is not None and len(current.bundle_prices):
        cur = current.bundle_prices.pivot_table(index="segment_id", columns="bundle_id", values="price")
        current_price = cur.reindex(columns=cat.bundle_ids).to_numpy(dtype=np.float64).min(axis=0)
    ladder = build_ladder(cat.list_sum, cat.cost_sum, opt, current_price, bundle_ids=cat.bundle_ids)

    # -- segments by predicted price response ----------------------------------------------------
    say(f"segmenting {C:,} customers by predicted price response")
    offers = tables.get("offers")
    if offers is not None and len(offers):
        ref = offers["bundle_id"].astype(str).value_counts().index[: pb.reference_bundles].tolist()
    else:
        ref = list(cat.bundle_ids[: pb.reference_bundles])
    profile = {}
    if pb.segment_on == "price_profile":
        ri = pd.Index(cat.bundle_ids).get_indexer(ref)
        allowed = ladder.allowed if ladder.allowed.ndim == 2 else ladder.allowed.any(axis=0)
        profile = {"ladder": np.where(allowed[ri], ladder.prices[ri], np.nan), "cost": cat.cost_sum[ri]}
    response = customer_price_response(model, builder, tables, customers, ref, at, scorer=score, **profile)
    seg, centers = segment_customers(response, opt.n_segments, seed=pb.seed, on=pb.segment_on)
    seg_ids = centers["segment_id"].tolist()
    S = len(seg_ids)
    sizes = centers["size"].to_numpy(dtype=np.float64)

    # -- segment acceptance along the ladder ------------------------------------------------------
    m = segment_sample_size(pb.segment_sample_customers, pb.segment_score_budget, S, B)
    seg_index = pd.Index(seg_ids).get_indexer(seg["segment_id"])
    positions = pd.Series(np.arange(len(seg)), index=seg.index)
    sample = (
        positions.groupby(seg["segment_id"].to_numpy(), sort=False)
        .apply(lambda s: s.sample(min(m, len(s)), random_state=int(rng.integers(1 << 31))).to_numpy())
        .reindex(seg_ids)
    )
    customer_ids = seg["customer_id"].astype(str).to_numpy()
    personal = pb.personalize and opt.top_n_bundles > 0
    # built once, for what uses it: the segments' weights (opt-in) and the personal candidates
    exposure = (CustomerExposure.from_tables(tables, cat, customer_ids)
                if pb.exposure_weighted_segments or personal else None)
    say(f"scoring {S} segments x {B} bundles x {ladder.prices.shape[1]} ladder prices ({m} customers per segment"
        f"{', weighted by their likely exposure to each bundle' if pb.exposure_weighted_segments else ''})")
    L = ladder.prices.shape[1]
    acc_mean = np.zeros((S, B, L))
    acc_se = np.zeros((S, B, L))
    rep_ctx = []
    for s, pos in enumerate(sample):
        cust = customer_ids[pos]
        req = requests_for(cust, cat.bundle_ids, at)
        ctx = context_features(builder, tables, req)
        prices = np.tile(ladder.prices, (len(cust), 1))
        p = score(model, builder, ctx, prices).reshape(len(cust), B, L)
        # who is shown a bundle: the segment's acceptance of it is averaged over its likely audience
        w = exposure.rows(pos) if exposure is not None and pb.exposure_weighted_segments else np.ones((len(cust), B))
        acc_mean[s], acc_se[s] = _weighted_mean_se(p, w)
        rep_ctx.append(ctx.iloc[:B])  # the first sampled customer of the segment represents it in explanations
    holdout = _recent_holdout(tables, model, builder, pb.holdout_offers, pb.seed)
    err_fn = model_error_by_level(model, *holdout) if holdout else (lambda q: np.full(np.shape(q), 0.02))
    band = pb.interval_z * np.sqrt(acc_se**2 + err_fn(acc_mean) ** 2)
    acc_low = np.clip(acc_mean - band, 0.0, 1.0)
    acc_high = np.clip(acc_mean + band, 0.0, 1.0)
    acc_mean = np.where(np.isfinite(ladder.prices)[None], acc_mean, np.nan)

    rate = offers_rate(tables, cat, C, pb.period_days, pb.traffic_window_days)
    if exposure is not None and pb.exposure_weighted_segments:
        # the log's offers of each bundle shared among the segments by their likely exposure to it
        seg_exp = exposure.segment_means(seg_index, S)
        pop = (seg_exp * sizes[:, None]).sum(axis=0) / max(sizes.sum(), 1.0)
        rate = rate[None, :] * seg_exp / np.where(pop > 0, pop, 1.0)[None, :]
    problem = SegmentProblem(
        bundle_ids=cat.bundle_ids,
        segment_ids=seg_ids,
        sizes=sizes,
        list_sum=cat.list_sum,
        cost_sum=cat.cost_sum,
        ladder=ladder.prices,
        allowed=ladder.allowed,
        accept_mean=acc_mean,
        accept_low=acc_low,
        accept_high=acc_high,
        current_price=current_price,
        bundle_items=cat.items,
        inventory=cat.inventory if opt.rules.respect_inventory else None,
        product_ids=cat.product_ids,
        offers_per_customer=rate,
    )
    say("solving the segment price MILP (CVXPY + HiGHS)")
    sol = solve_segment_prices(problem, opt)
    broken = check_segment_rules(problem, opt, sol.price)
    if broken:  # the solver module re-checks too; a published price must never break a rule
        raise RuntimeError("segment prices break rules: " + "; ".join(broken[:5]))

    # -- explanations ------------------------------------------------------------------------------
    drivers: list[str] = []
    for s in range(S):
        ctx = rep_ctx[s]
        drivers += _top_drivers(model, builder, ctx, sol.price[s], pb.explain_top_k)
    table = sol.table.copy()
    table["top_drivers"] = drivers

    # -- personal prices ---------------------------------------------------------------------------
    cust_offers = pd.DataFrame(columns=["customer_id", "bundle_id", "price", "expected_conversion", "expected_profit"])
    csol = None
    if personal and exposure is not None:
        # small enough to price every pair (customers x bundles within the budget): more candidates and
        # offers per customer than configured, up to every bundle (docs/pricing.md: +0.008 of the
        # clairvoyant optimum on the default market, where 10 personal offers meet 8 % of the traffic)
        room = min(B, pb.personal_pairs_budget // max(len(seg), 1))
        K = min(B, max(pb.candidates_per_customer, room))
        popt = opt if room <= opt.top_n_bundles else opt.model_copy(update={"top_n_bundles": room})
        prof = sol.table.pivot(index="segment_id", columns="bundle_id", values="expected_profit").reindex(
            index=seg_ids, columns=cat.bundle_ids
        )
        candidates = customer_exposure_candidates(
            tables, cat, customer_ids, prof.to_numpy(), seg_index, K, exposure=exposure
        )
        rungs, _centre = customer_rungs(
            ladder.prices, ladder.allowed, sol.price, cat.list_sum, opt, cat.cost_sum, current_price
        )
        R = rungs.shape[2]
        say(f"scoring {len(seg):,} customers x {K} candidate bundles x {R} band prices "
            f"(up to {popt.top_n_bundles} personal offers each)")
        cand_bundles = np.asarray(cat.bundle_ids)[candidates]
        req = pd.DataFrame(
            {
                "customer_id": np.repeat(seg["customer_id"].to_numpy(), K),
                "bundle_id": cand_bundles.ravel(),
                "time": pd.Series([at] * (len(seg) * K), dtype="datetime64[us, UTC]"),
            }
        )
        r_idx = rungs[np.repeat(seg_index, K), candidates.ravel()]  # [C*K, R]
        b_idx = candidates.ravel()
        prices = np.where(r_idx >= 0, ladder.prices[b_idx[:, None], np.maximum(r_idx, 0)], np.nan)
        a = np.empty(prices.shape, dtype=np.float32)
        step = pb.context_chunk_rows  # contexts of a few chunks at a time, not of every request (memory)
        for lo in range(0, len(req), step):
            sl = slice(lo, lo + step)
            ctx = context_features(builder, tables, req.iloc[sl].reset_index(drop=True))
            a[sl] = score(model, builder, ctx, prices[sl])
            del ctx
        a = np.nan_to_num(a, nan=0.0).reshape(len(seg), K, R)
        e = (pb.interval_z * err_fn(a)).astype(np.float32)
        cproblem = CustomerProblem(
            customer_ids=seg["customer_id"].to_numpy(),
            segment=seg_index,
            candidates=candidates,
            rungs=rungs,
            accept_mean=a,
            accept_low=np.clip(a - e, 0, 1),
            accept_high=np.clip(a + e, 0, 1),
            segment_price=sol.price,
            ladder=ladder.prices,
            allowed=ladder.allowed,
            list_sum=cat.list_sum,
            cost_sum=cat.cost_sum,
            bundle_ids=cat.bundle_ids,
            segment_ids=seg_ids,
            current_price=current_price,
            bundle_items=cat.items,
            inventory=cat.inventory if opt.rules.respect_inventory else None,
            product_ids=cat.product_ids,
            offers_per_customer=(exposure.expected_offers(rate, candidates) if pb.pair_offers == "exposure"
                                 else float(np.mean(rate))),
        )
        say("solving personal prices (Lagrangian decomposition)")
        csol = solve_customer_prices(cproblem, popt)
        cbroken = check_customer_rules(cproblem, popt, csol)
        if cbroken:
            raise RuntimeError("personal prices break rules: " + "; ".join(cbroken[:5]))
        has = csol.bundle >= 0
        ci = np.nonzero(has)
        cust_offers = pd.DataFrame(
            {
                "customer_id": cproblem.customer_ids[ci[0]],
                "bundle_id": np.asarray(cat.bundle_ids)[csol.bundle[has]],
                "price": csol.price[has].astype(np.float64).round(2),
                "expected_conversion": csol.expected_conversion[has].astype(np.float64).round(6),
            }
        )
        cost_of = dict(zip(cat.bundle_ids, cat.cost_sum))
        cust_offers["expected_profit"] = (cust_offers["expected_conversion"] * (
            cust_offers["price"] - cust_offers["bundle_id"].map(cost_of)
        )).round(6)

    bundle_prices = pd.DataFrame(
        {
            "bundle_id": table["bundle_id"],
            "segment_id": table["segment_id"],
            "price": table["price"].round(2),
            "list_price": table["list_sum"].round(2),
            "unit_cost": table["cost_sum"].round(2),
            "expected_conversion": table["expected_conversion"],
            "expected_profit": table["expected_conversion"] * (table["price"] - table["cost_sum"]),
            "profit_low": table["profit_low"] / np.maximum(table["expected_units"] / table["expected_conversion"], 1e-12),
            "profit_high": table["profit_high"] / np.maximum(table["expected_units"] / table["expected_conversion"], 1e-12),
            "binding_rules": table["binding_rules"],
            "top_drivers": table["top_drivers"],
        }
    )
    segments = seg[["customer_id", "segment_id"]].reset_index(drop=True)
    manifest = {
        "mode": "optimized",
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "priced_for": at.isoformat(),
        "segments": centers.to_dict(orient="records"),
        "segment_solver": {
            "status": sol.status,
            "source": sol.source,
            "solver_status": sol.solver_status,
            "mip_gap": sol.mip_gap,
            "solve_time_s": sol.solve_time_s,
            "fallback_reason": sol.fallback_reason,
            "expected_profit": sol.expected_profit,
            "profit_low": sol.profit_low,
            "profit_high": sol.profit_high,
            "warnings": sol.warnings,
        },
        "customer_solver": None
        if csol is None
        else {
            "status": csol.status,
            "objective": csol.objective,
            "dual_bound": csol.dual_bound,
            "gap": csol.gap,
            "expected_profit": csol.expected_profit_total,
            "n_withheld": csol.n_withheld,
            "n_repaired": csol.n_repaired,
            "wall_s": csol.wall_s,
        },
        "rule_check": {"segment_prices": "all rules hold", "personal_prices": "all rules hold" if csol else "n/a"},
        "seconds": time.perf_counter() - t_all,
    }
    extras = {"shared": sol.shared, "segment_table": sol.table}
    return PriceBook(bundle_prices, segments, cust_offers, manifest, extras)


def exploration_price_book(tables: dict[str, pd.DataFrame], config: Config, seed: int | None = None) -> PriceBook:
    """Cold start: no offers log, no model. A randomized price experiment that obeys every rule.

    Per bundle a random centre among the allowed ladder prices (so prices span the whole allowed range
    across bundles); each of ``n_segments`` randomly assigned customer cells gets a random allowed price
    within the fairness window around it; every customer gets ``top_n_bundles`` random bundles at a
    random allowed price within the customer band of their cell's price.
    """
    opt = config.optimize
    rules = opt.rules
    rng = np.random.default_rng(config.pricebook.seed if seed is None else seed)
    cat = catalog(tables)
    ladder = build_ladder(cat.list_sum, cat.cost_sum, opt, None, bundle_ids=cat.bundle_ids)
    allowed = ladder.allowed if ladder.allowed.ndim == 2 else ladder.allowed[0]
    prices = ladder.prices
    B, S = len(cat.bundle_ids), opt.n_segments
    gap = np.inf if rules.fairness_gap is None else rules.fairness_gap
    seg_price = np.empty((S, B))
    for b in range(B):
        ok = np.flatnonzero(allowed[b])
        centre = prices[b, rng.choice(ok)]
        window = ok[np.abs(prices[b, ok] - centre) <= gap * cat.list_sum[b] / 2 + 1e-9]
        seg_price[:, b] = prices[b, rng.choice(window, size=S)]
    seg_ids = [f"S{i + 1}" for i in range(S)]
    bundle_prices = pd.DataFrame(
        {
            "bundle_id": np.tile(cat.bundle_ids, S),
            "segment_id": np.repeat(seg_ids, B),
            "price": seg_price.ravel().round(2),
            "list_price": np.tile(cat.list_sum, S).round(2),
            "unit_cost": np.tile(cat.cost_sum, S).round(2),
            "expected_conversion": np.nan,
            "expected_profit": np.nan,
            "profit_low": np.nan,
            "profit_high": np.nan,
            "binding_rules": "",
            "top_drivers": "exploration: no offers log yet",
        }
    )
    customers = tables["customers"]["customer_id"].astype(str).drop_duplicates().to_numpy()
    cell = rng.integers(0, S, len(customers))
    N = min(opt.top_n_bundles, B)
    picks = np.argsort(rng.random((len(customers), B)), axis=1)[:, :N].ravel()
    cells = np.repeat(cell, N)
    centre = seg_price[cells, picks]
    within = allowed[picks] & (np.abs(prices[picks] - centre[:, None]) <= rules.customer_band * cat.list_sum[picks][:, None] + 1e-9)
    u = np.where(within, rng.random(within.shape), -1.0)
    offers = pd.DataFrame(
        {
            "customer_id": np.repeat(customers, N),
            "bundle_id": np.asarray(cat.bundle_ids)[picks],
            "price": prices[picks, np.argmax(u, axis=1)].round(2),
            "expected_conversion": np.nan,
            "expected_profit": np.nan,
        }
    )
    manifest = {
        "mode": "exploration",
        "note": "no offers log: randomized prices within the rules (a price experiment) so the next round has data",
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "rule_check": {"segment_prices": "all rules hold (allowed ladder rungs, fairness window)",
                       "personal_prices": "all rules hold (allowed rungs within the customer band)"},
    }
    segments = pd.DataFrame({"customer_id": customers, "segment_id": np.asarray(seg_ids)[cell]})
    return PriceBook(bundle_prices, segments, offers, manifest)


def config_hash(config: Config) -> str:
    return config.fingerprint()


def _previous_of(out: Path) -> Path:
    return out.with_name(f".{out.name}.old")


def recover_price_book(out_dir: str | Path) -> bool:
    """Undo a swap that a crash interrupted: the folder is missing but the previous book is parked
    beside it (``.<name>.old``): put it back. Returns True when it did. Called by every read and write,
    so a crashed run never costs the previous price book."""
    out = Path(out_dir)
    old = _previous_of(out)
    if not out.exists() and old.is_dir():
        old.rename(out)
        return True
    return False


def write_price_book(book: PriceBook, out_dir: str | Path) -> Path:
    """Write into a temporary sibling folder, then swap it in with two renames (old book parked as
    ``.<name>.old``, new one renamed into place). A crash before the swap leaves the old book in
    place; one between the renames leaves it parked, and :func:`recover_price_book` (run by the next
    read or write) puts it back. Stray temporary folders are removed on failure."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    recover_price_book(out)
    tmp = out.with_name(f".{out.name}.tmp-{hashlib.sha1(str(time.time()).encode()).hexdigest()[:8]}")
    tmp.mkdir()
    try:
        book.bundle_prices.to_csv(tmp / "bundle_prices.csv", index=False)
        book.customer_segments.to_csv(tmp / "customer_segments.csv", index=False)
        book.customer_offers.to_csv(tmp / "customer_offers.csv", index=False)
        (tmp / "manifest.json").write_text(json.dumps(book.manifest, indent=2, default=str))
        old = _previous_of(out)
        if old.exists():  # out exists here (recovered above), so this is a finished swap's leftover
            shutil.rmtree(old)
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_price_book(path: str | Path) -> PriceBook:
    d = Path(path)
    recover_price_book(d)
    missing = [f for f in FILES if not (d / f).exists()]
    if missing:
        raise FileNotFoundError(f"{d} is not a price book (missing {', '.join(missing)})")
    return PriceBook(
        bundle_prices=pd.read_csv(d / "bundle_prices.csv", dtype={"bundle_id": str, "segment_id": str}),
        customer_segments=pd.read_csv(d / "customer_segments.csv", dtype=str),
        customer_offers=pd.read_csv(d / "customer_offers.csv", dtype={"customer_id": str, "bundle_id": str}),
        manifest=json.loads((d / "manifest.json").read_text()),
    )
