"""Price ladders: the candidate prices of each bundle and the business rules that filter them.

A bundle's *list price* ``list_sum`` is the sum of its items' list prices and its cost ``cost_sum``
the sum of their unit costs. Its ladder is::

    list_sum * (1 - d),  d = d0, d0 + step, ..., <= max_discount     (d0 = rules.min_bundle_discount)

each rung rounded DOWN to the configured price ending (``0.99``: 47.30 -> 46.99, 47.99 -> 47.99;
``None``: down to the cent), so rounding can never lift a price above ``list_sum * (1 - d)`` and so
never breaks the "never above list" rule. Rungs <= 0 are dropped, equal rungs deduplicated. Prices are
sorted ASCENDING along the row (rung 0 is the cheapest); rows are NaN padded to a common width ``L``.
(Rounding down may take the deepest rung slightly past ``max_discount``: by less than one unit.)

Rules (a rung is *allowed* when it obeys all of them; ``EPS`` = 1e-6 currency units of tolerance):

* ``max_price``:  price <= list_sum * (1 - min_bundle_discount)
* ``min_margin``: price >= cost_sum * (1 + min_margin)
* ``max_change``: |price - current| <= max_change * current, when a current price exists (not NaN)

The current price book may be per bundle (``[B]``) or per segment and bundle (``[S, B]``); the allowed
mask then has shape ``[B, L]`` or ``[S, B, L]``. A (segment,) bundle without any allowed rung is an
error that names the bundle and the rules in conflict, e.g.
``B7: min_margin 0.10 needs price >= 55.00 but min_bundle_discount 0.20 needs price <= 48.00``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pricing.config import LadderConfig, OptimizeConfig, RulesConfig

EPS = 1e-6  # currency units: tolerance of every rule comparison (prices are in cents)


class InfeasibleRulesError(ValueError):
    """No price (book) satisfies the rules; ``conflicts`` lists one message per conflict."""

    def __init__(self, conflicts: Sequence[str], header: str = "the pricing rules cannot all hold"):
        self.conflicts = list(conflicts)
        shown = self.conflicts[:12]
        more = len(self.conflicts) - len(shown)
        text = f"{header}: " + "; ".join(shown) + (f"; ... and {more} more" if more > 0 else "")
        super().__init__(text)


def round_down_to_ending(x: np.ndarray, ending: float | None) -> np.ndarray:
    """Largest price <= x ending in ``ending`` (0.99 -> x.99), or floored to the cent when None."""
    x = np.asarray(x, dtype=np.float64)
    cents = np.floor(x * 100.0 + 1e-6) / 100.0
    if ending is None:
        return cents
    e = round(float(ending), 2)
    out = np.floor(cents - e + 1e-9) + e
    return np.round(out, 2)


def ladder_prices(list_sum: np.ndarray, ladder: LadderConfig, min_bundle_discount: float = 0.0) -> np.ndarray:
    """Candidate prices ``[B, L]`` (ascending, NaN padded, deduplicated) for list prices ``[B]``."""
    list_sum = np.asarray(list_sum, dtype=np.float64)
    d0 = float(min_bundle_discount)
    k = int(np.floor((ladder.max_discount - d0) / ladder.step + 1e-9)) + 1 if ladder.max_discount >= d0 - 1e-12 else 1
    disc = d0 + ladder.step * np.arange(max(k, 1))
    raw = list_sum[:, None] * (1.0 - disc[None, :])
    p = round_down_to_ending(raw, ladder.price_ending)
    p[(p <= 0) | ~np.isfinite(p)] = np.nan
    p = np.sort(p, axis=1)  # NaN last
    dup = np.zeros_like(p, dtype=bool)
    dup[:, 1:] = np.abs(np.diff(p, axis=1)) < 1e-9
    p[dup] = np.nan
    p = np.sort(p, axis=1)
    keep = ~np.all(np.isnan(p), axis=0)
    if not keep.any():
        return np.full((len(list_sum), 1), np.nan)
    return p[:, : int(np.flatnonzero(keep).max()) + 1]


def _as_current(current_price: np.ndarray | None, n_bundles: int) -> np.ndarray | None:
    """Current price book as ``[S or 1, B]`` (NaN: no current price), or None."""
    if current_price is None:
        return None
    cur = np.asarray(current_price, dtype=np.float64)
    if cur.ndim == 1:
        cur = cur[None, :]
    if cur.ndim != 2 or cur.shape[1] != n_bundles:
        raise ValueError(f"current_price must have shape [B] or [S, B] with B={n_bundles}, got {cur.shape}")
    return cur


@dataclass(frozen=True)
class PriceBounds:
    """Interval ``[lower, upper]`` each (segment,) bundle's price must lie in, and the rules setting it.

    Arrays have shape ``[B]`` without a current price book, else ``[S or 1, B]``;
    ``lower_rule``/``upper_rule`` name the rule giving the bound (``min_margin``/``max_change`` and
    ``max_price``/``max_change``); ``change_lower``/``change_upper`` are the max_change limits alone
    (``-inf``/``inf`` where no current price).
    """

    lower: np.ndarray
    upper: np.ndarray
    lower_rule: np.ndarray
    upper_rule: np.ndarray
    max_price: np.ndarray  # [B]
    min_price: np.ndarray  # [B]
    change_lower: np.ndarray | None
    change_upper: np.ndarray | None


def price_bounds(
    list_sum: np.ndarray, cost_sum: np.ndarray, rules: RulesConfig, current_price: np.ndarray | None = None
) -> PriceBounds:
    list_sum = np.asarray(list_sum, dtype=np.float64)
    cost_sum = np.asarray(cost_sum, dtype=np.float64)
    max_price = list_sum * (1.0 - rules.min_bundle_discount)
    min_price = cost_sum * (1.0 + rules.min_margin)
    cur = _as_current(current_price, len(list_sum))
    if cur is None or rules.max_change is None:
        lo, hi = min_price.copy(), max_price.copy()
        return PriceBounds(
            lo, hi, np.full(lo.shape, "min_margin", dtype=object), np.full(hi.shape, "max_price", dtype=object),
            max_price, min_price, None, None,
        )
    has = np.isfinite(cur)
    c_lo = np.where(has, cur * (1.0 - rules.max_change), -np.inf)
    c_hi = np.where(has, cur * (1.0 + rules.max_change), np.inf)
    lo = np.maximum(min_price[None, :], c_lo)
    hi = np.minimum(max_price[None, :], c_hi)
    lo_rule = np.where(c_lo > min_price[None, :], "max_change", "min_margin").astype(object)
    hi_rule = np.where(c_hi < max_price[None, :], "max_change", "max_price").astype(object)
    return PriceBounds(lo, hi, lo_rule, hi_rule, max_price, min_price, c_lo, c_hi)


def rule_mask(
    prices: np.ndarray,
    list_sum: np.ndarray,
    cost_sum: np.ndarray,
    rules: RulesConfig,
    current_price: np.ndarray | None = None,
) -> np.ndarray:
    """Rungs obeying max_price, min_margin and max_change: ``[B, L]``, or ``[S, B, L]`` with ``[S, B]`` current prices."""
    prices = np.asarray(prices, dtype=np.float64)
    bd = price_bounds(list_sum, cost_sum, rules, current_price)
    ok = np.isfinite(prices)
    with np.errstate(invalid="ignore"):
        if bd.lower.ndim == 1:
            return ok & (prices >= bd.lower[:, None] - EPS) & (prices <= bd.upper[:, None] + EPS)
        lo, hi = bd.lower[:, :, None], bd.upper[:, :, None]
        m = ok[None] & (prices[None] >= lo - EPS) & (prices[None] <= hi + EPS)
    if current_price is not None and np.asarray(current_price).ndim == 1:
        return m[0]
    return m


def _rule_text(rule: str, rules: RulesConfig, bound: float, cur: float | None, side: str) -> str:
    if rule == "min_margin":
        return f"min_margin {rules.min_margin:.2f} needs price >= {bound:.2f}"
    if rule == "max_price":
        return f"min_bundle_discount {rules.min_bundle_discount:.2f} needs price <= {bound:.2f}"
    return f"max_change {rules.max_change:.2f} from current {cur:.2f} needs price {side} {bound:.2f}"


def explain_empty(
    prices: np.ndarray,
    list_sum: np.ndarray,
    cost_sum: np.ndarray,
    rules: RulesConfig,
    ladder: LadderConfig,
    current_price: np.ndarray | None,
    allowed: np.ndarray,
    bundle_ids: Sequence[str] | None = None,
    segment_ids: Sequence[str] | None = None,
) -> list[str]:
    """One message per (segment,) bundle without any allowed rung, naming the rules in conflict."""
    prices = np.asarray(prices, dtype=np.float64)
    B = prices.shape[0]
    bids = list(bundle_ids) if bundle_ids is not None else [f"bundle#{i}" for i in range(B)]
    bd = price_bounds(list_sum, cost_sum, rules, current_price)
    cur = _as_current(current_price, B)
    lo = np.atleast_2d(bd.lower)
    hi = np.atleast_2d(bd.upper)
    lo_rule = np.atleast_2d(bd.lower_rule)
    hi_rule = np.atleast_2d(bd.upper_rule)
    al = allowed if allowed.ndim == 3 else allowed[None]
    empty = ~al.any(axis=2)
    out = []
    for s, b in zip(*np.nonzero(empty)):
        sl = min(s, lo.shape[0] - 1)
        who = bids[b]
        if al.shape[0] > 1 or (cur is not None and cur.shape[0] > 1):
            seg = segment_ids[s] if segment_ids is not None else f"segment#{s}"
            who = f"{who} (segment {seg})"
        c = None if cur is None else float(cur[min(s, cur.shape[0] - 1), b])
        L_, H_ = float(lo[sl, b]), float(hi[sl, b])
        if L_ > H_ + EPS:
            out.append(
                f"{who}: {_rule_text(lo_rule[sl, b], rules, L_, c, '>=')} but "
                f"{_rule_text(hi_rule[sl, b], rules, H_, c, '<=')}"
            )
        else:
            row = prices[b][np.isfinite(prices[b])]
            ending = "cents" if ladder.price_ending is None else f".{round(ladder.price_ending * 100):02d}"
            span = f"{row.min():.2f}..{row.max():.2f}" if row.size else "empty"
            out.append(
                f"{who}: the rules allow prices in [{L_:.2f}, {H_:.2f}] "
                f"({lo_rule[sl, b]} / {hi_rule[sl, b]}) but no ladder price falls there "
                f"(ladder {span}: step {ladder.step:g}, max_discount {ladder.max_discount:g}, ending {ending})"
            )
    return out


@dataclass(frozen=True)
class Ladder:
    """Ladder of every bundle and the rungs the rules allow.

    prices:  ``[B, L]`` float64, ascending per row, NaN padded.
    allowed: ``[B, L]`` bool, or ``[S, B, L]`` when the current price book is per segment ``[S, B]``.
    """

    prices: np.ndarray
    allowed: np.ndarray
    bundle_ids: list[str]
    bounds: PriceBounds


def build_ladder(
    list_sum: np.ndarray,
    cost_sum: np.ndarray,
    cfg: OptimizeConfig,
    current_price: np.ndarray | None = None,
    bundle_ids: Sequence[str] | None = None,
    segment_ids: Sequence[str] | None = None,
    check: bool = True,
) -> Ladder:
    """Ladder prices ``[B, L]`` and allowed mask; raises :class:`InfeasibleRulesError` naming every
    (segment,) bundle with no allowed rung when ``check``."""
    list_sum = np.asarray(list_sum, dtype=np.float64)
    cost_sum = np.asarray(cost_sum, dtype=np.float64)
    if list_sum.shape != cost_sum.shape or list_sum.ndim != 1:
        raise ValueError("list_sum and cost_sum must both have shape [B]")
    bids = [str(b) for b in bundle_ids] if bundle_ids is not None else [f"bundle#{i}" for i in range(len(list_sum))]
    prices = ladder_prices(list_sum, cfg.ladder, cfg.rules.min_bundle_discount)
    allowed = rule_mask(prices, list_sum, cost_sum, cfg.rules, current_price)
    if check:
        msgs = explain_empty(prices, list_sum, cost_sum, cfg.rules, cfg.ladder, current_price, allowed, bids, segment_ids)
        if msgs:
            raise InfeasibleRulesError(msgs, header=f"{len(msgs)} bundle price(s) have no allowed ladder price")
    return Ladder(prices, allowed, bids, price_bounds(list_sum, cost_sum, cfg.rules, current_price))


def band_rungs(
    prices: np.ndarray,
    allowed: np.ndarray,
    segment_price: np.ndarray,
    list_sum: np.ndarray,
    band: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Ladder columns a customer of segment ``s`` may get for bundle ``b`` (personal prices).

    Returns ``rungs [S, B, R]`` int16 (ascending price, ``-1`` padded): allowed rungs with price within
    ``segment_price[s, b] +- band * list_sum[b]``; and ``centre [S, B]`` int16, the position in ``R`` of
    the segment price itself (``-1`` when the segment price is not an allowed rung).
    """
    prices = np.asarray(prices, dtype=np.float64)
    sp = np.asarray(segment_price, dtype=np.float64)
    S = sp.shape[0]
    al = allowed if allowed.ndim == 3 else np.broadcast_to(allowed[None], (S,) + allowed.shape)
    half = band * np.asarray(list_sum, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        inb = al & (np.abs(prices[None] - sp[:, :, None]) <= half[None, :, None] + EPS)
    R = max(int(inb.sum(axis=2).max(initial=0)), 1)
    # stable sort puts the in-band columns first, keeping their ascending order
    order = np.argsort(~inb, axis=2, kind="stable")[:, :, :R]
    ok = np.take_along_axis(inb, order, axis=2)
    rungs = np.where(ok, order, -1).astype(np.int16)
    pr = np.where(ok, np.take_along_axis(np.broadcast_to(prices[None], inb.shape), order, axis=2), np.nan)
    with np.errstate(invalid="ignore"):
        hit = np.abs(pr - sp[:, :, None]) <= EPS
    centre = np.where(hit.any(axis=2), hit.argmax(axis=2), -1).astype(np.int16)
    return rungs, centre
