"""Bundle price optimization: a segment price book (MILP) and personal prices (Lagrangian decomposition).

Pure numerical core: inputs are arrays (the acceptance model is scored elsewhere), outputs are arrays
and small tables. No orchestration imports.

Notation and shapes
-------------------
``S`` segments, ``B`` bundles, ``L`` ladder rungs (see :mod:`pricing.ladder`; prices ascending per row,
NaN padded), ``P`` products, ``C`` customers, ``K`` candidate bundles per customer, ``R`` rungs in a
customer's price band. ``w[s, b] = sizes[s] * offers_per_customer`` is the expected number of offers
of bundle ``b`` to segment ``s`` in the period. Acceptance arrays give the probability an offer is
accepted at a rung; the objective uses the risk-adjusted acceptance ::

    a_obj = clip(mean - risk_aversion * (mean - low), 0, 1)      (risk_aversion 1: the low bound)

and shared-rule usage the ``rules.usage_acceptance`` one (mean, or high to be conservative).
Reported per row: expected_conversion (mean acceptance), expected_profit (mean), profit_low /
profit_high (low / high acceptance) and the risk-adjusted objective.

Segment price book: :func:`solve_segment_prices`
------------------------------------------------
The model (one price per segment and bundle among its ALLOWED rungs: the rules max_price,
min_margin, max_change remove rungs, so they hold by construction)::

    max   sum w[s,b] * a_obj[s,b,l] * (price[b,l] - cost[b]) * x[s,b,l]
    s.t.  sum_l x[s,b,l] = 1,  x boolean                         one price per (segment, bundle)
          max_s P[s,b] - min_s P[s,b] <= fairness_gap * list[b]  P[s,b] = sum_l price[b,l] x[s,b,l]
          sum_{s,b} w a_use items[b,p] x <= inventory[p]         every product with finite inventory
          sum_{s,b} w a_use (list[b] - price[b,l]) x <= budget   discount budget (optional)

is solved as a MILP in CVXPY by HiGHS in an equivalent *staircase* form (binaries "price >= rung k",
see :func:`build_segment_milp`) whose rows apart from inventory/budget form a network matrix: its LP
relaxation is integral without shared rows and nearly integral with them. HiGHS starts from the
Lagrangian heuristic's price book (a MIP start, ``warm_start``), so it mostly has to prove the gap:
2,000 bundles x 8 segments x ~20 rungs (270k binaries) solve to ``mip_rel_gap`` in under a minute on
2 cores, where the textbook one-hot model with hi/lo fairness variables did not even finish its root
LP in 3 minutes (figures in benchmarks/bench_optimize.py).

"Don't offer" is NOT a choice at segment level: every (segment, bundle) gets a price (the price book
is complete). Inventory or budget may therefore be impossible to meet; this is detected before
solving (each product's expected units when every bundle holding it sits at its least-selling
allowed price; the same for the budget; per bundle whether any price window of width ``gap_b``
meets every segment's allowed prices) and raised as :class:`InfeasibleRulesError` naming the rules
and products. A solver-reported infeasibility (rules only jointly in conflict) is diagnosed with an
elastic LP (penalized slack on each shared row) that names the rows.

Solver status is checked, never trusted: a time-limited HiGHS solve can report ``user_limit`` with an
all-zero "solution". A solution is used only if HiGHS says a feasible primal exists
(``primal_solution_status == 2``), it decodes to one ladder rung per (segment, bundle), and the
independent re-check of every rule (:func:`check_segment_rules`) passes. Unless the solve is proven
optimal (within ``mip_rel_gap``), the best of these rule-checked candidates is published and flagged
(``source``, ``status``, ``fallback_reason``, gap against the best bound): the solver's incumbent,
the Lagrangian heuristic below, the previous price book (if it obeys every rule today). None of
them: :class:`OptimizationFailedError`.

Lagrangian heuristic (fallback, and an independent dual bound): shared rows are priced by
multipliers ``mu``; each bundle then decomposes and is solved EXACTLY with fairness by trying every
price window ``[p, p + gap_b]`` (``p`` a ladder price) and letting every segment take its best rung
in the window; ``sum_b best_b(mu) + mu . limits`` bounds the optimum. Multipliers follow a
sign-based subgradient scheme (Rprop); the primal is the best feasible iterate (or the iterate after
raising violated rows' multipliers in small steps), improved by moving whole bundles to the choices
of the best-bound iterate while every shared row still holds.

Binding rules: a rule is reported binding at (segment, bundle) when moving the price ONE rung up or
down would raise the (risk-adjusted) objective but that rung breaks the rule (``max_price``,
``min_margin``, ``max_change``, ``fairness``, ``inventory:<product>``, ``budget``, or ``ladder`` when
only the input mask excludes it); a shared row with relative slack <= ``TIGHT_RTOL`` counts as
exhausted. Slacks (currency) are in ``SegmentSolution.table``; usage, limit, slack of every shared
row in ``SegmentSolution.shared``.

Personal prices: :func:`solve_customer_prices`
----------------------------------------------
Each customer gets up to ``top_n_bundles`` offers among their ``K`` candidates, each priced on the
ladder within ``+- customer_band * list`` of their segment's price (and obeying max_price,
min_margin, max_change against the current price). Personal offers are OPTIONAL extras on top of the
segment price book, so the optimizer may withhold one (then the customer sees the segment price).
Shared rows (inventory per product, discount budget) couple the customers; they are relaxed with
multipliers ``mu`` (Lagrangian decomposition)::

    g(mu) = sum_c max_{<=N offers, one rung each} sum [w a_obj (p - cost) - w a_use (mu_inv . items_b + mu_B (list - p))]
            + mu . limits  >=  optimum, for every mu >= 0          (the reported dual bound)

Given ``mu`` every customer is independent: per candidate the best rung (argmax over R), then the N
candidates with the largest non-negative reduced value; vectorized in numpy over blocks of customers
(float32, ``chunk_customers`` at a time). ``mu`` is found by Rprop on the subgradient (per-row step
x1.2 while the row's violation keeps its sign, x0.5 when it flips) on a random customer sample
(limits scaled to the sample; stops when the sample's dual bound stalls), then a few passes over all
customers; the primal is taken at the multipliers of the best full bound. It is then REPAIRED so
every shared row holds: for the most violated row, offers using it move one rung up (least profit
lost per unit of usage saved first) until the row holds; if raising prices is not enough, offers are
withheld in the same order. Neither step increases any row, so the repair ends with all rows
satisfied. Reported: objective, dual bound g(mu) and gap = (bound - objective) / bound, a certificate
of how far the published solution can be from the optimum. Without binding shared rows the result
is exactly the per-customer argmax (gap 0).
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cvxpy as cp
import numpy as np
import pandas as pd
from scipy import sparse

from pricing.config import OptimizeConfig
from pricing.ladder import (
    EPS,
    InfeasibleRulesError,
    band_rungs,
    build_ladder,
    price_bounds,
    rule_mask,
)

__all__ = [
    "BINDING_BITS",
    "CustomerProblem",
    "CustomerSolution",
    "InfeasibleRulesError",
    "OptimizationFailedError",
    "SegmentProblem",
    "SegmentSolution",
    "brute_force_segment_prices",
    "build_segment_milp",
    "check_customer_rules",
    "check_segment_rules",
    "customer_rungs",
    "solve_box_lp",
    "solve_customer_prices",
    "solve_segment_prices",
    "synthetic_customer_problem",
    "synthetic_segment_problem",
]

TIGHT_RTOL = 1e-3  # a shared row with less relative slack than this is reported as binding
SHARED_RTOL = 2e-6  # shared rows are solved to limit * (1 - SHARED_RTOL) (HiGHS row tolerance 1e-6), see _target_limits


class OptimizationFailedError(RuntimeError):
    """The solver gave no usable solution and no rule-safe fallback exists."""


# ----------------------------------------------------------------------------------------------------
# problems and solutions
# ----------------------------------------------------------------------------------------------------


def _incidence(items: Any, B: int) -> sparse.csr_matrix:
    m = sparse.csr_matrix(items, dtype=np.float64)
    if m.shape[0] != B:
        raise ValueError(f"bundle_items must have shape [B={B}, P], got {m.shape}")
    return m


def _normalise_shared(problem: Any, S: int, B: int) -> None:
    """Shared-rule inputs of a segment or customer problem in canonical form (in place): bundle-product
    incidence as CSR, inventory ``[P]``, product ids, current price broadcast to ``[S, B]``."""
    if problem.bundle_items is None:
        problem.bundle_items = sparse.csr_matrix((B, 0))
    problem.bundle_items = _incidence(problem.bundle_items, B)
    P = problem.bundle_items.shape[1]
    if problem.inventory is not None:
        problem.inventory = np.asarray(problem.inventory, dtype=np.float64).reshape(P)
    problem.product_ids = (
        [str(p) for p in problem.product_ids] if problem.product_ids is not None else [f"product#{j}" for j in range(P)]
    )
    if problem.current_price is not None:
        cur = np.asarray(problem.current_price, dtype=np.float64)
        problem.current_price = np.broadcast_to(cur if cur.ndim == 2 else cur[None], (S, B))


@dataclass
class SegmentProblem:
    """One price per (segment, bundle).

    bundle_ids [B], segment_ids [S]; sizes [S] customers per segment; list_sum, cost_sum [B];
    ladder [B, L] ascending prices (NaN padded); allowed [B, L] or [S, B, L] bool (the rung mask from
    :func:`pricing.ladder.build_ladder`; the rules of ``cfg`` are re-applied on top);
    accept_mean / accept_low / accept_high [S, B, L] acceptance probability of an offer at each rung
    (low/high None: equal to mean); current_price [S, B] or [B] (NaN: none) or None; bundle_items
    [B, P] sparse units of each product in each bundle; inventory [P] (inf/NaN: unlimited) or None;
    product_ids [P]; offers_per_customer: scalar, [B] or [S, B] expected offers of each bundle per
    customer in the period (None: ``cfg.offers_per_customer``).
    """

    bundle_ids: Sequence[str]
    segment_ids: Sequence[str]
    sizes: np.ndarray
    list_sum: np.ndarray
    cost_sum: np.ndarray
    ladder: np.ndarray
    allowed: np.ndarray
    accept_mean: np.ndarray
    accept_low: np.ndarray | None = None
    accept_high: np.ndarray | None = None
    current_price: np.ndarray | None = None
    bundle_items: Any = None
    inventory: np.ndarray | None = None
    product_ids: Sequence[str] | None = None
    offers_per_customer: float | np.ndarray | None = None

    def __post_init__(self) -> None:
        self.bundle_ids = [str(b) for b in self.bundle_ids]
        self.segment_ids = [str(s) for s in self.segment_ids]
        S, B = len(self.segment_ids), len(self.bundle_ids)
        self.sizes = np.asarray(self.sizes, dtype=np.float64).reshape(S)
        self.list_sum = np.asarray(self.list_sum, dtype=np.float64).reshape(B)
        self.cost_sum = np.asarray(self.cost_sum, dtype=np.float64).reshape(B)
        self.ladder = np.asarray(self.ladder, dtype=np.float64)
        if self.ladder.ndim != 2 or self.ladder.shape[0] != B:
            raise ValueError(f"ladder must have shape [B={B}, L], got {self.ladder.shape}")
        L = self.ladder.shape[1]
        al = np.asarray(self.allowed, dtype=bool)
        self.allowed = np.broadcast_to(al if al.ndim == 3 else al[None], (S, B, L))
        for name in ("accept_mean", "accept_low", "accept_high"):
            a = getattr(self, name)
            if a is None:
                continue
            a = np.asarray(a, dtype=np.float64)
            if a.shape != (S, B, L):
                raise ValueError(f"{name} must have shape [S={S}, B={B}, L={L}], got {a.shape}")
            setattr(self, name, a)
        _normalise_shared(self, S, B)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.allowed.shape


@dataclass
class SegmentSolution:
    """Segment price book.

    price [S, B], rung [S, B] (ladder column); ``table``: one row per (segment, bundle) with price,
    discount, expected_conversion (mean acceptance), expected_units, expected_profit (mean),
    profit_low, profit_high, objective (risk-adjusted), binding_rules (``;``-joined) and slacks
    (currency); ``shared``: one row per shared rule (rule, limit, usage, slack, binding).
    ``source``: milp | milp_incumbent | lagrangian | previous_price_book | brute_force.
    """

    price: np.ndarray
    rung: np.ndarray
    table: pd.DataFrame
    shared: pd.DataFrame
    objective: float
    expected_profit: float
    profit_low: float
    profit_high: float
    status: str
    source: str
    solver_status: str | None = None
    mip_gap: float | None = None
    dual_bound: float | None = None
    solve_time_s: float | None = None
    wall_s: float | None = None
    fallback_reason: str | None = None
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------
# shared preparation
# ----------------------------------------------------------------------------------------------------


def risk_adjusted(mean: np.ndarray, low: np.ndarray | None, risk_aversion: float) -> np.ndarray:
    """``clip(mean - risk_aversion * (mean - low), 0, 1)`` (mean when low is None)."""
    if low is None or risk_aversion == 0:
        return np.clip(mean, 0.0, 1.0)
    return np.clip(mean - risk_aversion * (mean - low), 0.0, 1.0)


def _usage_acceptance(mean, high, cfg: OptimizeConfig):
    if cfg.rules.usage_acceptance == "high" and high is not None:
        return np.clip(high, 0.0, 1.0)
    return np.clip(mean, 0.0, 1.0)


def _offers(opc, cfg: OptimizeConfig, S: int, B: int) -> np.ndarray:
    if opc is None:
        return np.full((S, B), cfg.offers_per_customer)
    o = np.asarray(opc, dtype=np.float64)
    return np.broadcast_to(o if o.ndim != 1 else o[None, :], (S, B)).astype(np.float64)


@dataclass
class _Rows:
    """Shared rows: inventory rows (one per product) then the budget row (if any)."""

    products: np.ndarray  # [m_inv] product column index
    limits: np.ndarray  # [m] (inventory..., budget)
    names: list[str]
    has_budget: bool
    items: sparse.csc_matrix  # [B, m_inv] incidence restricted to the row products

    @property
    def m(self) -> int:
        return len(self.limits)

    @property
    def m_inv(self) -> int:
        return len(self.products)


def _shared_rows(items: sparse.csr_matrix, inventory, product_ids, cfg: OptimizeConfig) -> _Rows:
    prods = np.zeros(0, dtype=np.int64)
    if inventory is not None and cfg.rules.respect_inventory:
        used = np.asarray((items != 0).sum(axis=0)).ravel() > 0
        prods = np.flatnonzero(np.isfinite(inventory) & used)
    limits = [float(inventory[p]) for p in prods] if len(prods) else []
    names = [f"inventory:{product_ids[p]}" for p in prods]
    has_budget = cfg.rules.discount_budget is not None
    if has_budget:
        limits.append(float(cfg.rules.discount_budget))
        names.append("budget")
    return _Rows(prods, np.asarray(limits, dtype=np.float64), names, has_budget, items[:, prods].tocsc())


def _fair_gap(list_sum: np.ndarray, gap: float | None) -> np.ndarray | None:
    """Fairness limit per bundle (currency), or None. ``gap * list`` plus the EPS tolerance."""
    if gap is None:
        return None
    return gap * list_sum + EPS


@dataclass
class _SegData:
    S: int
    B: int
    L: int
    prices: np.ndarray  # [B, L]
    allowed: np.ndarray  # [S, B, L] effective
    obj: np.ndarray  # [S, B, L] risk-adjusted profit (0 where not allowed)
    obj_all: np.ndarray  # [S, B, L] risk-adjusted profit on every finite rung (-inf on NaN rungs / NaN accept)
    units: np.ndarray  # [S, B, L] expected accepted bundles (usage acceptance)
    disc: np.ndarray  # [S, B, L] expected discount given
    w: np.ndarray  # [S, B]
    rows: _Rows
    gap: np.ndarray | None  # [B] currency or None


def _segment_data(problem: SegmentProblem, cfg: OptimizeConfig) -> _SegData:
    S, B, L = problem.shape
    prices = problem.ladder
    rm = rule_mask(prices, problem.list_sum, problem.cost_sum, cfg.rules, problem.current_price)
    rm = np.broadcast_to(rm if rm.ndim == 3 else rm[None], (S, B, L))
    acc_ok = np.isfinite(problem.accept_mean)
    for extra in (problem.accept_low, problem.accept_high):
        if extra is not None:
            acc_ok &= np.isfinite(extra)
    allowed = problem.allowed & rm & np.isfinite(prices)[None] & acc_ok
    w = problem.sizes[:, None] * _offers(problem.offers_per_customer, cfg, S, B)
    a_obj = risk_adjusted(problem.accept_mean, problem.accept_low, cfg.risk_aversion)
    a_use = _usage_acceptance(problem.accept_mean, problem.accept_high, cfg)
    margin = prices - problem.cost_sum[:, None]
    with np.errstate(invalid="ignore"):
        obj_all = w[:, :, None] * a_obj * margin[None]
        units = np.where(allowed, w[:, :, None] * a_use, 0.0)
        disc = np.where(allowed, units * (problem.list_sum[:, None] - prices)[None], 0.0)
    obj_all = np.where(np.isfinite(obj_all), obj_all, -np.inf)
    obj = np.where(allowed, obj_all, 0.0)
    rows = _shared_rows(problem.bundle_items, problem.inventory, problem.product_ids, cfg)
    gap = _fair_gap(problem.list_sum, cfg.rules.fairness_gap) if S > 1 else None
    return _SegData(S, B, L, prices, allowed, obj, obj_all, units, disc, w, rows, gap)


def _empty_groups(problem: SegmentProblem, d: _SegData, cfg: OptimizeConfig) -> list[str]:
    from pricing.ladder import explain_empty

    bad = ~d.allowed.any(axis=2)
    if not bad.any():
        return []
    msgs = []
    rm_only = rule_mask(d.prices, problem.list_sum, problem.cost_sum, cfg.rules, problem.current_price)
    rm_only = np.broadcast_to(rm_only if rm_only.ndim == 3 else rm_only[None], d.allowed.shape)
    rule_empty = ~rm_only.any(axis=2)
    if rule_empty.any():
        msgs += explain_empty(
            d.prices, problem.list_sum, problem.cost_sum, cfg.rules, cfg.ladder, problem.current_price,
            rm_only, problem.bundle_ids, problem.segment_ids,
        )
    for s, b in zip(*np.nonzero(bad & ~rule_empty)):
        msgs.append(
            f"{problem.bundle_ids[b]} (segment {problem.segment_ids[s]}): every rung the rules allow is "
            f"excluded by the input mask or has no acceptance score"
        )
    return msgs


def _fairness_conflicts(problem: SegmentProblem, d: _SegData, cfg: OptimizeConfig) -> list[str]:
    if d.gap is None:
        return []
    _, val = _best_fair(np.zeros(d.allowed.shape), d.allowed, d.prices, d.gap)
    msgs = []
    for b in np.flatnonzero(~np.isfinite(val)):
        ranges = []
        for s in range(d.S):
            p = d.prices[b][d.allowed[s, b]]
            ranges.append(f"{problem.segment_ids[s]} [{p.min():.2f}, {p.max():.2f}]")
        why = "max_change from the current prices" if problem.current_price is not None else "the rules"
        msgs.append(
            f"{problem.bundle_ids[b]}: fairness_gap {cfg.rules.fairness_gap:.2f} needs all segment prices "
            f"within {cfg.rules.fairness_gap * problem.list_sum[b]:.2f} but {why} allow only "
            + ", ".join(ranges)
        )
    return msgs


def _min_usage(d: _SegData) -> np.ndarray:
    """Per shared row the least usage any price book can have (each group at its least-using rung)."""
    rows = d.rows
    out = np.zeros(rows.m)
    if rows.m_inv:
        out[: rows.m_inv] = rows.items.T @ np.where(d.allowed, d.units, np.inf).min(axis=2).sum(axis=0)
    if rows.has_budget:
        out[-1] = np.where(d.allowed, d.disc, np.inf).min(axis=2).sum()
    return out


def _target_limits(d: _SegData) -> np.ndarray:
    """Limits the optimizers aim at: ``limit * (1 - SHARED_RTOL)`` so that a solution within the
    solver's row tolerance still obeys the true limit, but never below the least usage possible
    (halfway to it), so a row that can only just be met is not made infeasible."""
    lim = d.rows.limits
    return lim - np.minimum(SHARED_RTOL * np.abs(lim), np.maximum(0.0, (lim - _min_usage(d)) / 2))


def _usage_conflicts(problem: SegmentProblem, d: _SegData) -> list[str]:
    """Shared rows that fail even when every (segment, bundle) takes its least-using allowed rung."""
    msgs = []
    rows = d.rows
    if rows.m == 0:
        return msgs
    big = np.where(d.allowed, d.units, np.inf).min(axis=2)  # [S, B]
    min_units_b = big.sum(axis=0)
    if rows.m_inv:
        min_use = rows.items.T @ min_units_b
        for j in np.flatnonzero(min_use > rows.limits[: rows.m_inv] * (1 + 1e-9) + 1e-9):
            bs = rows.items[:, j].nonzero()[0]
            names = ", ".join(problem.bundle_ids[b] for b in bs[:5]) + (" ..." if len(bs) > 5 else "")
            msgs.append(
                f"{rows.names[j]}: inventory {rows.limits[j]:.1f} < {min_use[j]:.1f} units expected even at "
                f"the least-selling allowed prices of bundles {names} (every bundle must get a price; "
                f"rules max_price/min_margin/max_change limit the prices)"
            )
    if rows.has_budget:
        dmin = np.where(d.allowed, d.disc, np.inf).min(axis=2).sum()
        if dmin > rows.limits[-1] * (1 + 1e-9) + 1e-9:
            msgs.append(
                f"budget: discount_budget {rows.limits[-1]:.2f} < {dmin:.2f} expected discount even at the "
                f"smallest allowed discounts (min_margin/max_change/ladder force the discounts)"
            )
    return msgs


# ----------------------------------------------------------------------------------------------------
# exact per-bundle choice with fairness (Lagrangian subproblem, diagnostics)
# ----------------------------------------------------------------------------------------------------


def _best_fair(V: np.ndarray, allowed: np.ndarray, prices: np.ndarray, gap: np.ndarray | None):
    """Per bundle, the best rung per segment with all segment prices within ``gap[b]``.

    V [S, B, L] values; returns rung [S, B] and total value [B] (-inf when no fair choice exists).
    Exact: every fair choice lies in a window [p, p + gap] starting at its lowest price p.
    """
    S, B, L = V.shape
    Vm = np.where(allowed, V, -np.inf)
    if gap is None or S == 1:
        r = Vm.argmax(axis=2)
        v = np.take_along_axis(Vm, r[:, :, None], 2)[:, :, 0]
        return r, v.sum(axis=0)
    best_v = np.full(B, -np.inf)
    best_r = np.zeros((S, B), dtype=np.int64)
    with np.errstate(invalid="ignore"):
        for t in range(L):
            start = prices[:, t]
            ok = np.isfinite(start)
            if not ok.any():
                continue
            W = (prices >= start[:, None]) & (prices <= (start + gap)[:, None]) & ok[:, None]
            Vt = np.where(W[None], Vm, -np.inf)
            r = Vt.argmax(axis=2)
            v = np.take_along_axis(Vt, r[:, :, None], 2)[:, :, 0].sum(axis=0)
            better = v > best_v
            best_v[better] = v[better]
            best_r[:, better] = r[:, better]
    return best_r, best_v


def _usage_of(d: _SegData, rung: np.ndarray) -> np.ndarray:
    """Shared-row usage [m] of a choice rung [S, B]."""
    rows = d.rows
    out = np.zeros(rows.m)
    u = np.take_along_axis(d.units, rung[:, :, None], 2)[:, :, 0]
    if rows.m_inv:
        out[: rows.m_inv] = rows.items.T @ u.sum(axis=0)
    if rows.has_budget:
        out[-1] = np.take_along_axis(d.disc, rung[:, :, None], 2).sum()
    return out


def _penalized(d: _SegData, mu: np.ndarray) -> np.ndarray:
    rows = d.rows
    V = d.obj.copy()
    if rows.m_inv:
        pen = rows.items @ mu[: rows.m_inv]
        V -= d.units * pen[None, :, None]
    if rows.has_budget:
        V -= mu[-1] * d.disc
    return V


def _bundle_usage(d: _SegData, rung: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per bundle: expected units [B] and discount [B] of a choice rung [S, B]."""
    return _take_at(d.units, rung).sum(axis=0), _take_at(d.disc, rung).sum(axis=0)


def _greedy_swaps(d: _SegData, base: np.ndarray, cand: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Move whole bundles from the feasible choice ``base`` to ``cand`` (fair per bundle) while every
    shared row still holds, most objective gained per unit of scarce usage first."""
    rows = d.rows
    gain = _take_at(d.obj, cand).sum(axis=0) - _take_at(d.obj, base).sum(axis=0)
    ub0, db0 = _bundle_usage(d, base)
    ub1, db1 = _bundle_usage(d, cand)
    du, dd = ub1 - ub0, db1 - db0
    use = _usage_of(d, base)
    todo = np.flatnonzero((gain > 0) & np.any(cand != base, axis=0))
    if not len(todo):
        return base
    items = sparse.csr_matrix(rows.items) if rows.m_inv else None
    # scarcity-weighted usage increase per bundle
    tight = 1.0 / np.maximum(limits - use, 1e-9 * np.maximum(limits, 1.0))
    cost = np.zeros(d.B)
    if rows.m_inv:
        cost += np.maximum(du, 0) * (items @ tight[: rows.m_inv])
    if rows.has_budget:
        cost += np.maximum(dd, 0) * tight[-1]
    order = todo[np.argsort(-(gain[todo] / (cost[todo] + 1e-12)), kind="stable")]
    out = base.copy()
    for b in order:
        if rows.m_inv:
            js = items.indices[items.indptr[b]: items.indptr[b + 1]]
            q = items.data[items.indptr[b]: items.indptr[b + 1]]
            new_inv = use[js] + du[b] * q
            if np.any((du[b] * q > 0) & (new_inv > limits[js])):
                continue
        if rows.has_budget and dd[b] > 0 and use[-1] + dd[b] > limits[-1]:
            continue
        if rows.m_inv:
            use[js] = new_inv
        if rows.has_budget:
            use[-1] += dd[b]
        out[:, b] = cand[:, b]
    return out


def _segment_lagrangian(d: _SegData, max_iter: int = 200, time_budget: float = 30.0):
    """Lagrangian heuristic: returns (rung [S, B] feasible or None, objective, dual bound).

    Dual: sign-based subgradient (Rprop) on the multipliers of the shared rows, each bundle solved
    exactly with fairness. Primal: the best feasible iterate, else multipliers of violated rows
    raised in small steps until feasible; then whole bundles are moved greedily toward the choices of
    the best-bound and the last iterates while the shared rows hold.
    """
    rows = d.rows
    t0 = time.perf_counter()
    limits = _target_limits(d)
    if rows.m == 0:
        r, v = _best_fair(d.obj, d.allowed, d.prices, d.gap)
        if not np.all(np.isfinite(v)):
            return None, -np.inf, np.inf
        return r, float(v.sum()), float(v.sum())

    def objective(r: np.ndarray) -> float:
        return float(_take_at(d.obj, r).sum())

    fin = np.isfinite(d.prices)
    typical = float(np.median(d.prices[fin])) if fin.any() else 1.0  # price scale of the multipliers
    mu = np.zeros(rows.m)
    step = np.full(rows.m, 0.05 * typical)
    if rows.has_budget:
        step[-1] = 0.05
    prev = np.zeros(rows.m)
    best_bound, best_obj, best_r = np.inf, -np.inf, None
    bound_choice = None
    recent: list[np.ndarray] = []
    for _ in range(max_iter):
        r, v = _best_fair(_penalized(d, mu), d.allowed, d.prices, d.gap)
        if not np.all(np.isfinite(v)):
            return None, -np.inf, np.inf
        use = _usage_of(d, r)
        bnd = float(v.sum() + mu @ rows.limits)  # valid for the true limits
        if bnd < best_bound:
            best_bound, bound_choice = bnd, r
        recent = (recent + [r])[-6:]
        g = use / np.maximum(limits, 1e-12) - 1.0
        if np.all(use <= limits):
            obj = objective(r)
            if obj > best_obj:
                best_obj, best_r = obj, r
            if np.all((mu <= 0) | (g >= -1e-4)):
                break
        sign = np.where((mu > 0) | (g > 0), np.sign(g), 0.0)
        step = np.where(sign * prev > 0, step * 1.2, np.where(sign * prev < 0, step * 0.5, step))
        mu = np.maximum(0.0, mu + sign * step)
        prev = sign
        if time.perf_counter() - t0 > time_budget:
            break
    if best_r is None:  # raise the multipliers of violated rows in small steps until feasible
        push = np.maximum(step, 1e-3 * typical)
        for _ in range(400):  # ends: a large enough multiplier makes each row's usage minimal
            r, _v = _best_fair(_penalized(d, mu), d.allowed, d.prices, d.gap)
            use = _usage_of(d, r)
            viol = use > limits
            if not viol.any():
                best_obj, best_r = objective(r), r
                break
            mu = np.where(viol, mu * 1.05 + push, mu)
            push = np.where(viol, push * 1.1, push)
    if best_r is None:
        return None, -np.inf, best_bound
    for cand in [bound_choice] + recent[::-1]:
        if cand is None:
            continue
        r2 = _greedy_swaps(d, best_r, cand, limits)
        o2 = objective(r2)
        if o2 > best_obj and np.all(_usage_of(d, r2) <= limits):
            best_obj, best_r = o2, r2
    return best_r, best_obj, best_bound


# ----------------------------------------------------------------------------------------------------
# the MILP
# ----------------------------------------------------------------------------------------------------


@dataclass
class _Milp:
    """The compiled staircase MILP and what is needed to read its solution back."""

    problem: cp.Problem
    y: cp.Variable  # [n_y] "price >= k-th allowed rung" (k >= 1) of each (segment, bundle)
    si: np.ndarray  # [n] allowed (segment, bundle, rung) entries, sorted by group then rung
    bi: np.ndarray
    li: np.ndarray
    first: np.ndarray  # [n] bool: the cheapest allowed rung of its group (no variable: y = 1)
    var: np.ndarray  # [n] variable index of the entry (-1 for first entries)
    scale: float
    constant: float  # objective of every group at its cheapest rung
    shared_names: list[str]
    slack: cp.Variable | None = None
    m: cp.Variable | None = None  # fairness levels m[b, l], one per (m_b, m_l)
    m_b: np.ndarray | None = None
    m_l: np.ndarray | None = None

    @property
    def n_vars(self) -> int:
        return int((~self.first).sum())

    def start_values(self, rung: np.ndarray, prices: np.ndarray) -> dict[int, np.ndarray]:
        """Variable values (by cvxpy variable id) of the price book ``rung [S, B]`` (a MIP start)."""
        chosen = rung[self.si, self.bi]
        yv = np.zeros(self.y.size)
        on = ~self.first & (self.li <= chosen)
        yv[self.var[on]] = 1.0
        out = {self.y.id: yv}
        if self.m is not None:
            top = np.take_along_axis(prices[None].repeat(rung.shape[0], 0), rung[:, :, None], 2)[:, :, 0].max(axis=0)
            out[self.m.id] = (top[self.m_b] >= prices[self.m_b, self.m_l] - EPS).astype(float)
        if self.slack is not None:
            out[self.slack.id] = np.zeros(self.slack.size)
        return out


def _fair_rhs(d: _SegData) -> np.ndarray | None:
    """Per bundle a fairness limit midway between the largest allowed and the smallest forbidden
    price difference on its ladder (so comparisons are exact whatever the float rounding)."""
    if d.gap is None:
        return None
    P = d.prices
    diff = np.abs(P[:, :, None] - P[:, None, :])
    ok = np.isfinite(diff)
    lo = np.where(ok & (diff <= d.gap[:, None, None]), diff, -np.inf).max(axis=(1, 2))
    hi = np.where(ok & (diff > d.gap[:, None, None]), diff, np.inf).min(axis=(1, 2))
    return np.where(np.isfinite(hi), (np.maximum(lo, 0) + hi) / 2, d.gap)


def build_segment_milp(
    problem: SegmentProblem, cfg: OptimizeConfig, relax: bool = False, elastic: bool = False, data: _SegData | None = None
) -> _Milp:
    """The segment MILP in CVXPY, staircase form (``relax``: LP relaxation; ``elastic``: penalized
    slack on the shared rows).

    Per (segment s, bundle b) with allowed rungs ``k = 0..K-1`` (ascending price) the binaries are
    ``y[s,b,k] = 1 iff price >= price_k`` (k >= 1; ``y_0 = 1``), chained ``y_{k+1} <= y_k``; the
    chosen rung is the last k with ``y_k = 1`` and any per-rung quantity ``q`` (objective, units,
    discount) is ``q_0 + sum_k (q_k - q_{k-1}) y_k``: exactly the one-hot model with
    ``x_k = y_k - y_{k+1}``. Fairness uses ``m[b,l] in [0,1]`` ("the highest segment price of b is
    >= price_l")::

        y[s,b,k] <= m[b, l(k)]                    for every s, k
        m[b,l]   <= y[s,b,k'(s,l)]                for every s, l  (k' = cheapest rung >= price_l - gap_b)

    so max price >= p implies every segment price >= p - gap_b. All these rows are ``y_a <= y_b``
    (a network matrix, totally unimodular): without inventory/budget rows the LP relaxation is
    integral, with them it is nearly so; this is why HiGHS solves it fast (measured on 2,000 bundles
    x 8 segments, 200k binaries: 34 s with presolve off and simplex, while the one-hot model with
    hi/lo fairness variables had not finished its root LP after 180 s).
    """
    d = data if data is not None else _segment_data(problem, cfg)
    S, B, L = d.S, d.B, d.L
    si, bi, li = np.nonzero(d.allowed)  # C order: sorted by (s, b) then l
    n = len(si)
    g = si * B + bi
    first = np.ones(n, dtype=bool)
    first[1:] = g[1:] != g[:-1]
    var = np.full(n, -1, dtype=np.int64)
    ny = int((~first).sum())
    var[~first] = np.arange(ny)
    prev = np.r_[0, np.arange(n - 1)]  # previous entry of the group (meaningful where not first)

    def steps(q: np.ndarray) -> tuple[np.ndarray, float]:
        """Coefficients [n_y] of y and the constant (sum of q at each group's cheapest rung)."""
        return (q - q[prev])[~first], float(q[first].sum())

    c = d.obj[si, bi, li]
    dc, const = steps(c)
    scale = float(np.abs(dc).max()) if ny and np.abs(dc).max() > 0 else 1.0
    nv = max(ny, 1)  # a dummy variable when every group has a single allowed rung
    y = cp.Variable(nv, bounds=[0, 1], name="y") if relax else cp.Variable(nv, boolean=True, name="y")
    cons = [] if ny else [y == 0]
    # chain y_k <= y_{k-1} (k >= 2)
    kk = np.flatnonzero(~first)
    chain = kk[~first[prev[kk]]]
    if len(chain):
        r = np.arange(len(chain))
        A = sparse.csr_matrix(
            (np.r_[np.ones(len(chain)), -np.ones(len(chain))], (np.r_[r, r], np.r_[var[chain], var[prev[chain]]])),
            shape=(len(chain), nv),
        )
        cons.append(A @ y <= 0)
    rhs = _fair_rhs(d)
    mvar = mid = None
    if rhs is not None and ny:
        pmax = np.where(d.allowed, d.prices[None], -np.inf).max(axis=(0, 2))
        pmin = np.where(d.allowed, d.prices[None], np.inf).min(axis=(0, 2))
        fb = pmax - pmin > rhs  # bundles where fairness can bind
        used = d.allowed.any(axis=0) & fb[:, None]  # [B, L] price levels needing an m variable
        nm = int(used.sum())
        if nm:
            mid = np.full((B, L), -1, dtype=np.int64)
            mid[used] = np.arange(nm)
            m_lb = np.zeros(nm)
            m_ub = np.ones(nm)
            sel = fb[bi]
            m_lb[mid[bi[sel & first], li[sel & first]]] = 1.0  # (i) with k = 0
            e = np.flatnonzero(sel & ~first)
            r = np.arange(len(e))
            Ay = sparse.csr_matrix((np.ones(len(e)), (r, var[e])), shape=(len(e), nv))
            Am = sparse.csr_matrix((np.ones(len(e)), (r, mid[bi[e], li[e]])), shape=(len(e), nm))
            rows_m, rows_y = [], []
            gstart = np.flatnonzero(first)
            gend = np.r_[gstart[1:], n]
            pv = d.prices[bi, li]
            for a0, e0 in zip(gstart, gend):  # (ii) per (segment, bundle)
                b = bi[a0]
                if not fb[b]:
                    continue
                lv = np.flatnonzero(used[b])
                k = np.searchsorted(pv[a0:e0], d.prices[b, lv] - rhs[b])  # cheapest rung >= p_l - gap
                none = k >= e0 - a0
                m_ub[mid[b, lv[none]]] = 0.0
                nz = (k > 0) & ~none
                rows_m.append(mid[b, lv[nz]])
                rows_y.append(var[a0 + k[nz]])
            if np.any(m_lb > m_ub):  # the pre-check names these conflicts
                raise InfeasibleRulesError(["fairness_gap conflicts with the allowed price ranges"])
            mvar = cp.Variable(nm, bounds=[m_lb, m_ub], name="m")
            cons.append(Ay @ y <= Am @ mvar)
            if rows_m:
                rm_ = np.concatenate(rows_m)
                ry_ = np.concatenate(rows_y)
                r = np.arange(len(rm_))
                Bm = sparse.csr_matrix((np.ones(len(r)), (r, rm_)), shape=(len(r), nm))
                By = sparse.csr_matrix((np.ones(len(r)), (r, ry_)), shape=(len(r), nv))
                cons.append(Bm @ mvar <= By @ y)
    rows = d.rows
    names: list[str] = []
    slack = None
    if rows.m and ny:
        blocks, lim, consts, worst = [], [], [], []
        umax = np.where(d.allowed, d.units, -np.inf).max(axis=2).sum(axis=0)  # [B]
        if rows.m_inv:
            items = sparse.csr_matrix(rows.items)
            coo = items[bi].tocoo()  # (entry, product row, qty)
            q = d.units[si, bi, li]
            dq = q - q[prev]
            ke = ~first[coo.row]
            blocks.append(sparse.csr_matrix(
                (dq[coo.row[ke]] * coo.data[ke], (coo.col[ke], var[coo.row[ke]])), shape=(rows.m_inv, nv)
            ))
            lim += list(rows.limits[: rows.m_inv])
            consts += list(rows.items.T @ np.bincount(bi[first], weights=q[first], minlength=B))
            worst += list(rows.items.T @ umax)
        if rows.has_budget:
            ddc, dconst = steps(d.disc[si, bi, li])
            blocks.append(sparse.csr_matrix(ddc[None, :]))
            lim.append(rows.limits[-1])
            consts.append(dconst)
            worst.append(float(np.where(d.allowed, d.disc, -np.inf).max(axis=2).sum()))
        U = sparse.vstack(blocks).tocsr()
        lim = _target_limits(d)
        keep = np.flatnonzero(np.asarray(worst) > lim)  # rows that can bind
        names = [rows.names[j] for j in keep]
        if len(keep):
            sc = np.where(lim[keep] > 0, lim[keep], 1.0)
            Uk = sparse.diags(1.0 / sc) @ U[keep]
            rhs_k = (lim[keep] - np.asarray(consts)[keep]) / sc
            if elastic:
                slack = cp.Variable(len(keep), nonneg=True, name="slack")
                cons.append(Uk @ y <= rhs_k + slack)
            else:
                cons.append(Uk @ y <= rhs_k)
    objective = (np.r_[dc, np.zeros(nv - ny)] / scale) @ y
    if slack is not None:
        objective = objective - 1e3 * max(S * B, 1) * cp.sum(slack)
    prob = cp.Problem(cp.Maximize(objective), cons)
    m_b, m_l = np.nonzero(mid >= 0) if mvar is not None else (None, None)  # C order, as mid was numbered
    return _Milp(prob, y, si, bi, li, first, var, scale, const, names, slack, mvar, m_b, m_l)


@dataclass
class _SolverResult:
    status: str  # cvxpy status
    x: np.ndarray | None
    primal_ok: bool  # the solver says a feasible primal solution exists
    mip_gap: float | None
    dual_bound: float | None  # upper bound on the objective (currency)
    solve_time: float


def _run_solver(milp: _Milp, cfg: OptimizeConfig, start: dict[int, np.ndarray] | None = None) -> _SolverResult:
    """Solve with HiGHS through CVXPY; decode the status honestly (a time-out may carry an all-zero
    non-solution).

    ``start`` (variable id -> values) is handed to HiGHS as a MIP start. CVXPY's ``solve()`` offers no
    way to pass one, so the problem is compiled with ``get_problem_data``, solved with the HiGHS
    interface's ``solve_via_data`` (its warm-start path: ``Highs.setSolution``) and read back with
    ``unpack_results``: the same three steps ``solve()`` runs.
    """
    import highspy

    opts: dict[str, Any] = dict(cfg.highs_options)
    opts.update(time_limit=float(cfg.time_limit_s), mip_rel_gap=float(cfg.mip_rel_gap),
                threads=int(cfg.threads), random_seed=int(cfg.seed))
    prob = milp.problem
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():  # "solution may be inaccurate" on a time-out: the status is read below
            warnings.simplefilter("ignore", UserWarning)
            data, chain, inverse = prob.get_problem_data(cp.HIGHS)
            cache: dict[str, Any] = {}
            if start is not None:
                offsets = next(i.var_offsets for i in reversed(inverse) if hasattr(i, "var_offsets"))
                col = np.zeros(len(data[cp.settings.C]))
                for vid, val in start.items():
                    col[offsets[vid]: offsets[vid] + len(val)] = val
                sol = highspy.HighsSolution()
                sol.col_value = col
                sol.value_valid = True
                cache[chain.solver.name()] = (None, None, {"model_status": "kOptimal", "solution": sol})
            raw = chain.solver.solve_via_data(data, start is not None, False, opts, cache)
            prob.unpack_results(raw, chain, inverse)
    except cp.error.SolverError as e:  # pragma: no cover - depends on the solver build
        return _SolverResult(f"solver_error: {e}", None, False, None, None, time.perf_counter() - t0)
    st = prob.solver_stats
    info = st.extra_stats if st is not None else None
    pss = getattr(info, "primal_solution_status", 0)
    gap = getattr(info, "mip_gap", None)
    dbd = getattr(info, "mip_dual_bound", None)
    x = milp.y.value
    ok = prob.status in cp.settings.SOLUTION_PRESENT and pss == 2 and x is not None
    return _SolverResult(
        str(prob.status), None if x is None else np.asarray(x, dtype=np.float64), bool(ok),
        None if gap is None or not np.isfinite(gap) else float(gap),
        None if dbd is None or not np.isfinite(dbd) else float(-dbd) * milp.scale + milp.constant,
        float(st.solve_time) if st is not None and st.solve_time is not None else time.perf_counter() - t0,
    )


def _decode(milp: _Milp, yv: np.ndarray | None, S: int, B: int) -> np.ndarray | None:
    """Rung [S, B] from the 0/1 staircase vector, or None when it is not integral and monotone."""
    n = len(milp.si)
    yfull = np.ones(n)
    if milp.n_vars:
        if yv is None or len(yv) < milp.n_vars or not np.all(np.isfinite(yv)):
            return None
        if np.any(np.abs(yv - np.round(yv)) > 1e-4):
            return None
        yfull[~milp.first] = np.round(yv)[milp.var[~milp.first]]
    on = yfull > 0.5
    g = milp.si * B + milp.bi
    prev_on = np.r_[True, on[:-1]]
    if np.any(on & ~prev_on & ~milp.first):  # a 1 after a 0 inside a group
        return None
    nxt_first = np.r_[milp.first[1:], True]
    last = on & (nxt_first | ~np.r_[on[1:], False])  # last 'on' entry of each group
    if last.sum() != S * B or len(np.unique(g[last])) != S * B:
        return None
    rung = np.empty((S, B), dtype=np.int64)
    rung[milp.si[last], milp.bi[last]] = milp.li[last]
    return rung


# ----------------------------------------------------------------------------------------------------
# rule checks and reporting
# ----------------------------------------------------------------------------------------------------


def check_segment_rules(problem: SegmentProblem, cfg: OptimizeConfig, price: np.ndarray) -> list[str]:
    """Every rule violated by a price book ``price [S, B]`` (empty list: all rules hold)."""
    S, B, _ = problem.shape
    price = np.asarray(price, dtype=np.float64)
    out: list[str] = []
    if price.shape != (S, B) or not np.all(np.isfinite(price)):
        return ["price book incomplete (NaN or wrong shape)"]
    onl = np.abs(problem.ladder[None] - price[:, :, None]) <= EPS
    rung = np.where(onl.any(axis=2), onl.argmax(axis=2), -1)
    for s, b in zip(*np.nonzero(rung < 0)):
        out.append(f"{problem.bundle_ids[b]}/{problem.segment_ids[s]}: price {price[s, b]:.2f} not on the ladder")
    okr = np.take_along_axis(problem.allowed, np.maximum(rung, 0)[:, :, None], 2)[:, :, 0] | (rung < 0)
    for s, b in zip(*np.nonzero(~okr)):
        out.append(f"{problem.bundle_ids[b]}/{problem.segment_ids[s]}: rung masked out by the input")
    r = cfg.rules
    hi = problem.list_sum * (1 - r.min_bundle_discount)
    lo = problem.cost_sum * (1 + r.min_margin)
    for s, b in zip(*np.nonzero(price > hi[None] + EPS)):
        out.append(f"{problem.bundle_ids[b]}/{problem.segment_ids[s]}: max_price {price[s, b]:.2f} > {hi[b]:.2f}")
    for s, b in zip(*np.nonzero(price < lo[None] - EPS)):
        out.append(f"{problem.bundle_ids[b]}/{problem.segment_ids[s]}: min_margin {price[s, b]:.2f} < {lo[b]:.2f}")
    if problem.current_price is not None and r.max_change is not None:
        cur = problem.current_price
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(cur) & (np.abs(price - cur) > r.max_change * cur + EPS)
        for s, b in zip(*np.nonzero(bad)):
            out.append(f"{problem.bundle_ids[b]}/{problem.segment_ids[s]}: max_change {price[s, b]:.2f} vs {cur[s, b]:.2f}")
    if r.fairness_gap is not None and S > 1:
        spread = price.max(axis=0) - price.min(axis=0)
        for b in np.flatnonzero(spread > r.fairness_gap * problem.list_sum + EPS):
            out.append(f"{problem.bundle_ids[b]}: fairness spread {spread[b]:.2f} > {r.fairness_gap * problem.list_sum[b]:.2f}")
    use, lim, names = segment_usage(problem, cfg, price)
    for j in np.flatnonzero(use > lim * (1 + 1e-9) + 1e-9):
        out.append(f"{names[j]}: usage {use[j]:.4f} > limit {lim[j]:.4f}")
    return out


def segment_usage(problem: SegmentProblem, cfg: OptimizeConfig, price: np.ndarray):
    """Shared-row usage of a price book: (usage [m], limits [m], names)."""
    S, B, _ = problem.shape
    onl = np.abs(problem.ladder[None] - price[:, :, None]) <= EPS
    rung = onl.argmax(axis=2)
    a_use = _usage_acceptance(problem.accept_mean, problem.accept_high, cfg)
    w = problem.sizes[:, None] * _offers(problem.offers_per_customer, cfg, S, B)
    units = w * np.take_along_axis(a_use, rung[:, :, None], 2)[:, :, 0]
    rows = _shared_rows(problem.bundle_items, problem.inventory, problem.product_ids, cfg)
    use = np.zeros(rows.m)
    if rows.m_inv:
        use[: rows.m_inv] = rows.items.T @ units.sum(axis=0)
    if rows.has_budget:
        use[-1] = float((units * (problem.list_sum[None] - price)).sum())
    return use, rows.limits, rows.names


def _segment_report(
    problem: SegmentProblem, cfg: OptimizeConfig, d: _SegData, rung: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    S, B, L = d.S, d.B, d.L
    P = d.prices
    price = np.take_along_axis(np.broadcast_to(P[None], (S, B, L)), rung[:, :, None], 2)[:, :, 0]

    def take(a: np.ndarray) -> np.ndarray:
        return _take_at(a, rung)

    margin = price - problem.cost_sum[None]
    a_mean = take(problem.accept_mean)
    a_low = take(problem.accept_low) if problem.accept_low is not None else a_mean
    a_high = take(problem.accept_high) if problem.accept_high is not None else a_mean
    exp_profit = d.w * a_mean * margin
    p_low, p_high = d.w * a_low * margin, d.w * a_high * margin
    objv = take(d.obj)
    units = take(d.units)
    # shared rows: usage and slack
    use = _usage_of(d, rung)
    rows = d.rows
    slack = rows.limits - use
    tight = slack <= TIGHT_RTOL * np.abs(rows.limits)  # a shared row (nearly) used up
    # binding: a one-rung move that would raise the objective is forbidden by the rule
    bd = price_bounds(problem.list_sum, problem.cost_sum, cfg.rules, problem.current_price)
    maxp, minp = bd.max_price, bd.min_price
    c_lo = bd.change_lower if bd.change_lower is not None else np.full((1, B), -np.inf)
    c_hi = bd.change_upper if bd.change_upper is not None else np.full((1, B), np.inf)
    c_lo = np.broadcast_to(c_lo, (S, B))
    c_hi = np.broadcast_to(c_hi, (S, B))
    gap = cfg.rules.fairness_gap * problem.list_sum if (cfg.rules.fairness_gap is not None and S > 1) else None
    binding = [[[] for _ in range(B)] for _ in range(S)]
    items_csr = sparse.csr_matrix(rows.items) if rows.m_inv else None
    rule_ok = rule_mask(P, problem.list_sum, problem.cost_sum, cfg.rules, problem.current_price)
    rule_ok = np.broadcast_to(rule_ok if rule_ok.ndim == 3 else rule_ok[None], (S, B, L))
    for direction in (+1, -1):
        nr = rung + direction
        valid = (nr >= 0) & (nr < L)
        nrc = np.clip(nr, 0, L - 1)
        np_ = np.take_along_axis(np.broadcast_to(P[None], (S, B, L)), nrc[:, :, None], 2)[:, :, 0]
        valid &= np.isfinite(np_)
        better = valid & (_take_at(d.obj_all, nrc) > take(d.obj_all) + 1e-12 * max(1.0, float(np.abs(objv).max(initial=0))))
        if not better.any():
            continue
        for s, b in zip(*np.nonzero(better)):
            q = np_[s, b]
            tags = binding[s][b]
            if direction > 0:
                if q > maxp[b] + EPS:
                    tags.append("max_price")
                if q > c_hi[s, b] + EPS:
                    tags.append("max_change")
            else:
                if q < minp[b] - EPS:
                    tags.append("min_margin")
                if q < c_lo[s, b] - EPS:
                    tags.append("max_change")
            if gap is not None:
                others = np.delete(price[:, b], s)
                if max(q, others.max()) - min(q, others.min()) > gap[b] + EPS:
                    tags.append("fairness")
            if rows.m:
                du = d.w[s, b] * (_usage_acceptance_at(problem, cfg, s, b, nrc[s, b]) - _usage_acceptance_at(problem, cfg, s, b, rung[s, b]))
                if rows.m_inv:
                    row = items_csr[b]
                    for j, qty in zip(row.indices, row.data):
                        if du * qty > 0 and (use[j] + du * qty > rows.limits[j] * (1 + 1e-9) + 1e-9 or tight[j]):
                            tags.append(rows.names[j])
                if rows.has_budget:
                    u_new = d.w[s, b] * _usage_acceptance_at(problem, cfg, s, b, nrc[s, b])
                    dd = u_new * (problem.list_sum[b] - q) - units[s, b] * (problem.list_sum[b] - price[s, b])
                    if dd > 0 and (use[-1] + dd > rows.limits[-1] * (1 + 1e-9) + 1e-9 or tight[-1]):
                        tags.append("budget")
            if not tags and rule_ok[s, b, nrc[s, b]] and not problem.allowed[s, b, nrc[s, b]]:
                tags.append("ladder")
    cur = problem.current_price if problem.current_price is not None else np.full((S, B), np.nan)
    with np.errstate(invalid="ignore"):
        slack_change = np.minimum(price - c_lo, c_hi - price)
    slack_change = np.where(np.isfinite(slack_change), slack_change, np.nan)
    slack_fair = (gap - (price.max(axis=0) - price.min(axis=0))) if gap is not None else np.full(B, np.nan)
    table = pd.DataFrame(
        {
            "segment_id": np.repeat(problem.segment_ids, B),
            "bundle_id": np.tile(problem.bundle_ids, S),
            "rung": rung.ravel(),
            "price": price.ravel(),
            "list_sum": np.tile(problem.list_sum, S),
            "cost_sum": np.tile(problem.cost_sum, S),
            "discount": (1 - price / problem.list_sum[None]).ravel(),
            "current_price": cur.ravel(),
            "expected_conversion": a_mean.ravel(),
            "expected_units": (d.w * a_mean).ravel(),
            "expected_profit": exp_profit.ravel(),
            "profit_low": p_low.ravel(),
            "profit_high": p_high.ravel(),
            "objective": objv.ravel(),
            "binding_rules": [";".join(dict.fromkeys(binding[s][b])) for s in range(S) for b in range(B)],
            "slack_max_price": (maxp[None] - price).ravel(),
            "slack_min_margin": (price - minp[None]).ravel(),
            "slack_max_change": slack_change.ravel(),
            "slack_fairness": np.tile(slack_fair, S),
        }
    )
    tags_all = ";".join(table["binding_rules"])
    shared = pd.DataFrame(
        {
            "rule": rows.names,
            "limit": rows.limits,
            "usage": use,
            "slack": slack,
            "binding": [(n in tags_all.split(";")) or bool(t) for n, t in zip(rows.names, tight)],
        }
    )
    totals = {
        "objective": float(objv.sum()),
        "expected_profit": float(exp_profit.sum()),
        "profit_low": float(p_low.sum()),
        "profit_high": float(p_high.sum()),
    }
    return table, shared, totals


def _take_at(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.take_along_axis(a, idx[:, :, None], 2)[:, :, 0]


def _usage_acceptance_at(problem: SegmentProblem, cfg: OptimizeConfig, s: int, b: int, l: int) -> float:
    if cfg.rules.usage_acceptance == "high" and problem.accept_high is not None:
        return float(np.clip(problem.accept_high[s, b, l], 0, 1))
    return float(np.clip(problem.accept_mean[s, b, l], 0, 1))


def _solution(problem, cfg, d, rung, **kw) -> SegmentSolution:
    table, shared, tot = _segment_report(problem, cfg, d, rung)
    price = table["price"].to_numpy().reshape(d.S, d.B)
    return SegmentSolution(price=price, rung=rung, table=table, shared=shared, **tot, **kw)


# ----------------------------------------------------------------------------------------------------
# public: segment prices
# ----------------------------------------------------------------------------------------------------


def _precheck(problem: SegmentProblem, cfg: OptimizeConfig, d: _SegData) -> None:
    msgs = _empty_groups(problem, d, cfg)
    if msgs:
        raise InfeasibleRulesError(msgs, header="no allowed price")
    msgs = _fairness_conflicts(problem, d, cfg) + _usage_conflicts(problem, d)
    if msgs:
        raise InfeasibleRulesError(msgs)


def _diagnose_infeasible(problem: SegmentProblem, cfg: OptimizeConfig, d: _SegData) -> InfeasibleRulesError:
    """Elastic LP: which shared rows must be broken (with fairness and the per-price rules kept)."""
    el = build_segment_milp(problem, cfg, relax=True, elastic=True, data=d)
    msgs = []
    try:
        el.problem.solve(solver=cp.HIGHS, highs_options={"solver": "ipm", "threads": int(cfg.threads)})
        sv = el.slack.value if el.slack is not None else None
    except (cp.error.SolverError, ValueError):  # pragma: no cover
        sv = None
    if sv is not None:
        for name, v in zip(el.shared_names, sv):
            if v > 1e-6:
                msgs.append(f"{name} must be exceeded by {100 * v:.2f}% of its limit given fairness_gap, "
                            f"max_price, min_margin and max_change (every bundle must get a price)")
    if not msgs:
        msgs = ["fairness_gap, max_change, inventory and budget rules jointly exclude every price book"]
    return InfeasibleRulesError(msgs)


def _previous_book(problem: SegmentProblem, cfg: OptimizeConfig) -> np.ndarray | None:
    if problem.current_price is None:
        return None
    cur = np.asarray(problem.current_price, dtype=np.float64)
    if not np.all(np.isfinite(cur)):
        return None
    onl = np.abs(problem.ladder[None] - cur[:, :, None]) <= EPS
    if not onl.any(axis=2).all():
        return None
    if check_segment_rules(problem, cfg, cur):
        return None
    return onl.argmax(axis=2)


def solve_segment_prices(problem: SegmentProblem, cfg: OptimizeConfig) -> SegmentSolution:
    """Optimal (or flagged, rule-safe) price per (segment, bundle); see the module docstring.

    Steps: pre-checks (named conflicts) -> Lagrangian heuristic (a rule-safe price book and a dual
    bound; with ``cfg.warm_start`` it runs first and is handed to HiGHS as a MIP start) -> MILP
    (CVXPY + HiGHS, ``time_limit_s`` for the whole call, at least 1 s for HiGHS) -> status and rule
    checks -> publish the MILP answer if proven optimal, else the best rule-checked candidate, flagged.

    HiGHS checks its time limit between LP solves only, so the root LP of a very large model can
    overrun ``time_limit_s`` (about 20-30 s of root LP at 2,000 x 8 x 20 on 2 busy cores).

    Raises :class:`InfeasibleRulesError` (naming the rules/products in conflict) when no price book
    satisfies the rules, :class:`OptimizationFailedError` when the solver gives nothing usable and no
    rule-safe fallback exists.
    """
    t0 = time.perf_counter()
    d = _segment_data(problem, cfg)
    _precheck(problem, cfg, d)
    milp = build_segment_milp(problem, cfg, data=d)
    lag = None  # (rung, objective, bound) of the Lagrangian heuristic, when computed
    start = None
    if cfg.warm_start:
        lag = _segment_lagrangian(d, time_budget=0.25 * cfg.time_limit_s)
        if lag[0] is not None and not check_segment_rules(problem, cfg, _prices_of(d, lag[0])):
            start = milp.start_values(lag[0], d.prices)
    left = max(1.0, cfg.time_limit_s - (time.perf_counter() - t0))
    res = _run_solver(milp, cfg.model_copy(update={"time_limit_s": left}), start)
    if res.status in ("infeasible", "infeasible_inaccurate"):
        raise _diagnose_infeasible(problem, cfg, d)
    notes: list[str] = []
    rung = _decode(milp, res.x, d.S, d.B) if res.primal_ok else None
    if res.primal_ok and rung is None:
        notes.append("solver reported a solution that is not one ladder price per (segment, bundle)")
    if rung is not None:
        bad = check_segment_rules(problem, cfg, _prices_of(d, rung))
        if bad:
            notes.append("solver solution breaks rules (not published): " + "; ".join(bad[:5]))
            rung = None
    common = {"solver_status": res.status, "solve_time_s": res.solve_time, "warnings": notes}
    lbound = lag[2] if lag is not None else None
    if rung is not None and res.status == "optimal":
        bounds = [x for x in (res.dual_bound, lbound) if x is not None and np.isfinite(x)]
        sol = _solution(problem, cfg, d, rung, status="optimal", source="milp", mip_gap=res.mip_gap,
                        dual_bound=min(bounds) if bounds else None, **common)
        sol.wall_s = time.perf_counter() - t0
        return sol
    # not proven optimal: compare every rule-safe candidate and publish the best, flagged
    cands: list[tuple[float, str, np.ndarray]] = []
    if rung is not None:
        cands.append((float(_take_at(d.obj, rung).sum()), "milp_incumbent", rung))
        reason = f"solver stopped ({res.status}) with a feasible, not proven optimal solution"
    else:
        reason = f"solver status {res.status!r} without a usable feasible solution"
    if lag is None:
        lag = _segment_lagrangian(d, time_budget=max(5.0, 0.5 * cfg.time_limit_s))
        lbound = lag[2]
    if lag[0] is not None and not check_segment_rules(problem, cfg, _prices_of(d, lag[0])):
        cands.append((lag[1], "lagrangian", lag[0]))
    pr = _previous_book(problem, cfg)
    if pr is not None:
        cands.append((float(_take_at(d.obj, pr).sum()), "previous_price_book", pr))
    if not cands:
        raise OptimizationFailedError(reason + "; no rule-safe fallback (heuristic failed, no valid previous price book)")
    obj, source, rung = max(cands, key=lambda t: t[0])
    bounds = [x for x in (res.dual_bound, lbound) if x is not None and np.isfinite(x)]
    bound = min(bounds) if bounds else None
    gap = (bound - obj) / abs(bound) if bound else None
    sol = _solution(problem, cfg, d, rung, status=f"feasible ({source}; gap {gap if gap is None else f'{gap:.2e}'})",
                    source=source, mip_gap=gap, dual_bound=bound, **common)
    sol.fallback_reason = reason + f"; published the {source.replace('_', ' ')} (best of {len(cands)} rule-checked candidates)"
    sol.wall_s = time.perf_counter() - t0
    return sol


def _prices_of(d: _SegData, rung: np.ndarray) -> np.ndarray:
    return np.take_along_axis(np.broadcast_to(d.prices[None], d.allowed.shape), rung[:, :, None], 2)[:, :, 0]


def brute_force_segment_prices(problem: SegmentProblem, cfg: OptimizeConfig, max_combos: int = 2_000_000) -> SegmentSolution:
    """Exact optimum by enumerating every price book (tiny instances only; tests)."""
    t0 = time.perf_counter()
    d = _segment_data(problem, cfg)
    S, B = d.S, d.B
    opts = [np.flatnonzero(d.allowed[s, b]) for s in range(S) for b in range(B)]
    if any(len(o) == 0 for o in opts):
        raise InfeasibleRulesError(_empty_groups(problem, d, cfg), header="no allowed price")
    n = math.prod(len(o) for o in opts)
    if n > max_combos:
        raise ValueError(f"{n} price books: too many to enumerate (max {max_combos})")
    G = S * B
    best = (-np.inf, None)
    limits = _target_limits(d)
    chunk = 200_000
    it = itertools.product(*opts)
    while True:
        block = np.array(list(itertools.islice(it, chunk)), dtype=np.int64)
        if block.size == 0:
            break
        block = block.reshape(-1, G)
        s_idx = np.repeat(np.arange(S), B)
        b_idx = np.tile(np.arange(B), S)
        obj = d.obj[s_idx, b_idx, block].sum(axis=1)
        ok = np.ones(len(block), dtype=bool)
        if d.gap is not None:
            pr = d.prices[b_idx, block].reshape(-1, S, B)
            ok &= np.all(pr.max(axis=1) - pr.min(axis=1) <= d.gap, axis=1)
        if d.rows.m:
            units = d.units[s_idx, b_idx, block].reshape(-1, S, B).sum(axis=1)  # [n, B]
            if d.rows.m_inv:
                use = np.asarray(units @ d.rows.items.toarray())
                ok &= np.all(use <= limits[: d.rows.m_inv], axis=1)
            if d.rows.has_budget:
                ok &= d.disc[s_idx, b_idx, block].sum(axis=1) <= limits[-1]
        if ok.any():
            k = np.flatnonzero(ok)[np.argmax(obj[ok])]
            if obj[k] > best[0]:
                best = (float(obj[k]), block[k].reshape(S, B).copy())
    if best[1] is None:
        raise InfeasibleRulesError(["no price book satisfies fairness, inventory and budget together"])
    sol = _solution(problem, cfg, d, best[1], status="optimal", source="brute_force", dual_bound=best[0])
    sol.wall_s = time.perf_counter() - t0
    return sol


def solve_box_lp(weights: Sequence[float], lower: Sequence[float], upper: Sequence[float]) -> tuple[np.ndarray, float]:
    """``max weights . p`` s.t. ``lower <= p <= upper`` (LP in CVXPY): the seed document's worked example."""
    w = np.asarray(weights, dtype=np.float64)
    p = cp.Variable(len(w))
    prob = cp.Problem(cp.Maximize(w @ p), [p >= np.asarray(lower, float), p <= np.asarray(upper, float)])
    prob.solve(solver=cp.HIGHS)
    if prob.status != "optimal":
        raise OptimizationFailedError(f"box LP: {prob.status}")
    return np.asarray(p.value), float(prob.value)


# ----------------------------------------------------------------------------------------------------
# personal prices
# ----------------------------------------------------------------------------------------------------

BINDING_BITS = {
    "max_price": 1,
    "min_margin": 2,
    "max_change": 4,
    "customer_band": 8,
    "inventory": 16,
    "budget": 32,
}


def binding_names(mask: int) -> list[str]:
    return [k for k, v in BINDING_BITS.items() if mask & v]


@dataclass
class CustomerProblem:
    """Personal prices for each customer's candidate bundles.

    customer_ids [C]; segment [C] int index into segment_ids; candidates [C, K] int32 bundle index
    (-1: no candidate); rungs [S, B, R] int16 ladder columns of the band of (segment, bundle)
    (``-1`` padded; from :func:`customer_rungs`); accept_mean / accept_low / accept_high
    [C, K, R] float32 acceptance at ``ladder[b, rungs[segment[c], b, r]]`` (low/high None: mean);
    segment_price [S, B] the segment price book (band centre); ladder [B, L]; allowed [B, L] or
    [S, B, L]; list_sum, cost_sum [B]; current_price [S, B] / [B] / None (max_change);
    bundle_items [B, P] sparse; inventory [P] (inf/NaN: unlimited) or None; offers_per_customer: expected
    offers in the period, scalar, per customer [C] or per candidate [C, K] (None: cfg). Memory: the three
    acceptance arrays dominate (C*K*R*4 bytes each).
    """

    customer_ids: np.ndarray
    segment: np.ndarray
    candidates: np.ndarray
    rungs: np.ndarray
    accept_mean: np.ndarray
    segment_price: np.ndarray
    ladder: np.ndarray
    allowed: np.ndarray
    list_sum: np.ndarray
    cost_sum: np.ndarray
    bundle_ids: Sequence[str]
    segment_ids: Sequence[str]
    accept_low: np.ndarray | None = None
    accept_high: np.ndarray | None = None
    current_price: np.ndarray | None = None
    bundle_items: Any = None
    inventory: np.ndarray | None = None
    product_ids: Sequence[str] | None = None
    offers_per_customer: float | np.ndarray | None = None

    def __post_init__(self) -> None:
        self.bundle_ids = [str(b) for b in self.bundle_ids]
        self.segment_ids = [str(s) for s in self.segment_ids]
        S, B = len(self.segment_ids), len(self.bundle_ids)
        self.segment = np.asarray(self.segment, dtype=np.int32)
        C = len(self.segment)
        self.candidates = np.asarray(self.candidates, dtype=np.int32)
        if self.candidates.ndim != 2 or self.candidates.shape[0] != C:
            raise ValueError("candidates must have shape [C, K]")
        self.rungs = np.asarray(self.rungs, dtype=np.int16)
        if self.rungs.shape[:2] != (S, B):
            raise ValueError(f"rungs must have shape [S={S}, B={B}, R]")
        K, R = self.candidates.shape[1], self.rungs.shape[2]
        for name in ("accept_mean", "accept_low", "accept_high"):
            a = getattr(self, name)
            if a is None:
                continue
            a = np.asarray(a, dtype=np.float32)
            if a.shape != (C, K, R):
                raise ValueError(f"{name} must have shape [C={C}, K={K}, R={R}], got {a.shape}")
            setattr(self, name, a)
        self.ladder = np.asarray(self.ladder, dtype=np.float64)
        L = self.ladder.shape[1]
        al = np.asarray(self.allowed, dtype=bool)
        self.allowed = np.broadcast_to(al if al.ndim == 3 else al[None], (S, B, L))
        self.segment_price = np.asarray(self.segment_price, dtype=np.float64).reshape(S, B)
        self.list_sum = np.asarray(self.list_sum, dtype=np.float64).reshape(B)
        self.cost_sum = np.asarray(self.cost_sum, dtype=np.float64).reshape(B)
        _normalise_shared(self, S, B)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.accept_mean.shape


def _pair_offers(problem: CustomerProblem, cfg: OptimizeConfig) -> np.ndarray:
    """Expected offers in the period, float32: ``[C]`` (one per customer) or ``[C, K]`` (per candidate)."""
    C, K = problem.candidates.shape
    opc = problem.offers_per_customer
    if opc is None:
        return np.full(C, cfg.offers_per_customer, np.float32)
    w = np.asarray(opc, np.float32)
    if w.ndim == 2:
        if w.shape != (C, K):
            raise ValueError(f"offers_per_customer must be a scalar, [C={C}] or [C={C}, K={K}], got {w.shape}")
        return w
    return np.broadcast_to(w, (C,)).astype(np.float32)


def customer_rungs(
    ladder: np.ndarray,
    allowed: np.ndarray,
    segment_price: np.ndarray,
    list_sum: np.ndarray,
    cfg: OptimizeConfig,
    cost_sum: np.ndarray | None = None,
    current_price: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Band rungs ``[S, B, R]`` (score the acceptance model at these) and centre position ``[S, B]``."""
    al = np.asarray(allowed, dtype=bool)
    if cost_sum is not None:
        rm = rule_mask(ladder, list_sum, cost_sum, cfg.rules, current_price)
        al = (al if al.ndim == 3 else al[None]) & (rm if rm.ndim == 3 else rm[None])
    S = np.asarray(segment_price).shape[0]
    al = np.broadcast_to(al if al.ndim == 3 else al[None], (S,) + np.asarray(ladder).shape)
    return band_rungs(ladder, al, segment_price, list_sum, cfg.rules.customer_band)


@dataclass
class CustomerSolution:
    """Personal offers, best first: arrays ``[C, N]`` (``N = top_n_bundles``; slot -1/NaN: no offer).

    candidate (position in ``candidates``), bundle (index), rung (ladder column), price,
    expected_conversion (mean acceptance), expected_profit (mean), profit_low, profit_high,
    objective (risk-adjusted), binding (bitmask, see ``BINDING_BITS``). ``shared``: rule, limit,
    usage, slack, multiplier, binding. ``dual_bound`` >= optimum; ``gap`` = (bound - objective) / bound.
    """

    candidate: np.ndarray
    bundle: np.ndarray
    rung: np.ndarray
    price: np.ndarray
    expected_conversion: np.ndarray
    expected_profit: np.ndarray
    profit_low: np.ndarray
    profit_high: np.ndarray
    objective_per_offer: np.ndarray
    binding: np.ndarray
    shared: pd.DataFrame
    objective: float
    expected_profit_total: float
    profit_low_total: float
    profit_high_total: float
    dual_bound: float
    gap: float
    iterations: int
    n_withheld: int
    n_repaired: int
    status: str
    wall_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def to_frame(self, problem: CustomerProblem) -> pd.DataFrame:
        """Long table: one row per offer (customer_id, slot, bundle_id, price, ..., binding_rules)."""
        c, k = np.nonzero(self.bundle >= 0)
        bits = self.binding[c, k]
        shared_bind = set(self.shared.loc[self.shared["binding"], "rule"]) if len(self.shared) else set()
        items = problem.bundle_items
        texts = {}
        out = []
        for b, m in zip(self.bundle[c, k], bits):
            key = (int(b), int(m))
            if key not in texts:
                names = [n for n in binding_names(int(m)) if n != "inventory"]
                if m & BINDING_BITS["inventory"]:
                    prods = [f"inventory:{problem.product_ids[p]}" for p in items[int(b)].indices]
                    names += [p for p in prods if p in shared_bind] or ["inventory"]
                texts[key] = ";".join(names)
            out.append(texts[key])
        return pd.DataFrame(
            {
                "customer_id": np.asarray(problem.customer_ids)[c],
                "slot": k,
                "bundle_id": np.asarray(problem.bundle_ids, dtype=object)[self.bundle[c, k]],
                "price": self.price[c, k],
                "segment_price": problem.segment_price[problem.segment[c], self.bundle[c, k]],
                "expected_conversion": self.expected_conversion[c, k],
                "expected_profit": self.expected_profit[c, k],
                "profit_low": self.profit_low[c, k],
                "profit_high": self.profit_high[c, k],
                "binding_rules": out,
            }
        )


@dataclass
class _Block:
    idx: np.ndarray  # [c] customer rows
    b: np.ndarray  # [c, K] int32 bundle (0 where no candidate)
    profit: np.ndarray  # [c, K, R] float32 risk-adjusted profit, -inf where invalid
    units: np.ndarray | None  # [c, K, R] float32 expected accepted bundles (0 where invalid)
    disc: np.ndarray | None  # [c, K, R] float32 expected discount


class _Cust:
    """Prepared customer problem: blocks of float32 arrays and the shared rows."""

    def __init__(self, problem: CustomerProblem, cfg: OptimizeConfig, centre_only: bool):
        self.p = problem
        self.cfg = cfg
        S, B, L = problem.allowed.shape
        rm = rule_mask(problem.ladder, problem.list_sum, problem.cost_sum, cfg.rules, problem.current_price)
        rm = np.broadcast_to(rm if rm.ndim == 3 else rm[None], (S, B, L))
        eff = problem.allowed & rm & np.isfinite(problem.ladder)[None]
        rr = problem.rungs.astype(np.int64)
        rrc = np.maximum(rr, 0)
        pr = np.take_along_axis(np.broadcast_to(problem.ladder[None], (S, B, L)), rrc, axis=2)
        ok = (rr >= 0) & np.take_along_axis(eff, rrc, axis=2)
        half = cfg.rules.customer_band * problem.list_sum
        with np.errstate(invalid="ignore"):
            ok &= np.abs(pr - problem.segment_price[:, :, None]) <= half[None, :, None] + EPS
        if centre_only:
            ok &= np.abs(pr - problem.segment_price[:, :, None]) <= EPS
        self.band_ok = ok  # [S, B, R]
        self.band_price = np.where(ok, pr, np.nan).astype(np.float32)  # [S, B, R]
        self.rows = _shared_rows(problem.bundle_items, problem.inventory, problem.product_ids, cfg)
        self.w = _pair_offers(problem, cfg)  # [C] or [C, K]
        self.need_usage = self.rows.m > 0
        # a product with no inventory left: no personal offer of a bundle holding it
        if self.rows.m_inv:
            zero = self.rows.limits[: self.rows.m_inv] <= 0
            if zero.any():
                blocked = np.asarray((self.rows.items[:, np.flatnonzero(zero)] != 0).sum(axis=1)).ravel() > 0
                self.band_ok[:, blocked, :] = False
                self.band_price[:, blocked, :] = np.nan

    def block(self, idx: np.ndarray) -> _Block:
        p = self.p
        cand = p.candidates[idx]
        has = cand >= 0
        if cand.shape[1] > 1:  # a bundle listed twice for a customer counts once
            order = np.argsort(cand, axis=1, kind="stable")
            srt = np.take_along_axis(cand, order, 1)
            dup = np.zeros_like(has)
            np.put_along_axis(dup, order[:, 1:], (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0), axis=1)
            has &= ~dup
        b = np.where(has, cand, 0)
        s = p.segment[idx][:, None]
        ok = self.band_ok[s, b] & has[:, :, None]  # [c, K, R]
        price = self.band_price[s, b]  # [c, K, R] float32
        w = self.w[idx][:, :, None] if self.w.ndim == 2 else self.w[idx][:, None, None]
        a_m = p.accept_mean[idx]
        ra = self.cfg.risk_aversion
        if p.accept_low is not None and ra != 0:
            a_obj = np.clip(a_m - np.float32(ra) * (a_m - p.accept_low[idx]), 0, 1)
        else:
            a_obj = np.clip(a_m, 0, 1)
        cost = p.cost_sum.astype(np.float32)[b][:, :, None]
        with np.errstate(invalid="ignore"):
            profit = w * a_obj * (price - cost)
        ok &= np.isfinite(profit)
        profit = np.where(ok, profit, -np.inf).astype(np.float32)
        units = disc = None
        if self.need_usage:
            a_u = p.accept_high[idx] if (self.cfg.rules.usage_acceptance == "high" and p.accept_high is not None) else a_m
            units = np.where(ok, w * np.clip(a_u, 0, 1), 0).astype(np.float32)
            if self.rows.has_budget:
                lst = p.list_sum.astype(np.float32)[b][:, :, None]
                disc = np.where(ok, units * (lst - np.nan_to_num(price)), 0).astype(np.float32)
        return _Block(idx, b.astype(np.int32), profit, units, disc)


def _choose(blk: _Block, pen: np.ndarray | None, mu_b: float, N: int):
    """Per customer: best rung per candidate under penalties, then the top-N non-negative ones.

    Returns rung [c, K] int8 (-1: not offered) and reduced value [c, K]."""
    if pen is None and mu_b == 0:
        V = blk.profit
    else:
        V = np.multiply(blk.units, pen[blk.b][:, :, None]) if pen is not None else np.zeros_like(blk.profit)
        if mu_b:
            V += np.float32(mu_b) * blk.disc
        np.subtract(blk.profit, V, out=V)
    r = V.argmax(axis=2)
    v = np.take_along_axis(V, r[:, :, None], 2)[:, :, 0]
    K = v.shape[1]
    keep = v >= 0
    if K > N:
        top = np.argpartition(v, K - N, axis=1)[:, K - N:]
        sel = np.zeros_like(keep)
        np.put_along_axis(sel, top, True, axis=1)
        keep &= sel
    r = np.where(keep, r, -1).astype(np.int8)
    return r, v


def _aggregate(cu: _Cust, blk: _Block, r: np.ndarray, B: int):
    """(units per bundle [B], discount, objective) of a choice."""
    ci, ki = np.nonzero(r >= 0)
    rs = r[ci, ki]
    obj = float(blk.profit[ci, ki, rs].sum(dtype=np.float64))
    ub = np.zeros(B)
    dsum = 0.0
    if blk.units is not None:
        ub = np.bincount(blk.b[ci, ki], weights=blk.units[ci, ki, rs], minlength=B)
        if blk.disc is not None:
            dsum = float(blk.disc[ci, ki, rs].sum(dtype=np.float64))
    return ub, dsum, obj


def _row_usage(rows: _Rows, ub: np.ndarray, dsum: float) -> np.ndarray:
    out = np.zeros(rows.m)
    if rows.m_inv:
        out[: rows.m_inv] = rows.items.T @ ub
    if rows.has_budget:
        out[-1] = dsum
    return out


def _evaluate(cu: _Cust, blocks: list[_Block], mu: np.ndarray, N: int, B: int, keep: bool = False):
    rows = cu.rows
    pen = (rows.items @ mu[: rows.m_inv]).astype(np.float32) if rows.m_inv else (np.zeros(B, np.float32) if rows.m else None)
    mu_b = float(mu[-1]) if rows.has_budget else 0.0
    ub = np.zeros(B)
    dsum = obj = lag = 0.0
    choices = []
    for blk in blocks:
        r, v = _choose(blk, pen, mu_b, N)
        lag += float(np.where(r >= 0, v, 0).sum(dtype=np.float64))
        u, ds, o = _aggregate(cu, blk, r, B)
        ub += u
        dsum += ds
        obj += o
        if keep:
            choices.append(r)
    use = _row_usage(rows, ub, dsum)
    return use, obj, lag, choices


def solve_customer_prices(problem: CustomerProblem, cfg: OptimizeConfig, *, segment_price_only: bool = False) -> CustomerSolution:
    """Personal prices (Lagrangian decomposition + repair; see the module docstring).

    ``segment_price_only``: the same algorithm restricted to the segment price (band centre): the
    baseline personal pricing is compared with.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    C = problem.shape[0]
    B = len(problem.bundle_ids)
    N = cfg.top_n_bundles
    cu = _Cust(problem, cfg, segment_price_only)
    rows = cu.rows
    limits = rows.limits * (1 - SHARED_RTOL)
    bs = cfg.chunk_customers
    t0 = time.perf_counter()
    blocks = [cu.block(np.arange(i, min(C, i + bs))) for i in range(0, C, bs)]
    timings["prepare"] = time.perf_counter() - t0
    mu = np.zeros(rows.m)
    iters = 0
    bound = np.inf
    if rows.m:
        t0 = time.perf_counter()
        use, _obj, lag, _ = _evaluate(cu, blocks, mu, N, B)  # mu = 0: the unconstrained choice
        bound = lag
        iters += 1
        if np.any(use > limits):
            rng = np.random.default_rng(cfg.seed)
            n_s = min(C, cfg.lagrange_sample)
            sidx = np.sort(rng.choice(C, size=n_s, replace=False)) if n_s < C else np.arange(C)
            share = float(cu.w[sidx].sum() / max(cu.w.sum(), 1e-12))
            sample = [cu.block(sidx[i: i + bs]) for i in range(0, n_s, bs)]
            # initial steps: a tenth of a typical margin per unit (inventory), 0.1 per currency (budget)
            fin = np.isfinite(problem.segment_price)
            typical = float(np.median((problem.segment_price - problem.cost_sum[None])[fin])) if fin.any() else 1.0
            step = np.full(rows.m, 0.1 * max(typical, 1e-6))
            if rows.has_budget:
                step[-1] = 0.1
            prev = np.zeros(rows.m)

            def rprop(use_: np.ndarray, lim_: np.ndarray) -> None:
                nonlocal mu, step, prev
                g = use_ / np.maximum(lim_, 1e-12) - 1.0
                sign = np.where((mu > 0) | (g > 0), np.sign(g), 0.0)
                step = np.where(sign * prev > 0, step * 1.2, np.where(sign * prev < 0, step * 0.5, step))
                mu = np.maximum(0.0, mu + sign * step)
                prev = sign

            def done(use_: np.ndarray, lim_: np.ndarray) -> bool:
                g = use_ / np.maximum(lim_, 1e-12) - 1.0
                return bool(np.all(g <= cfg.lagrange_tol) and np.all((mu <= 0) | (g >= -cfg.lagrange_tol)))

            rprop(use, limits)
            best_s, stall = np.inf, 0
            for _ in range(cfg.lagrange_max_iter):
                use_s, _, lag_s, _ = _evaluate(cu, sample, mu, N, B)
                iters += 1
                bnd_s = lag_s + float(mu @ limits) * share
                if done(use_s, limits * share):
                    break
                # stop when the (sample) dual bound has not improved for 10 iterations
                stall = 0 if bnd_s < best_s * (1 - 1e-7) else stall + 1
                best_s = min(best_s, bnd_s)
                if stall >= 10:
                    break
                rprop(use_s, limits * share)
            del sample
            timings["dual_sample"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            # the sample's multipliers are close but biased: let the full passes move them again
            step = np.maximum(step, 0.02 * mu + 1e-3 * max(typical, 1e-6))
            if rows.has_budget:
                step[-1] = max(step[-1], 0.02 * mu[-1] + 1e-4)
            prev = np.zeros(rows.m)
            best_mu = mu.copy()
            for _ in range(cfg.lagrange_full_passes):
                use, _obj, lag, _ = _evaluate(cu, blocks, mu, N, B)
                iters += 1
                if lag + float(mu @ rows.limits) < bound:
                    bound, best_mu = lag + float(mu @ rows.limits), mu.copy()
                if done(use, limits):
                    best_mu = mu.copy()
                    break
                rprop(use, limits)
            mu = best_mu  # the primal is taken at the multipliers of the best bound
            timings["dual_full"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    use, _obj, lag, choices = _evaluate(cu, blocks, mu, N, B, keep=True)
    iters += 1
    bound = min(bound, lag + float(mu @ rows.limits)) if rows.m else lag
    timings["primal"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    repaired_rows, n_raised, n_withheld = _repair(cu, blocks, choices, limits, B)
    timings["repair"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sol = _customer_solution(cu, blocks, choices, mu, limits, repaired_rows, bound, iters, n_raised, n_withheld)
    timings["report"] = time.perf_counter() - t0
    sol.timings = timings
    sol.wall_s = time.perf_counter() - t_start
    return sol


def _repair(cu: _Cust, blocks: list[_Block], choices: list[np.ndarray], limits: np.ndarray, B: int):
    """Make every shared row hold: raise prices one rung, then withhold offers (least loss per unit saved).

    Works on the flat list of current offers (a few per customer) with their R per-rung values, so a
    violated product row only touches the offers of the bundles holding it. Neither a raise that
    is accepted (it may not increase units or discount) nor a withdrawal increases any row, so rows
    fixed once stay fixed and the loop ends with every row satisfied.
    """
    rows = cu.rows
    if rows.m == 0:
        return set(), 0, 0
    # flat offers
    parts = []
    for bi_, (blk, r) in enumerate(zip(blocks, choices)):
        ci, ki = np.nonzero(r >= 0)
        parts.append((np.full(len(ci), bi_, np.int32), ci.astype(np.int64), ki.astype(np.int64),
                      r[ci, ki].astype(np.int64), blk.b[ci, ki].astype(np.int64),
                      blk.profit[ci, ki], blk.units[ci, ki],
                      blk.disc[ci, ki] if blk.disc is not None else np.zeros((len(ci), blk.profit.shape[2]), np.float32)))
    ob, oc, ok_, orr, obd = (np.concatenate([p[i] for p in parts]) for i in range(5))
    P_, U_, D_ = (np.concatenate([p[i] for p in parts]).astype(np.float64) for i in (5, 6, 7))
    del parts
    n_off, Rn = P_.shape
    ar = np.arange(n_off)
    items = sparse.csr_matrix(rows.items)
    items_c = rows.items  # csc [B, m_inv]
    by_bundle = np.argsort(obd, kind="stable")
    starts = np.searchsorted(obd[by_bundle], np.arange(B + 1))

    def usage() -> np.ndarray:
        live = orr >= 0
        rr = np.maximum(orr, 0)
        u = np.where(live, U_[ar, rr], 0.0)
        out = np.zeros(rows.m)
        if rows.m_inv:
            out[: rows.m_inv] = items.T @ np.bincount(obd, weights=u, minlength=B)
        if rows.has_budget:
            out[-1] = float(np.where(live, D_[ar, rr], 0.0).sum())
        return out

    repaired: set[int] = set()
    n_raised = n_withheld = 0
    use = usage()
    for _ in range(5 * rows.m + 10):
        viol = np.flatnonzero(use > limits)
        if not len(viol):
            break
        j = int(viol[np.argmax(use[viol] / np.maximum(limits[viol], 1e-12))])
        repaired.add(j)
        budget_row = rows.has_budget and j == rows.m - 1
        if budget_row:
            sub_all = ar
            qv = None
        else:
            bs = items_c[:, j].nonzero()[0]
            sub_all = np.concatenate([by_bundle[starts[b]: starts[b + 1]] for b in bs]) if len(bs) else ar[:0]
            qv = np.asarray(items_c[:, j].todense()).ravel()
        for phase in ("raise", "withhold"):
            for _round in range(Rn if phase == "raise" else 1):
                excess = use[j] - limits[j]
                if excess <= 0:
                    break
                sub = sub_all[orr[sub_all] >= 0]
                if not len(sub):
                    break
                r0 = orr[sub]
                u0, d0, p0 = U_[sub, r0], D_[sub, r0], P_[sub, r0]
                if phase == "raise":
                    nxt = np.full(len(sub), -1)
                    for st in range(Rn - 1, 0, -1):  # nearest valid rung above
                        cand = r0 + st
                        cc = np.minimum(cand, Rn - 1)
                        good = (cand < Rn) & np.isfinite(P_[sub, cc])
                        nxt = np.where(good, cc, nxt)
                    m = nxt >= 0
                    nx = np.maximum(nxt, 0)
                    u1, d1, p1 = U_[sub, nx], D_[sub, nx], P_[sub, nx]
                    red = (u0 - u1) * qv[obd[sub]] if qv is not None else d0 - d1
                    m &= (u1 <= u0) & (d1 <= d0) & (red > 0)
                    loss, newr = (p0 - p1)[m], nxt[m]
                else:
                    red = u0 * qv[obd[sub]] if qv is not None else d0
                    m = red > 0
                    loss, newr = p0[m], np.full(int(m.sum()), -1)
                if not m.any():
                    continue
                sub, red = sub[m], red[m]
                order = np.argsort(loss / red, kind="stable")
                n_take = int(np.searchsorted(np.cumsum(red[order]), excess * (1 + 1e-9) + 1e-12)) + 1
                take = order[:n_take]
                moved = sub[take]
                r_old, r_new = orr[moved], newr[take]
                u_new = np.where(r_new >= 0, U_[moved, np.maximum(r_new, 0)], 0.0)
                d_new = np.where(r_new >= 0, D_[moved, np.maximum(r_new, 0)], 0.0)
                if rows.m_inv:
                    use[: rows.m_inv] += items.T @ np.bincount(obd[moved], weights=u_new - U_[moved, r_old], minlength=B)
                if rows.has_budget:
                    use[-1] += float((d_new - D_[moved, r_old]).sum())
                orr[moved] = r_new
                if phase == "raise":
                    n_raised += len(take)
                else:
                    n_withheld += len(take)
            if use[j] <= limits[j]:
                break
    use = usage()  # exact recount (the loop updated it incrementally)
    if np.any(use > limits):  # pragma: no cover - withholding always reaches feasibility
        raise OptimizationFailedError("personal prices: repair could not satisfy " + ", ".join(
            rows.names[j] for j in np.flatnonzero(use > limits)))
    for bi_, r in enumerate(choices):
        sel = ob == bi_
        r[oc[sel], ok_[sel]] = orr[sel].astype(np.int8)
    return repaired, n_raised, n_withheld


def _customer_solution(cu: _Cust, blocks, choices, mu, limits, repaired, bound, iters, n_raised, n_withheld) -> CustomerSolution:
    p = cu.p
    cfg = cu.cfg
    C = p.shape[0]
    N = cfg.top_n_bundles
    B = len(p.bundle_ids)
    rows = cu.rows
    out = {k: np.full((C, N), -1, np.int32) for k in ("candidate", "bundle", "rung")}
    fl = {k: np.full((C, N), np.nan, np.float32) for k in
          ("price", "expected_conversion", "expected_profit", "profit_low", "profit_high", "objective_per_offer")}
    binding = np.zeros((C, N), np.uint16)
    ub = np.zeros(B)
    dsum = 0.0
    shared_bits_b = np.zeros(B, np.uint16)
    if rows.m_inv:
        active = np.zeros(rows.m_inv, bool)
        active[(mu[: rows.m_inv] > 0)] = True
        for j in repaired:
            if j < rows.m_inv:
                active[j] = True
        touched = np.asarray((rows.items[:, active] != 0).sum(axis=1)).ravel() > 0
        shared_bits_b[touched] |= BINDING_BITS["inventory"]
    budget_active = rows.has_budget and (mu[-1] > 0 or (rows.m - 1) in repaired)
    maxp = p.list_sum * (1 - cfg.rules.min_bundle_discount)
    minp = p.cost_sum * (1 + cfg.rules.min_margin)
    bd = price_bounds(p.list_sum, p.cost_sum, cfg.rules, p.current_price)
    S, _, L = p.allowed.shape
    c_lo = np.broadcast_to(bd.change_lower if bd.change_lower is not None else np.full((1, B), -np.inf), (S, B))
    c_hi = np.broadcast_to(bd.change_upper if bd.change_upper is not None else np.full((1, B), np.inf), (S, B))
    half = cfg.rules.customer_band * p.list_sum
    for blk, r in zip(blocks, choices):
        idx = blk.idx
        # order offers by risk-adjusted profit, best first
        rr = np.maximum(r.astype(np.int64), 0)
        val = np.where(r >= 0, np.take_along_axis(blk.profit, rr[:, :, None], 2)[:, :, 0], -np.inf)
        order = np.argsort(-val, axis=1, kind="stable")[:, :N]
        kk = order
        rsel = np.take_along_axis(r, kk, 1).astype(np.int64)
        has = rsel >= 0
        bsel = np.take_along_axis(blk.b, kk, 1)
        s = p.segment[idx][:, None]
        rsafe = np.maximum(rsel, 0)
        col = p.rungs[s, bsel, rsafe].astype(np.int64)
        price = cu.band_price[s, bsel, rsafe]
        gi = np.nonzero(has)
        ci_full = idx[gi[0]]
        am = p.accept_mean[ci_full, kk[gi], rsel[gi]]
        al = p.accept_low[ci_full, kk[gi], rsel[gi]] if p.accept_low is not None else am
        ah = p.accept_high[ci_full, kk[gi], rsel[gi]] if p.accept_high is not None else am
        w = cu.w[ci_full, kk[gi]] if cu.w.ndim == 2 else cu.w[ci_full]
        mg = price[gi] - p.cost_sum.astype(np.float32)[bsel[gi]]
        rows_c = idx[gi[0]]
        kslot = gi[1]
        out["candidate"][rows_c, kslot] = kk[gi]
        out["bundle"][rows_c, kslot] = bsel[gi]
        out["rung"][rows_c, kslot] = col[gi]
        fl["price"][rows_c, kslot] = price[gi]
        fl["expected_conversion"][rows_c, kslot] = am
        fl["expected_profit"][rows_c, kslot] = w * am * mg
        fl["profit_low"][rows_c, kslot] = w * al * mg
        fl["profit_high"][rows_c, kslot] = w * ah * mg
        fl["objective_per_offer"][rows_c, kslot] = blk.profit[gi[0], kk[gi], rsel[gi]]
        # binding: chosen at an end of its allowed band range while profit still rises beyond it
        prof = blk.profit[gi[0], kk[gi]]  # [n, R]
        rs = rsel[gi]
        Rn = prof.shape[1]
        fin = np.isfinite(prof)
        top_valid = Rn - 1 - np.argmax(fin[:, ::-1], axis=1)
        bot_valid = np.argmax(fin, axis=1)
        prev_v = np.where(rs > 0, prof[np.arange(len(rs)), np.maximum(rs - 1, 0)], -np.inf)
        next_v = np.where(rs < Rn - 1, prof[np.arange(len(rs)), np.minimum(rs + 1, Rn - 1)], -np.inf)
        cur_v = prof[np.arange(len(rs)), rs]
        at_top = (rs == top_valid) & (~np.isfinite(prev_v) | (cur_v >= prev_v))
        at_bot = (rs == bot_valid) & (~np.isfinite(next_v) | (cur_v >= next_v))
        bb = bsel[gi]
        ss = p.segment[ci_full]
        lad = p.ladder
        colv = col[gi]
        up = np.where(colv + 1 < L, lad[bb, np.minimum(colv + 1, L - 1)], np.nan)
        dn = np.where(colv - 1 >= 0, lad[bb, np.maximum(colv - 1, 0)], np.nan)
        bits = np.zeros(len(rs), np.uint16)
        with np.errstate(invalid="ignore"):
            has_up = at_top & np.isfinite(up)
            has_dn = at_bot & np.isfinite(dn)
            bits |= np.where(has_up & (up > maxp[bb] + EPS), BINDING_BITS["max_price"], 0).astype(np.uint16)
            bits |= np.where(has_up & (up > c_hi[ss, bb] + EPS), BINDING_BITS["max_change"], 0).astype(np.uint16)
            bits |= np.where(has_up & (np.abs(up - p.segment_price[ss, bb]) > half[bb] + EPS), BINDING_BITS["customer_band"], 0).astype(np.uint16)
            bits |= np.where(has_dn & (dn < minp[bb] - EPS), BINDING_BITS["min_margin"], 0).astype(np.uint16)
            bits |= np.where(has_dn & (dn < c_lo[ss, bb] - EPS), BINDING_BITS["max_change"], 0).astype(np.uint16)
            bits |= np.where(has_dn & (np.abs(dn - p.segment_price[ss, bb]) > half[bb] + EPS), BINDING_BITS["customer_band"], 0).astype(np.uint16)
        # shared rules: the unpenalized best rung is cheaper than the chosen one
        best_plain = np.argmax(np.where(fin, prof, -np.inf), axis=1)
        pushed = best_plain < rs
        bits |= np.where(pushed, shared_bits_b[bb], 0).astype(np.uint16)
        if budget_active:
            bits |= np.where(pushed, BINDING_BITS["budget"], 0).astype(np.uint16)
        binding[rows_c, kslot] = bits
        u, d_, _ = _aggregate(cu, blk, r, B)
        ub += u
        dsum += d_
    use = _row_usage(rows, ub, dsum) if rows.m else np.zeros(0)
    shared = pd.DataFrame(
        {
            "rule": rows.names,
            "limit": rows.limits,
            "usage": use,
            "slack": rows.limits - use,
            "multiplier": mu,
            "binding": [(mu[j] > 0) or (j in repaired) for j in range(rows.m)],
        }
    )
    objective = float(np.nansum(fl["objective_per_offer"], dtype=np.float64))
    gap = (bound - objective) / abs(bound) if np.isfinite(bound) and bound != 0 else 0.0
    status = "optimal" if gap <= 1e-9 else f"feasible (dual gap {gap:.2e})"
    if n_withheld:
        status += f"; {n_withheld} offers withheld by the repair"
    return CustomerSolution(
        candidate=out["candidate"], bundle=out["bundle"], rung=out["rung"], binding=binding, shared=shared,
        objective=objective,
        expected_profit_total=float(np.nansum(fl["expected_profit"], dtype=np.float64)),
        profit_low_total=float(np.nansum(fl["profit_low"], dtype=np.float64)),
        profit_high_total=float(np.nansum(fl["profit_high"], dtype=np.float64)),
        dual_bound=float(bound), gap=float(max(gap, 0.0)), iterations=iters, n_withheld=n_withheld,
        n_repaired=n_raised, status=status, **fl,
    )


def check_customer_rules(problem: CustomerProblem, cfg: OptimizeConfig, sol: CustomerSolution) -> list[str]:
    """Every rule a personal-price solution breaks (empty: all hold)."""
    out = []
    has = sol.bundle >= 0
    c, k = np.nonzero(has)
    b = sol.bundle[c, k]
    s = problem.segment[c]
    price = sol.price[c, k].astype(np.float64)
    col = sol.rung[c, k]
    lad = problem.ladder[b, col]
    if np.any(np.abs(lad - price) > 1e-3):  # float32 storage of prices
        out.append("price not on the ladder")
    price = lad
    r = cfg.rules
    if np.any(price > problem.list_sum[b] * (1 - r.min_bundle_discount) + EPS):
        out.append("max_price")
    if np.any(price < problem.cost_sum[b] * (1 + r.min_margin) - EPS):
        out.append("min_margin")
    if problem.current_price is not None and r.max_change is not None:
        cur = problem.current_price[s, b]
        with np.errstate(invalid="ignore"):
            if np.any(np.isfinite(cur) & (np.abs(price - cur) > r.max_change * cur + EPS)):
                out.append("max_change")
    if np.any(np.abs(price - problem.segment_price[s, b]) > r.customer_band * problem.list_sum[b] + EPS):
        out.append("customer_band")
    if np.any((sol.bundle >= 0).sum(axis=1) > cfg.top_n_bundles):
        out.append("top_n_bundles")
    kk = sol.candidate[c, k]
    if np.any(problem.candidates[c, kk] != b):
        out.append("offer is not a candidate")
    rows = _shared_rows(problem.bundle_items, problem.inventory, problem.product_ids, cfg)
    if rows.m:
        pw = _pair_offers(problem, cfg)
        w = (pw[c, kk] if pw.ndim == 2 else pw[c]).astype(np.float64)
        # acceptance at the chosen rung: find r with rungs[s, b, r] == col
        rr = problem.rungs[s, b].astype(np.int64)
        rpos = np.argmax(rr == col[:, None], axis=1)
        a = (problem.accept_high if (r.usage_acceptance == "high" and problem.accept_high is not None) else problem.accept_mean)
        units = w * np.clip(a[c, kk, rpos].astype(np.float64), 0, 1)
        ub = np.bincount(b, weights=units, minlength=len(problem.bundle_ids))
        use = _row_usage(rows, ub, float((units * (problem.list_sum[b] - price)).sum()))
        for j in np.flatnonzero(use > rows.limits * (1 + 1e-6) + 1e-9):
            out.append(f"{rows.names[j]}: usage {use[j]:.3f} > {rows.limits[j]:.3f}")
    return out


# ----------------------------------------------------------------------------------------------------
# synthetic instances (tests, benchmarks)
# ----------------------------------------------------------------------------------------------------


def synthetic_segment_problem(
    n_bundles: int,
    n_segments: int,
    cfg: OptimizeConfig,
    n_products: int | None = None,
    seed: int = 0,
    inventory_share: float = 0.3,
    inventory_tightness: float = 0.7,
    with_current: bool = True,
    items_per_bundle: tuple[int, int] = (2, 3),
) -> SegmentProblem:
    """A random catalog with logistic, price-decreasing acceptance curves (low/high = logit -+ 0.3).

    ``inventory_share`` of the products get a finite inventory ``inventory_tightness`` of the way from
    their least possible expected units to their units at the unconstrained best prices; current prices are the ladder rung nearest to
    a 10-20 % discount.
    """
    rng = np.random.default_rng(seed)
    B, S = n_bundles, n_segments
    P = n_products or max(4, int(1.5 * B))
    unit_list = np.round(rng.uniform(5, 120, P), 2)
    unit_cost = np.round(unit_list * rng.uniform(0.35, 0.7, P), 2)
    k = rng.integers(items_per_bundle[0], items_per_bundle[1] + 1, B)
    rows_, cols_ = [], []
    for b in range(B):
        ps = rng.choice(P, size=min(k[b], P), replace=False)
        rows_ += [b] * len(ps)
        cols_ += list(ps)
    items = sparse.csr_matrix((np.ones(len(rows_)), (rows_, cols_)), shape=(B, P))
    list_sum = np.asarray(items @ unit_list).ravel()
    cost_sum = np.asarray(items @ unit_cost).ravel()
    current = None
    if with_current:
        lad0 = build_ladder(list_sum, cost_sum, cfg, check=False).prices
        target = list_sum * (1 - rng.uniform(0.1, 0.2, B))
        j = np.nanargmin(np.abs(lad0 - target[:, None]), axis=1)
        current = lad0[np.arange(B), j]
        current = np.broadcast_to(current, (S, B)).copy()
    seg = [f"S{s}" for s in range(S)]
    bids = [f"B{b}" for b in range(B)]
    lad = build_ladder(list_sum, cost_sum, cfg, current_price=current, bundle_ids=bids, segment_ids=seg, check=False)
    # segment willingness to pay and price sensitivity
    wtp = rng.uniform(0.7, 1.1, S)[:, None] * rng.uniform(0.85, 1.15, (S, B))
    eta = rng.uniform(4, 10, S)[:, None, None]
    alpha = rng.normal(-1.0, 0.4, (S, B))[:, :, None]
    rel = lad.prices[None] / (wtp[:, :, None] * list_sum[None, :, None])
    with np.errstate(invalid="ignore"):
        u = alpha - eta * np.log(rel)
    mean = 1 / (1 + np.exp(-u))
    low = 1 / (1 + np.exp(-(u - 0.3)))
    high = 1 / (1 + np.exp(-(u + 0.3)))
    sizes = rng.integers(500, 5000, S).astype(float)
    inventory = np.full(P, np.inf)
    prob = SegmentProblem(bids, seg, sizes, list_sum, cost_sum, lad.prices, lad.allowed, mean, low, high,
                          current, items, None, [f"P{p}" for p in range(P)], cfg.offers_per_customer)
    if inventory_share > 0:
        d = _segment_data(prob, cfg)
        r, _ = _best_fair(d.obj, d.allowed, d.prices, d.gap)
        exp_p = items.T @ _take_at(d.units, r).sum(axis=0)
        min_p = items.T @ np.where(d.allowed, d.units, np.inf).min(axis=2).sum(axis=0)
        pick = rng.random(P) < inventory_share
        inventory[pick] = np.ceil(min_p[pick] + inventory_tightness * (exp_p[pick] - min_p[pick]))
        prob.inventory = inventory
    return prob


def synthetic_customer_problem(
    seg: SegmentProblem,
    segment_price: np.ndarray,
    cfg: OptimizeConfig,
    n_customers: int,
    n_candidates: int,
    seed: int = 0,
    inventory: np.ndarray | None = None,
    with_bounds: bool = True,
) -> CustomerProblem:
    """Random customers of the segments of ``seg`` with candidate bundles and float32 acceptance in their bands."""
    rng = np.random.default_rng(seed)
    S, B, _ = seg.shape
    C, K = n_customers, min(n_candidates, B)
    rungs, _ = customer_rungs(seg.ladder, seg.allowed, segment_price, seg.list_sum, cfg, seg.cost_sum, seg.current_price)
    R = rungs.shape[2]
    segment = rng.integers(0, S, C).astype(np.int32)
    # K distinct candidates per customer: random offsets from a random start (distinct for K <= B)
    start = rng.integers(0, B, C)
    stride = rng.integers(1, max(2, B // K), C)
    cand = ((start[:, None] + stride[:, None] * np.arange(K)[None]) % B).astype(np.int32)
    dup = np.zeros_like(cand, dtype=bool)
    srt = np.sort(cand, axis=1)
    if np.any(srt[:, 1:] == srt[:, :-1]):
        for c in np.flatnonzero(np.any(srt[:, 1:] == srt[:, :-1], axis=1)):
            cand[c] = rng.choice(B, K, replace=False)
    del dup
    accept_mean = np.empty((C, K, R), np.float32)
    accept_low = np.empty((C, K, R), np.float32) if with_bounds else None
    accept_high = np.empty((C, K, R), np.float32) if with_bounds else None
    step = 200_000
    lp = seg.list_sum.astype(np.float32)
    for i in range(0, C, step):
        j = min(C, i + step)
        s = segment[i:j][:, None]
        b = cand[i:j]
        rr = rungs[s, b].astype(np.int64)
        price = np.where(rr >= 0, seg.ladder[b[:, :, None], np.maximum(rr, 0)], np.nan).astype(np.float32)
        wtp = rng.lognormal(0.0, 0.15, (j - i, 1, 1)).astype(np.float32) * rng.uniform(0.75, 1.1, (j - i, K, 1)).astype(np.float32)
        eta = rng.uniform(4, 10, (j - i, 1, 1)).astype(np.float32)
        alpha = rng.normal(-1.0, 0.5, (j - i, K, 1)).astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            u = alpha - eta * np.log(price / (wtp * lp[b][:, :, None]))
            accept_mean[i:j] = np.nan_to_num(1 / (1 + np.exp(-u)), nan=0.0)
            if with_bounds:
                accept_low[i:j] = np.nan_to_num(1 / (1 + np.exp(-(u - 0.3))), nan=0.0)
                accept_high[i:j] = np.nan_to_num(1 / (1 + np.exp(-(u + 0.3))), nan=0.0)
    return CustomerProblem(
        customer_ids=np.arange(C), segment=segment, candidates=cand, rungs=rungs, accept_mean=accept_mean,
        segment_price=segment_price, ladder=seg.ladder, allowed=seg.allowed, list_sum=seg.list_sum,
        cost_sum=seg.cost_sum, bundle_ids=seg.bundle_ids, segment_ids=seg.segment_ids, accept_low=accept_low,
        accept_high=accept_high, current_price=seg.current_price, bundle_items=seg.bundle_items,
        inventory=inventory, product_ids=seg.product_ids, offers_per_customer=1.0,
    )
