"""Benchmark: price optimization (segment MILP, personal prices) on synthetic instances.

    .venv/bin/python benchmarks/bench_optimize.py                 # full: 2,000 x 8 MILP, 1M customers
    .venv/bin/python benchmarks/bench_optimize.py --quick         # small smoke run

Stages (wall, CPU, peak RSS of the process; see benchmarks/measure.py):

1. segment MILP: 2,000 bundles x 8 segments x ~20 ladder prices, inventory rows on 5 % of the
   products (tight) and a discount budget at 80 % of the unconstrained discount; CVXPY + HiGHS
   (staircase model, presolve off, MIP start from the Lagrangian heuristic: the default), the
   Lagrangian heuristic alone, and HiGHS without the MIP start;
2. personal prices: 1,000,000 customers x 20 candidate bundles x R band prices (float32 inputs
   generated first, in their own stage), without and with shared rows (10 % of the products at 70 %
   of their unconstrained units, budget at 80 % of the unconstrained discount), plus the
   segment-price baseline on the same customers;
3. MILP vs brute-force enumeration on tiny instances;
4. solvers side by side on a mid-size instance: HiGHS (staircase, our default; and cold), SciPy's
   milp via CVXPY (the same model; SciPy's milp is an older HiGHS inside, without MIP start), the
   textbook one-hot model with hi/lo fairness variables on HiGHS (ipm LPs), and the LP relaxation
   with HiGHS (simplex) and CLARABEL (interior point).

Results: benchmarks/out/optimize-<mode>.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import Recorder


def _budgeted(prob, cfg, share: float):
    """cfg with a discount budget at ``share`` of the unconstrained best fair choice's discount."""
    from pricing import optimize as opt

    d = opt._segment_data(prob, cfg)
    r, _ = opt._best_fair(d.obj, d.allowed, d.prices, d.gap)
    disc = float(opt._take_at(d.disc, r).sum())
    return cfg.model_copy(update={"rules": cfg.rules.model_copy(update={"discount_budget": share * disc})})


def one_hot_milp(prob, cfg, time_limit: float):
    """The textbook model for comparison: one boolean per allowed rung, fairness with hi/lo variables."""
    import cvxpy as cp
    import numpy as np
    from scipy import sparse

    from pricing import optimize as opt

    d = opt._segment_data(prob, cfg)
    S, B, _ = d.allowed.shape
    si, bi, li = np.nonzero(d.allowed)
    n = len(si)
    g = si * B + bi
    c = d.obj[si, bi, li]
    scale = float(np.abs(c).max())
    x = cp.Variable(n, boolean=True)
    cons = [sparse.csr_matrix((np.ones(n), (g, np.arange(n))), shape=(S * B, n)) @ x == 1]
    if d.gap is not None:
        P = sparse.csr_matrix((d.prices[bi, li] / prob.list_sum[bi], (g, np.arange(n))), shape=(S * B, n))
        H = sparse.csr_matrix((np.ones(S * B), (np.arange(S * B), np.tile(np.arange(B), S))), shape=(S * B, B))
        hi, lo = cp.Variable(B), cp.Variable(B)
        cons += [P @ x <= H @ hi, P @ x >= H @ lo, hi - lo <= d.gap / prob.list_sum]
    rows = d.rows
    lim = opt._target_limits(d)
    if rows.m_inv:
        coo = sparse.csr_matrix(rows.items)[bi].tocoo()
        U = sparse.csr_matrix((d.units[si[coo.row], bi[coo.row], li[coo.row]] * coo.data, (coo.col, coo.row)),
                              shape=(rows.m_inv, n))
        cons.append(sparse.diags(1 / lim[: rows.m_inv]) @ U @ x <= 1)
    if rows.has_budget:
        cons.append((d.disc[si, bi, li] / lim[-1]) @ x <= 1)
    p = cp.Problem(cp.Maximize((c / scale) @ x), cons)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p.solve(solver=cp.HIGHS, highs_options={"time_limit": time_limit, "mip_rel_gap": cfg.mip_rel_gap,
                                                  "threads": cfg.threads, "mip_lp_solver": "ipm"})
    info = p.solver_stats.extra_stats
    ok = getattr(info, "primal_solution_status", 0) == 2
    return p.status, (p.value * scale if ok else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--bundles", type=int, default=2000)
    ap.add_argument("--segments", type=int, default=8)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--mid-bundles", type=int, default=600)
    ap.add_argument("--compare-time-limit", type=float, default=120.0)
    ap.add_argument("--skip-compare", action="store_true", help="skip the slow solver comparison")
    ap.add_argument("--pair-offers", action="store_true",
                    help="expected offers per (customer, candidate) pair (the price book's default), not one per customer")
    ap.add_argument("--customers-only", action="store_true",
                    help="only stage 2 (segment prices from the Lagrangian heuristic): a clean memory figure")
    args = ap.parse_args()
    if args.quick:
        args.bundles, args.customers, args.mid_bundles, args.compare_time_limit = 200, 50_000, 100, 30.0

    from pricing import optimize as opt
    from pricing.config import OptimizeConfig

    rec = Recorder()
    base_cfg = OptimizeConfig()
    B, S = args.bundles, args.segments

    # -- 1. segment MILP ------------------------------------------------------------------------
    print(f"segment MILP: {B} bundles x {S} segments")
    prob = opt.synthetic_segment_problem(B, S, base_cfg, seed=1, inventory_share=0.05, inventory_tightness=0.5,
                                         with_current=False)
    cfg = _budgeted(prob, base_cfg, 0.8)
    d = opt._segment_data(prob, cfg)
    rungs_per_group = float(d.allowed.sum(axis=2).mean())
    if args.customers_only:
        seg_price = opt._prices_of(d, opt._segment_lagrangian(d)[0])
        del d
        _customers(args, rec, prob, seg_price, base_cfg)
        _finish(args, rec, "customers")
        return
    with rec.stage("segment MILP: CVXPY build + HiGHS", bundles=B, segments=S, ladder=prob.ladder.shape[1],
                   allowed_rungs=round(rungs_per_group, 1)) as st:
        sol = opt.solve_segment_prices(prob, cfg)
        st.extra.update(status=sol.status, source=sol.source, gap=f"{sol.mip_gap:.1e}" if sol.mip_gap else sol.mip_gap,
                        solver_s=round(sol.solve_time_s or 0, 1), shared_rows=len(sol.shared),
                        binding_rows=int(sol.shared["binding"].sum()))
    assert not opt.check_segment_rules(prob, cfg, sol.price)
    milp = opt.build_segment_milp(prob, cfg, data=d)
    print(f"  staircase MILP: {milp.n_vars:,} binaries, {len(milp.problem.constraints)} constraint blocks; "
          f"objective {sol.objective:,.0f}, bound {sol.dual_bound:,.0f}")
    with rec.stage("segment: Lagrangian heuristic alone") as st:
        _lr, lobj, lbound = opt._segment_lagrangian(d, time_budget=120)
        st.extra.update(objective_vs_milp=f"{lobj / sol.objective - 1:+.2e}", own_gap=f"{(lbound - lobj) / lbound:.1e}")
    if not args.skip_compare:
        cold = cfg.model_copy(update={"warm_start": False, "time_limit_s": args.compare_time_limit})
        with rec.stage("segment MILP: HiGHS cold (no MIP start)") as st:
            c_sol = opt.solve_segment_prices(prob, cold)
            st.extra.update(status=c_sol.status, source=c_sol.source, solver_s=round(c_sol.solve_time_s or 0, 1),
                            objective_vs_warm=f"{c_sol.objective / sol.objective - 1:+.1e}")

    _customers(args, rec, prob, sol.price, base_cfg)
    _compare(args, rec, base_cfg)
    _finish(args, rec, "quick" if args.quick else "full")


def _customers(args, rec, prob, seg_price, base_cfg) -> None:
    """Stage 2: personal prices for many customers."""
    import numpy as np

    from pricing import optimize as opt

    B = len(prob.bundle_ids)
    C, K = args.customers, args.candidates
    print(f"personal prices: {C:,} customers x {K} candidates")
    with rec.stage("customers: generate float32 inputs", customers=C, candidates=K) as st:
        cprob = opt.synthetic_customer_problem(prob, seg_price, base_cfg, C, K, seed=2)
        if args.pair_offers:  # expected offers per (customer, candidate), mean 1, as the price book passes them
            cprob.offers_per_customer = np.random.default_rng(3).gamma(2.0, 0.5, (C, K)).astype(np.float32)
        st.extra.update(R=cprob.shape[2], input_mib=round(3 * cprob.accept_mean.nbytes / 2**20),
                        offers="per pair" if args.pair_offers else "per customer")
    with rec.stage("customers: no shared rows (pure argmax)") as st:
        free = opt.solve_customer_prices(cprob, base_cfg)
        st.extra.update(status=free.status, offers=int((free.bundle >= 0).sum()))
    on = free.bundle >= 0
    offers = np.broadcast_to(opt._pair_offers(cprob, base_cfg).reshape(C, -1), (C, K))
    w = np.where(on, np.take_along_axis(offers, np.maximum(free.candidate, 0), axis=1), 0.0)  # offers of the chosen pair
    units_b = np.bincount(free.bundle[on], weights=(free.expected_conversion * w)[on], minlength=B)
    use = np.asarray(prob.bundle_items.T @ units_b).ravel()
    spent = float(np.nansum((prob.list_sum[np.maximum(free.bundle, 0)] - free.price) * free.expected_conversion * w))
    rng = np.random.default_rng(0)
    cprob.inventory = np.where(rng.random(len(use)) < 0.1, np.floor(0.7 * use), np.inf)
    ccfg = base_cfg.model_copy(update={"rules": base_cfg.rules.model_copy(update={"discount_budget": 0.8 * spent})})
    with rec.stage("customers: inventory + budget (Lagrangian)") as st:
        csol = opt.solve_customer_prices(cprob, ccfg)
        st.extra.update(rows=len(csol.shared), binding=int(csol.shared["binding"].sum()), gap=f"{csol.gap:.1e}",
                        iterations=csol.iterations, withheld=csol.n_withheld,
                        **{f"t_{k}": round(v, 1) for k, v in csol.timings.items()})
    assert not opt.check_customer_rules(cprob, ccfg, csol)
    with rec.stage("customers: segment-price baseline (same rules)") as st:
        base = opt.solve_customer_prices(cprob, ccfg, segment_price_only=True)
        st.extra.update(uplift_personal=f"{csol.objective / base.objective - 1:+.1%}")
    del cprob, free, csol, base


def _compare(args, rec, base_cfg) -> None:
    """Stages 3 and 4: MILP vs brute force; solvers and formulations side by side."""
    import cvxpy as cp
    import numpy as np

    from pricing import optimize as opt
    from pricing.config import LadderConfig

    small = base_cfg.model_copy(update={"ladder": LadderConfig(step=0.1, max_discount=0.4), "mip_rel_gap": 0.0})
    small = small.model_copy(update={"rules": small.rules.model_copy(update={"max_change": None, "fairness_gap": 0.1})})
    for b, s in [(2, 2), (3, 2), (3, 3)]:
        p = opt.synthetic_segment_problem(b, s, small, seed=4, inventory_share=0.5, inventory_tightness=0.3,
                                          with_current=False)
        c = _budgeted(p, small, 0.7)
        combos = int(np.prod(opt._segment_data(p, c).allowed.sum(axis=2)))
        with rec.stage(f"tiny {b}x{s}: MILP", combos=combos) as st:
            m = opt.solve_segment_prices(p, c)
        with rec.stage(f"tiny {b}x{s}: brute force", combos=combos) as st:
            bf = opt.brute_force_segment_prices(p, c)
            st.extra.update(same_objective=abs(m.objective - bf.objective) <= 1e-6 * abs(bf.objective))

    # -- 4. solvers side by side on a mid-size instance ------------------------------------------------
    if not args.skip_compare:
        mb = args.mid_bundles
        mid = opt.synthetic_segment_problem(mb, 8, base_cfg, seed=5, inventory_share=0.05, inventory_tightness=0.5,
                                            with_current=False)
        mcfg = _budgeted(mid, base_cfg, 0.8)
        tl = args.compare_time_limit
        with rec.stage(f"mid {mb}x8: HiGHS staircase + MIP start (default)") as st:
            ref = opt.solve_segment_prices(mid, mcfg)
            st.extra.update(objective=f"{ref.objective:,.0f}", status=ref.status, solver_s=round(ref.solve_time_s, 1))
        with rec.stage(f"mid {mb}x8: HiGHS staircase, cold") as st:
            c_ref = opt.solve_segment_prices(mid, mcfg.model_copy(update={"warm_start": False, "time_limit_s": tl}))
            st.extra.update(status=c_ref.status, objective_vs_default=f"{c_ref.objective / ref.objective - 1:+.1e}")
        md = opt._segment_data(mid, mcfg)
        m = opt.build_segment_milp(mid, mcfg, data=md)
        with rec.stage(f"mid {mb}x8: SciPy milp via CVXPY (same model)") as st:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m.problem.solve(solver=cp.SCIPY, scipy_options={"time_limit": tl, "mip_rel_gap": mcfg.mip_rel_gap,
                                                                "presolve": False})
            val = m.problem.value * m.scale + m.constant if m.problem.value is not None else None
            st.extra.update(status=m.problem.status, objective_vs_highs=None if val is None else f"{val / ref.objective - 1:+.1e}")
        with rec.stage(f"mid {mb}x8: HiGHS one-hot + hi/lo fairness") as st:
            status, val = one_hot_milp(mid, mcfg, tl)
            st.extra.update(status=status, objective_vs_staircase=None if val is None else f"{val / ref.objective - 1:+.1e}")
        lp = opt.build_segment_milp(mid, mcfg, relax=True, data=md)
        for name, kw in [("HiGHS simplex", {"solver": cp.HIGHS, "highs_options": {"presolve": "off"}}),
                         ("CLARABEL", {"solver": cp.CLARABEL})]:
            with rec.stage(f"mid {mb}x8: LP relaxation, {name}") as st:
                t0 = time.perf_counter()
                lp.problem.solve(**kw)
                bound = lp.problem.value * lp.scale + lp.constant
                st.extra.update(status=lp.problem.status, bound_vs_milp=f"{bound / ref.objective - 1:+.1e}",
                                solve_s=round(time.perf_counter() - t0, 1))



def _finish(args, rec, mode: str) -> None:
    out = Path(__file__).parent / "out" / f"optimize-{mode}.json"
    rec.save(out, args=vars(args))
    print()
    print(rec.table())
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
