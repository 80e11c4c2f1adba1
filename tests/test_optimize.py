"""Tests of pricing.ladder and pricing.optimize: the worked example, rule safety on random instances
(hypothesis), MILP = brute force, infeasibility messages, the solver failure path and personal prices.

Every published price is checked by the INDEPENDENT checkers below (``_segment_violations``,
``_customer_violations``), written from the rules' definitions, not by the module's own checker.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy import sparse

from pricing import optimize as opt
from pricing.config import Config, LadderConfig, OptimizeConfig, RulesConfig
from pricing.ladder import InfeasibleRulesError, build_ladder, ladder_prices, round_down_to_ending
from pricing.optimize import (
    BINDING_BITS,
    CustomerProblem,
    SegmentProblem,
    brute_force_segment_prices,
    check_customer_rules,
    customer_rungs,
    solve_box_lp,
    solve_customer_prices,
    solve_segment_prices,
    synthetic_customer_problem,
    synthetic_segment_problem,
)

TOL = 1e-6
RULE_WORDS = ("min_margin", "min_bundle_discount", "max_change", "fairness_gap", "inventory:", "budget", "ladder")


def _cfg(**kw) -> OptimizeConfig:
    ladder = {k: kw.pop(k) for k in ("max_discount", "step", "price_ending") if k in kw}
    rules = {k: kw.pop(k) for k in list(kw) if k in RulesConfig.model_fields}
    return OptimizeConfig(ladder=LadderConfig(**ladder), rules=RulesConfig(**rules), **kw)


# --------------------------------------------------------------------------------------------------
# independent rule checkers
# --------------------------------------------------------------------------------------------------


def _segment_violations(p: SegmentProblem, cfg: OptimizeConfig, price: np.ndarray) -> list[str]:
    r = cfg.rules
    S, B, _ = p.accept_mean.shape
    out = []
    rung = np.full((S, B), -1)
    for s in range(S):
        for b in range(B):
            hit = np.flatnonzero(np.abs(p.ladder[b] - price[s, b]) < 1e-9)
            if len(hit) == 0:
                out.append(f"off ladder {s},{b}")
                continue
            rung[s, b] = hit[0]
            if price[s, b] > p.list_sum[b] * (1 - r.min_bundle_discount) + TOL:
                out.append(f"max_price {s},{b}")
            if price[s, b] < p.cost_sum[b] * (1 + r.min_margin) - TOL:
                out.append(f"min_margin {s},{b}")
            if p.current_price is not None and r.max_change is not None:
                cur = p.current_price[s, b]
                if np.isfinite(cur) and abs(price[s, b] - cur) > r.max_change * cur + TOL:
                    out.append(f"max_change {s},{b}")
    if out:
        return out
    if r.fairness_gap is not None:
        for b in range(B):
            if price[:, b].max() - price[:, b].min() > r.fairness_gap * p.list_sum[b] + TOL:
                out.append(f"fairness {b}")
    a = p.accept_high if (r.usage_acceptance == "high" and p.accept_high is not None) else p.accept_mean
    opc = cfg.offers_per_customer if p.offers_per_customer is None else p.offers_per_customer
    units = np.array([[p.sizes[s] * opc * a[s, b, rung[s, b]] for b in range(B)] for s in range(S)])
    items = p.bundle_items.toarray()
    if p.inventory is not None and r.respect_inventory:
        use = units.sum(axis=0) @ items
        for j in np.flatnonzero(np.isfinite(p.inventory)):
            if use[j] > p.inventory[j] * (1 + 1e-9) + 1e-9:
                out.append(f"inventory {j}: {use[j]} > {p.inventory[j]}")
    if r.discount_budget is not None:
        spent = float((units * (p.list_sum[None] - price)).sum())
        if spent > r.discount_budget * (1 + 1e-9) + 1e-9:
            out.append(f"budget {spent} > {r.discount_budget}")
    return out


def _customer_violations(cp_: CustomerProblem, cfg: OptimizeConfig, sol) -> list[str]:
    r = cfg.rules
    out = []
    C, N = sol.bundle.shape
    assert N == cfg.top_n_bundles
    units = np.zeros(len(cp_.bundle_ids))
    spent = 0.0
    opc = np.asarray(cfg.offers_per_customer if cp_.offers_per_customer is None else cp_.offers_per_customer, float)
    a = cp_.accept_high if (r.usage_acceptance == "high" and cp_.accept_high is not None) else cp_.accept_mean
    for c in range(C):
        offered = [k for k in range(N) if sol.bundle[c, k] >= 0]
        bundles = [int(sol.bundle[c, k]) for k in offered]
        if len(set(bundles)) != len(bundles):
            out.append(f"customer {c}: a bundle offered twice")
        for k in offered:
            b, col = int(sol.bundle[c, k]), int(sol.rung[c, k])
            kk = int(sol.candidate[c, k])
            if cp_.candidates[c, kk] != b:
                out.append(f"customer {c}: not a candidate")
            s = cp_.segment[c]
            price = cp_.ladder[b, col]
            if abs(price - sol.price[c, k]) > 1e-3:
                out.append(f"customer {c}: price not the ladder rung")
            if price > cp_.list_sum[b] * (1 - r.min_bundle_discount) + TOL:
                out.append("max_price")
            if price < cp_.cost_sum[b] * (1 + r.min_margin) - TOL:
                out.append("min_margin")
            if cp_.current_price is not None and r.max_change is not None:
                cur = cp_.current_price[s, b]
                if np.isfinite(cur) and abs(price - cur) > r.max_change * cur + TOL:
                    out.append("max_change")
            if abs(price - cp_.segment_price[s, b]) > r.customer_band * cp_.list_sum[b] + TOL:
                out.append(f"customer_band {c}")
            rpos = list(cp_.rungs[s, b]).index(col)
            w = opc[c, kk] if opc.ndim == 2 else opc[c] if opc.ndim == 1 else opc  # per candidate / customer / all
            u = float(w) * float(a[c, kk, rpos])
            units[b] += u
            spent += u * (cp_.list_sum[b] - price)
    if cp_.inventory is not None and r.respect_inventory:
        use = units @ cp_.bundle_items.toarray()
        for j in np.flatnonzero(np.isfinite(cp_.inventory)):
            if use[j] > cp_.inventory[j] * (1 + 1e-6) + 1e-6:
                out.append(f"inventory {j}: {use[j]} > {cp_.inventory[j]}")
    if r.discount_budget is not None and spent > r.discount_budget * (1 + 1e-6) + 1e-6:
        out.append(f"budget {spent} > {r.discount_budget}")
    return out


# --------------------------------------------------------------------------------------------------
# worked example and ladder
# --------------------------------------------------------------------------------------------------


def test_worked_example_box_lp():
    """max 20 pA + 25 pB + 30 pC, pA in [110, 120], pB in [157.5, 169.5], pC in [202, 208].

    Each coefficient is positive, so every price goes to its upper bound: (120, 169.5, 208) and
    20*120 + 25*169.5 + 30*208 = 2,400 + 4,237.5 + 6,240 = 12,877.5. The seed document printed
    6,802.5 for this example: an arithmetic slip (the three terms do not add up to it).
    """
    p, value = solve_box_lp([20, 25, 30], [110, 157.5, 202], [120, 169.5, 208])
    np.testing.assert_allclose(p, [120, 169.5, 208], atol=1e-7)
    assert value == pytest.approx(12_877.5, abs=1e-6)
    terms = [20 * 120, 25 * 169.5, 30 * 208]
    assert terms == [2400, 4237.5, 6240] and sum(terms) == 12_877.5 and sum(terms) != 6_802.5


def test_ladder_rounds_down_to_the_ending_and_never_above_list():
    lad = ladder_prices(np.array([50.0, 100.0, 20.30, 0.5]), LadderConfig(max_discount=0.5, step=0.025, price_ending=0.99))
    row = lad[0][np.isfinite(lad[0])]
    assert row.max() == pytest.approx(49.99) and row.min() == pytest.approx(24.99)
    assert np.all(np.diff(row) > 0)  # ascending, deduplicated
    np.testing.assert_allclose(np.round(row * 100) % 100, 99)  # every price ends in .99
    assert np.nanmax(lad[1]) == pytest.approx(99.99)
    assert np.nanmax(lad[2]) <= 20.30 and np.isnan(lad[3]).all()  # 0.50 has no x.99 price > 0
    np.testing.assert_allclose(round_down_to_ending(np.array([47.30, 47.99, 48.0]), 0.99), [46.99, 47.99, 47.99])
    np.testing.assert_allclose(round_down_to_ending(np.array([47.308]), None), [47.30])


def test_ladder_conflict_names_bundle_and_rules():
    cfg = _cfg(min_margin=0.10, min_bundle_discount=0.20)
    with pytest.raises(InfeasibleRulesError) as e:
        build_ladder(np.array([60.0, 100.0]), np.array([50.0, 40.0]), cfg, bundle_ids=["B7", "B8"])
    assert "B7: min_margin 0.10 needs price >= 55.00 but min_bundle_discount 0.20 needs price <= 48.00" in str(e.value)
    assert "B8" not in str(e.value)
    with pytest.raises(InfeasibleRulesError, match=r"B8: min_margin 0.10 needs price >= 44.00 but max_change 0.20 "
                                                    r"from current 30.00 needs price <= 36.00"):
        build_ladder(np.array([100.0]), np.array([40.0]), cfg, current_price=np.array([30.0]), bundle_ids=["B8"])


def test_ladder_rule_mask_per_segment_current_prices():
    cfg = _cfg(max_change=0.1, min_margin=0.0)
    lad = build_ladder(np.array([100.0]), np.array([10.0]), cfg, current_price=np.array([[80.0], [60.0]]))
    assert lad.allowed.shape == (2, 1, lad.prices.shape[1])
    for s, cur in enumerate((80.0, 60.0)):
        ok = lad.prices[0][lad.allowed[s, 0]]
        assert ok.size and np.all(np.abs(ok - cur) <= 0.1 * cur + 1e-9)


# --------------------------------------------------------------------------------------------------
# random instances (hypothesis): every published price obeys every rule, or a named conflict
# --------------------------------------------------------------------------------------------------


def _random_problem(seed: int, B: int, S: int, P: int, cfg: OptimizeConfig, with_current: bool,
                    inv_factor: float | None, n_inv: int) -> SegmentProblem:
    rng = np.random.default_rng(seed)
    unit_list = rng.uniform(3, 60, P).round(2)
    unit_cost = (unit_list * rng.uniform(0.3, 0.85, P)).round(2)
    items = np.zeros((B, P))
    for b in range(B):
        items[b, rng.choice(P, size=rng.integers(1, min(3, P) + 1), replace=False)] = rng.integers(1, 3)
    list_sum = items @ unit_list
    cost_sum = items @ unit_cost
    current = None
    if with_current:
        lad0 = ladder_prices(list_sum, cfg.ladder, cfg.rules.min_bundle_discount)
        pick = [rng.choice(np.flatnonzero(np.isfinite(row))) if np.isfinite(row).any() else 0 for row in lad0]
        current = np.array([lad0[b, pick[b]] for b in range(B)])
        current = np.where(rng.random((S, B)) < 0.9, current[None], current[None] * rng.uniform(0.9, 1.1, (S, B)))
    lad = build_ladder(list_sum, cost_sum, cfg, current_price=current, bundle_ids=[f"B{b}" for b in range(B)],
                       segment_ids=[f"S{s}" for s in range(S)])
    L = lad.prices.shape[1]
    # monotone decreasing acceptance along the (ascending) ladder; low <= mean <= high
    rel = lad.prices[None] / list_sum[None, :, None]
    alpha = rng.normal(0.0, 1.0, (S, B, 1))
    eta = rng.uniform(1, 12, (S, B, 1))
    with np.errstate(invalid="ignore"):
        mean = 1 / (1 + np.exp(-(alpha - eta * np.log(rel))))
    low = mean * rng.uniform(0.5, 1.0, (S, B, 1))
    high = np.minimum(1.0, mean * rng.uniform(1.0, 1.5, (S, B, 1)))
    inventory = np.full(P, np.inf)
    sizes = rng.integers(1, 200, S).astype(float)
    if inv_factor is not None:  # between the least and the most units the allowed prices can sell
        al = np.broadcast_to(lad.allowed if lad.allowed.ndim == 3 else lad.allowed[None], (S, B, L))
        a_use = high if cfg.rules.usage_acceptance == "high" else mean
        units = sizes[:, None, None] * cfg.offers_per_customer * np.nan_to_num(a_use)
        lo = np.where(al, units, np.inf).min(axis=2).sum(axis=0) @ items
        hi = np.where(al, units, -np.inf).max(axis=2).sum(axis=0) @ items
        pick = rng.choice(P, size=min(n_inv, P), replace=False)
        inventory[pick] = np.round(lo[pick] + inv_factor * (hi[pick] - lo[pick]), 3)
    return SegmentProblem([f"B{b}" for b in range(B)], [f"S{s}" for s in range(S)], sizes, list_sum, cost_sum,
                          lad.prices, lad.allowed, mean, low, high, current, sparse.csr_matrix(items), inventory,
                          [f"P{j}" for j in range(P)], None)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(
    seed=st.integers(0, 10_000),
    B=st.integers(1, 4),
    S=st.integers(1, 3),
    P=st.integers(1, 5),
    step=st.sampled_from([0.05, 0.1, 0.15]),
    max_discount=st.floats(0.05, 0.6),
    ending=st.sampled_from([None, 0.99, 0.95, 0.0]),
    min_margin=st.floats(0.0, 0.3),
    min_disc=st.sampled_from([0.0, 0.0, 0.05, 0.2]),
    max_change=st.sampled_from([None, 0.05, 0.15, 0.3]),
    gap=st.sampled_from([None, 0.0, 0.05, 0.1, 0.2, 0.3]),
    budget_factor=st.sampled_from([None, -0.05, 0.0, 0.3, 0.7]),
    inv_factor=st.sampled_from([None, -0.05, 0.0, 0.3, 0.7]),
    band=st.sampled_from([0.0, 0.05, 0.1]),
    risk=st.sampled_from([0.0, 1.0, 2.0]),
    usage=st.sampled_from(["mean", "high"]),
    with_current=st.booleans(),
)
def test_random_instances_obey_every_rule_or_name_the_conflict(
    seed, B, S, P, step, max_discount, ending, min_margin, min_disc, max_change, gap, budget_factor, inv_factor,
    band, risk, usage, with_current,
):
    cfg = _cfg(step=step, max_discount=max_discount, price_ending=ending, min_margin=min_margin,
               min_bundle_discount=min_disc, max_change=max_change, fairness_gap=gap, customer_band=band,
               risk_aversion=risk, usage_acceptance=usage, top_n_bundles=2, time_limit_s=20.0)
    try:
        prob = _random_problem(seed, B, S, P, cfg, with_current, inv_factor, n_inv=2)
    except InfeasibleRulesError as e:
        assert any(w in str(e) for w in RULE_WORDS), str(e)
        event("no allowed ladder price")
        return
    if budget_factor is not None:  # between the least and the most discount the allowed prices give
        a_use = prob.accept_high if usage == "high" else prob.accept_mean
        units = prob.sizes[:, None, None] * cfg.offers_per_customer * np.nan_to_num(a_use)
        disc = units * np.nan_to_num(prob.list_sum[None, :, None] - prob.ladder[None])
        lo = np.where(prob.allowed, disc, np.inf).min(axis=2).sum()
        hi = np.where(prob.allowed, disc, -np.inf).max(axis=2).sum()
        budget = max(0.0, float(lo + budget_factor * (hi - lo)))
        cfg = cfg.model_copy(update={"rules": cfg.rules.model_copy(update={"discount_budget": budget})})
    try:
        sol = solve_segment_prices(prob, cfg)
    except InfeasibleRulesError as e:
        assert any(w in str(e) for w in RULE_WORDS), str(e)
        event("infeasible: " + ", ".join(sorted({w for w in RULE_WORDS if w in str(e)})))
        return
    event(f"solved: {sol.source}")
    assert _segment_violations(prob, cfg, sol.price) == []
    assert sol.source in ("milp", "milp_incumbent", "lagrangian", "previous_price_book")
    assert np.isfinite(sol.table["expected_profit"]).all()
    # personal prices for a few customers of these segments
    rng = np.random.default_rng(seed + 1)
    rungs, _ = customer_rungs(prob.ladder, prob.allowed, sol.price, prob.list_sum, cfg, prob.cost_sum, prob.current_price)
    C, K = 25, min(3, B)
    seg = rng.integers(0, S, C)
    cand = np.array([rng.choice(B, size=K, replace=False) for _ in range(C)], dtype=np.int32)
    pr = np.where(rungs[seg[:, None], cand] >= 0, prob.ladder[cand[:, :, None], np.maximum(rungs[seg[:, None], cand], 0)], np.nan)
    a = np.nan_to_num(1 / (1 + np.exp(-(rng.normal(0, 1, (C, K, 1)) - 6 * np.log(pr / prob.list_sum[cand][:, :, None])))))
    cprob = CustomerProblem(
        customer_ids=np.arange(C), segment=seg, candidates=cand, rungs=rungs, accept_mean=a.astype(np.float32),
        segment_price=sol.price, ladder=prob.ladder, allowed=prob.allowed, list_sum=prob.list_sum,
        cost_sum=prob.cost_sum, bundle_ids=prob.bundle_ids, segment_ids=prob.segment_ids,
        accept_low=(a * 0.8).astype(np.float32), accept_high=np.minimum(1, a * 1.2).astype(np.float32),
        current_price=prob.current_price, bundle_items=prob.bundle_items,
        inventory=np.where(np.isfinite(prob.inventory), np.floor(rng.uniform(0, 3, P)), np.inf), product_ids=prob.product_ids,
        # expected offers per candidate pair (a shop shows each customer some bundles more than others)
        offers_per_customer=rng.uniform(0.2, 3.0, (C, K)) if seed % 2 else 1.0,
    )
    if budget_factor is not None:  # a budget on the scale of these few customers
        cb = max(0.0, budget_factor) * C * 0.1 * float(np.mean(prob.list_sum))
        cfg = cfg.model_copy(update={"rules": cfg.rules.model_copy(update={"discount_budget": cb})})
    csol = solve_customer_prices(cprob, cfg)
    assert _customer_violations(cprob, cfg, csol) == []
    assert check_customer_rules(cprob, cfg, csol) == []
    assert csol.dual_bound >= csol.objective - 1e-6 * max(1.0, abs(csol.objective))
    event("personal: shared rows binding" if csol.shared["binding"].any() else "personal: unconstrained")


# --------------------------------------------------------------------------------------------------
# MILP = brute force on tiny instances
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_milp_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    cfg = _cfg(step=0.1, max_discount=0.4, fairness_gap=float(rng.choice([0.05, 0.1, 0.2])), max_change=None,
               risk_aversion=float(rng.choice([0.0, 1.0])), mip_rel_gap=0.0)
    prob = synthetic_segment_problem(int(rng.integers(2, 4)), int(rng.integers(2, 4)), cfg, seed=seed,
                                     inventory_share=0.5, inventory_tightness=0.3, with_current=False)
    d = opt._segment_data(prob, cfg)
    r, _ = opt._best_fair(d.obj, d.allowed, d.prices, d.gap)
    disc = float(opt._take_at(d.disc, r).sum())
    cfg = cfg.model_copy(update={"rules": cfg.rules.model_copy(update={"discount_budget": 0.7 * disc})})
    milp = solve_segment_prices(prob, cfg)
    brute = brute_force_segment_prices(prob, cfg)
    assert milp.source == "milp" and milp.status == "optimal"
    assert milp.objective == pytest.approx(brute.objective, rel=1e-6)
    assert _segment_violations(prob, cfg, milp.price) == []
    assert milp.dual_bound >= milp.objective - 1e-6 * abs(milp.objective)


def test_unconstrained_milp_picks_each_best_fair_choice():
    """No shared rows and no fairness: each (segment, bundle) takes its own best allowed rung."""
    cfg = _cfg(fairness_gap=None, max_change=None)
    prob = synthetic_segment_problem(30, 3, cfg, seed=5, inventory_share=0.0, with_current=False)
    sol = solve_segment_prices(prob, cfg)
    d = opt._segment_data(prob, cfg)
    best = np.where(d.allowed, d.obj, -np.inf).max(axis=2).sum()
    assert sol.objective == pytest.approx(best, rel=1e-9)


# --------------------------------------------------------------------------------------------------
# infeasibility is an error naming the rules
# --------------------------------------------------------------------------------------------------


def _one_bundle(ladder, allowed, mean, list_sum=40.0, cost=1.0, sizes=(100.0, 100.0), inventory=None, current=None):
    S = len(sizes)
    L = len(ladder)
    return SegmentProblem(
        ["B1"], [f"S{s + 1}" for s in range(S)], np.array(sizes), np.array([list_sum]), np.array([cost]),
        np.array([ladder], float), np.asarray(allowed).reshape(S, 1, L), np.asarray(mean, float).reshape(S, 1, L),
        None, None, current, sparse.csr_matrix(np.array([[1.0]])), None if inventory is None else np.array([inventory]),
        ["P1"], 1.0,
    )


def test_inventory_that_cannot_be_met_names_the_product():
    prob = _one_bundle([10, 20, 30, 40], np.ones((2, 4), bool), [[0.9, 0.8, 0.7, 0.6]] * 2, inventory=50.0)
    cfg = _cfg(fairness_gap=None, min_margin=0.0)
    with pytest.raises(InfeasibleRulesError, match=r"inventory:P1: inventory 50.0 < 120.0 units"):
        solve_segment_prices(prob, cfg)


def test_budget_that_cannot_be_met_names_the_budget():
    prob = _one_bundle([10, 20, 30, 40], np.array([[1, 1, 1, 0]] * 2, bool), [[0.9, 0.8, 0.7, 0.6]] * 2)
    cfg = _cfg(fairness_gap=None, min_margin=0.0, discount_budget=100.0)
    with pytest.raises(InfeasibleRulesError, match=r"budget: discount_budget 100.00 < 1400.00"):
        solve_segment_prices(prob, cfg)


def test_fairness_against_allowed_ranges_names_the_segments():
    prob = _one_bundle([10, 20, 30, 40], np.array([[1, 1, 0, 0], [0, 0, 1, 1]], bool), [[0.5] * 4] * 2)
    cfg = _cfg(fairness_gap=0.2, min_margin=0.0)  # window 8.00: segment ranges [10, 20] and [30, 40]
    with pytest.raises(InfeasibleRulesError, match=r"B1: fairness_gap 0.20 needs all segment prices within 8.00.*"
                                                   r"S1 \[10.00, 20.00\], S2 \[30.00, 40.00\]"):
        solve_segment_prices(prob, cfg)


def test_joint_conflict_found_by_the_solver_is_named():
    """Each rule alone can hold, together they cannot: the only fair pair is (20, 30), whose units
    exceed the inventory that the (20, 40) pair would respect. The elastic LP names the row."""
    mean = [[0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, 0.6]]
    prob = _one_bundle([10, 20, 30, 40], np.array([[1, 1, 0, 0], [0, 0, 1, 1]], bool), mean, inventory=145.0)
    cfg = _cfg(fairness_gap=0.45, min_margin=0.0)  # window 18.00: (20, 30) fair, (20, 40) not
    with pytest.raises(InfeasibleRulesError, match=r"inventory:P1 must be exceeded"):
        solve_segment_prices(prob, cfg)


# --------------------------------------------------------------------------------------------------
# solver failure: never publish a rule-breaking price
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def constrained():
    cfg = _cfg()
    prob = synthetic_segment_problem(40, 4, cfg, seed=11, inventory_share=0.3, inventory_tightness=0.5)
    d = opt._segment_data(prob, cfg)
    r, _ = opt._best_fair(d.obj, d.allowed, d.prices, d.gap)
    disc = float(opt._take_at(d.disc, r).sum())
    cfg = cfg.model_copy(update={"rules": cfg.rules.model_copy(update={"discount_budget": 0.8 * disc})})
    return prob, cfg


def _fake(status: str, y: np.ndarray | None, primal_ok: bool):
    def run(milp, cfg, start=None):
        yy = None if y is None else np.resize(y, max(milp.n_vars, 1))
        return opt._SolverResult(status, yy, primal_ok, None, None, 0.01)
    return run


def test_time_out_without_solution_falls_back_to_a_rule_safe_book(monkeypatch, constrained):
    prob, cfg = constrained
    # what cvxpy hands back after a HiGHS time-out before any incumbent: user_limit, all-zero variables
    monkeypatch.setattr(opt, "_run_solver", _fake("user_limit", np.zeros(1), primal_ok=False))
    sol = solve_segment_prices(prob, cfg)
    assert sol.source in ("lagrangian", "previous_price_book")
    assert "user_limit" in sol.fallback_reason and sol.status.startswith("feasible")
    assert _segment_violations(prob, cfg, sol.price) == []
    assert sol.dual_bound is not None and sol.dual_bound >= sol.objective


def test_a_rule_breaking_solver_answer_is_never_published(monkeypatch, constrained):
    prob, cfg = constrained
    # a "solution" at every cheapest rung breaks the inventory and budget rows
    monkeypatch.setattr(opt, "_run_solver", _fake("optimal", np.zeros(1), primal_ok=True))
    sol = solve_segment_prices(prob, cfg)
    assert sol.source != "milp"
    assert any("breaks rules" in w and ("budget" in w or "inventory:" in w) for w in sol.warnings)
    assert _segment_violations(prob, cfg, sol.price) == []


def test_previous_book_when_the_heuristic_fails_too(monkeypatch):
    cfg = _cfg(fairness_gap=None, max_change=0.5)
    prob = synthetic_segment_problem(5, 2, cfg, seed=2, inventory_share=0.0, with_current=True)
    monkeypatch.setattr(opt, "_run_solver", _fake("solver_error", None, primal_ok=False))
    monkeypatch.setattr(opt, "_segment_lagrangian", lambda d, **kw: (None, -np.inf, np.inf))
    sol = solve_segment_prices(prob, cfg)
    assert sol.source == "previous_price_book"
    np.testing.assert_allclose(sol.price, prob.current_price)
    prob.current_price = None
    with pytest.raises(opt.OptimizationFailedError, match="no rule-safe fallback"):
        solve_segment_prices(prob, cfg)


def test_mip_start_is_used_and_agrees_with_a_cold_solve(constrained):
    prob, cfg = constrained
    warm = solve_segment_prices(prob, cfg)
    cold = solve_segment_prices(prob, cfg.model_copy(update={"warm_start": False}))
    assert warm.source == cold.source == "milp"
    assert warm.objective == pytest.approx(cold.objective, rel=2 * cfg.mip_rel_gap)
    # the heuristic's book is a valid start: HiGHS never ends below it
    d = opt._segment_data(prob, cfg)
    rung, lobj, lbound = opt._segment_lagrangian(d)
    assert warm.objective >= lobj - 1e-6 * abs(lobj) and lbound >= warm.objective * (1 - 1e-9)
    milp = opt.build_segment_milp(prob, cfg, data=d)
    res = opt._run_solver(milp, cfg, milp.start_values(rung, d.prices))
    assert res.primal_ok and opt._decode(milp, res.x, d.S, d.B) is not None


def test_real_tiny_time_limit_is_flagged_and_safe():
    cfg = _cfg()
    big = synthetic_segment_problem(300, 6, cfg, seed=3, inventory_share=0.3, inventory_tightness=0.5)
    sol = solve_segment_prices(big, cfg.model_copy(update={"time_limit_s": 1e-3, "mip_rel_gap": 0.0}))
    assert _segment_violations(big, cfg, sol.price) == []
    if sol.source != "milp":
        assert sol.fallback_reason and sol.status.startswith("feasible")


def test_binding_rules_and_slacks():
    """Flat acceptance: profit rises with price, so the price sits at the highest allowed rung and the
    rule stopping it is reported (max_change for S1, max_price for S2)."""
    ladder = [10, 20, 30, 40]
    allowed = np.ones((2, 4), bool)
    cfg = _cfg(fairness_gap=None, min_margin=0.0, min_bundle_discount=0.2, max_change=0.5)
    # S1: current 18 -> max_change allows [9, 27]; S2: current 40 -> [20, 60]; max_price 40 * 0.8 = 32
    prob = _one_bundle(ladder, allowed, [[0.5] * 4] * 2, current=np.array([[18.0], [40.0]]))
    sol = solve_segment_prices(prob, cfg)
    np.testing.assert_allclose(sol.price[:, 0], [20, 30])
    t = sol.table.set_index("segment_id")
    assert t.loc["S1", "binding_rules"] == "max_change"
    assert t.loc["S2", "binding_rules"] == "max_price"
    assert t.loc["S2", "slack_max_price"] == pytest.approx(2.0)
    assert t.loc["S1", "slack_max_change"] == pytest.approx(7.0)
    # fairness 0.2 (window 8.00): S2 must come down to S1's 20, and fairness is what stops it
    fair = solve_segment_prices(prob, cfg.model_copy(update={"rules": cfg.rules.model_copy(update={"fairness_gap": 0.2})}))
    np.testing.assert_allclose(fair.price[:, 0], [20, 20])
    assert "fairness" in fair.table.set_index("segment_id").loc["S2", "binding_rules"]


# --------------------------------------------------------------------------------------------------
# personal prices
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def customers():
    cfg = _cfg()
    seg = synthetic_segment_problem(40, 4, cfg, seed=3, inventory_share=0.0)
    book = solve_segment_prices(seg, cfg)
    cp_ = synthetic_customer_problem(seg, book.price, cfg, 3000, 8, seed=1)
    return seg, book, cp_, cfg


def test_personal_prices_without_binding_rows_are_the_per_customer_argmax(customers):
    _, _, cp_, cfg = customers
    sol = solve_customer_prices(cp_, cfg)
    assert sol.gap == 0 and sol.n_withheld == 0
    # brute force: best rung per candidate, then the N best non-negative candidates
    a = np.clip(cp_.accept_mean - cfg.risk_aversion * (cp_.accept_mean - cp_.accept_low), 0, 1).astype(np.float64)
    rr = cp_.rungs[cp_.segment[:, None], cp_.candidates].astype(int)
    price = np.where(rr >= 0, cp_.ladder[cp_.candidates[:, :, None], np.maximum(rr, 0)], np.nan)
    prof = np.where(np.isfinite(price), a * (price - cp_.cost_sum[cp_.candidates][:, :, None]), -np.inf)
    best = prof.max(axis=2)
    top = -np.sort(-best, axis=1)[:, : cfg.top_n_bundles]
    expect = top[np.isfinite(top) & (top >= 0)].sum()
    assert sol.objective == pytest.approx(expect, rel=1e-5)
    got = np.sort(np.nan_to_num(sol.objective_per_offer, nan=-1), axis=1)[:, ::-1]
    n = top.shape[1]  # min(K, top_n): with fewer candidates than offers the remaining slots stay empty
    np.testing.assert_allclose(got[:, :n], np.where(np.isfinite(top) & (top >= 0), top, -1), rtol=1e-5, atol=1e-5)
    assert (got[:, n:] == -1).all()
    assert _customer_violations(cp_, cfg, sol) == []


def test_personal_prices_beat_segment_prices_when_band_is_positive(customers):
    _, _, cp_, cfg = customers
    personal = solve_customer_prices(cp_, cfg)
    base = solve_customer_prices(cp_, cfg, segment_price_only=True)
    assert personal.objective >= base.objective - 1e-9
    assert personal.objective > base.objective  # band 0.05 leaves room to do better
    frame = base.to_frame(cp_)
    np.testing.assert_allclose(frame["price"], frame["segment_price"], atol=1e-3)
    zero = solve_customer_prices(cp_, cfg.model_copy(update={"rules": cfg.rules.model_copy(update={"customer_band": 0.0})}))
    assert zero.objective == pytest.approx(base.objective, rel=1e-6)


def test_shared_rows_hold_after_repair_and_the_bound_is_valid(customers):
    seg, _, cp_, cfg = customers
    free = solve_customer_prices(cp_, cfg)
    units_b = np.bincount(free.bundle[free.bundle >= 0], weights=free.expected_conversion[free.bundle >= 0],
                          minlength=len(seg.bundle_ids))
    use = np.asarray(seg.bundle_items.T @ units_b).ravel()
    spent = np.nansum((cp_.list_sum[np.maximum(free.bundle, 0)] - free.price) * free.expected_conversion * (free.bundle >= 0))
    tight = cfg.model_copy(update={"rules": cfg.rules.model_copy(update={"discount_budget": float(0.6 * spent)})})
    cp_.inventory = np.where(np.arange(len(use)) % 3 == 0, np.floor(0.5 * use), np.inf)
    try:  # the fixture is shared: restore it afterwards
        sol = solve_customer_prices(cp_, tight)
        base = solve_customer_prices(cp_, tight, segment_price_only=True)
        assert _customer_violations(cp_, tight, sol) == []
        assert _customer_violations(cp_, tight, base) == []
        assert check_customer_rules(cp_, tight, sol) == []
    finally:
        cp_.inventory = None
    assert sol.shared["binding"].any() and (sol.shared["slack"] >= -1e-6).all()
    assert sol.objective <= sol.dual_bound
    assert base.objective <= sol.dual_bound  # the baseline is feasible, so it cannot beat the bound
    assert sol.gap < 0.02
    assert sol.objective < free.objective


def test_offers_per_candidate_weigh_the_shared_rows(customers):
    """Expected offers given per (customer, candidate): a constant array is the scalar; uneven offers
    move the inventory usage to the pairs shown most, and the rules hold under them."""
    seg, _, cp_, cfg = customers
    C, K = cp_.candidates.shape
    free = solve_customer_prices(cp_, cfg)
    units_b = np.bincount(free.bundle[free.bundle >= 0], weights=free.expected_conversion[free.bundle >= 0],
                          minlength=len(seg.bundle_ids))
    use = np.asarray(seg.bundle_items.T @ units_b).ravel()
    inventory = np.where(np.arange(len(use)) % 3 == 0, np.floor(0.5 * use), np.inf)
    scalar = dataclasses.replace(cp_, inventory=inventory, offers_per_customer=2.0)
    const = dataclasses.replace(cp_, inventory=inventory, offers_per_customer=np.full((C, K), 2.0))
    a, b = solve_customer_prices(scalar, cfg), solve_customer_prices(const, cfg)
    assert b.objective == pytest.approx(a.objective, rel=1e-6)
    np.testing.assert_array_equal(a.bundle, b.bundle)
    np.testing.assert_allclose(a.price, b.price)
    uneven = dataclasses.replace(cp_, inventory=inventory,
                                 offers_per_customer=np.random.default_rng(3).uniform(0.5, 4.0, (C, K)))
    c = solve_customer_prices(uneven, cfg)
    assert _customer_violations(uneven, cfg, c) == [] and check_customer_rules(uneven, cfg, c) == []
    assert c.shared["binding"].any() and not np.array_equal(c.price, a.price)


def test_customer_frame_and_binding_bits(customers):
    _, _, cp_, cfg = customers
    sol = solve_customer_prices(cp_, cfg)
    frame = sol.to_frame(cp_)
    assert len(frame) == int((sol.bundle >= 0).sum())
    assert {"customer_id", "bundle_id", "price", "expected_conversion", "expected_profit", "profit_low",
            "profit_high", "binding_rules"} <= set(frame.columns)
    assert (frame["profit_low"] <= frame["expected_profit"] + 1e-4).all()
    assert (frame["expected_profit"] <= frame["profit_high"] + 1e-4).all()
    assert frame["binding_rules"].str.contains("customer_band").any()
    assert set(BINDING_BITS) == {"max_price", "min_margin", "max_change", "customer_band", "inventory", "budget"}


def test_config_section_defaults_are_shipped():
    c = Config().optimize
    assert c.rules.customer_band == 0.05 and c.ladder.price_ending == 0.99 and c.highs_options == {"presolve": "off"}
