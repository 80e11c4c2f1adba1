"""Where does the acceptance model lose against the clairvoyant optimum, and would more knowledge help?

    .venv/bin/python benchmarks/model_gap.py --data work/demo/data --work work            # breakdown only
    .venv/bin/python benchmarks/model_gap.py --data work/demo/data --work work --retrain  # + told models, random effects

Prices the same sample of next-week traffic as ``benchmarks/price_ceiling.py`` (each shown pair at the
model's most profitable rung of the default ladder, no rules) and values it under the simulator's
truth, as a share of the clairvoyant optimum:

* the registered model (``--alias``) broken down by hidden customer type: each type's part of the
  clairvoyant profit, the model's share of it, the mean and spread of log(model price / clairvoyant
  price) and the mean model vs true price sensitivity; then every type's prices moved by its mean
  log error (an oracle correction that knows the types);
* with ``--retrain``, structured models trained in-process on the snapshot's offers (the shipped model
  config): as is; told each customer's true type as a feature; told each bundle's true log value;
  with the bundle id as a categorical feature; and a population model without the five offer-history
  features, cross-fitted over 3 folds of customers, with per-customer random effects (a level shift
  whose spread scales with sensitivity^gamma, a log-slope multiplier; spreads by marginal likelihood on
  a grid, posterior on a 15 x 7 Gauss-Hermite grid, prices by posterior expected profit).

Results: benchmarks/out/model-gap.json and tables on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, log_expit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HISTORY = ["cust_offers_seen", "cust_offers_accepted", "cust_accept_rate", "cust_accepted_discount_mean",
           "cust_declined_discount_mean"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="work/demo/data", help="simulated market folder (with _truth)")
    ap.add_argument("--work", default="work", help="work dir holding the ingested snapshot and MLflow store")
    ap.add_argument("--alias", default="champion", help="registered model alias to break down")
    ap.add_argument("--pairs", type=int, default=20_000, help="traffic sample size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retrain", action="store_true", help="also train the told models and the random effects")
    args = ap.parse_args()

    from pricing import simulator as sim
    from pricing import tracking
    from pricing.config import Config
    from pricing.features import assemble, context_features, price_features
    from pricing.ingest import latest_snapshot, load_snapshot
    from pricing.scoring import pricing_time, score_prices

    config = Config.model_validate({"paths": {"work_dir": args.work}})
    snap = latest_snapshot(Path(args.work) / "ingest")
    if snap is None:
        sys.exit(f"no validated snapshot under {args.work}/ingest: run `bundle-pricing ingest` first")
    tables = load_snapshot(snap)
    market = sim.load_market(args.data)
    at = pricing_time(tables)
    traffic = sim.sample_traffic(market, sim.period_start(at), 7, args.pairs, args.seed)
    ci = sim.customer_index(market, traffic["customer_id"].to_numpy())
    bi = sim.bundle_index(market, traffic["bundle_id"].to_numpy())
    day = traffic["offer_time"]
    cost, lst = market.bundle_cost[bi], market.bundle_list[bi]
    p_star, prof_star = sim.clairvoyant_prices(market, ci, bi, day)
    clair = float(prof_star.sum())
    a, h = sim._utility_parts(market, ci, bi, day)
    disc = np.arange(0.0, 0.5001, config.optimize.ladder.step)
    P = lst[:, None] * (1 - disc[None, :])
    P = np.where(P >= cost[:, None] * (1 + config.optimize.rules.min_margin), P, np.nan)
    Pf = np.where(np.isfinite(P), P, lst[:, None])
    rows = np.arange(len(ci))

    def profit(price: np.ndarray) -> np.ndarray:
        return (price - cost) * expit(a - h * np.log(price))

    def best_rung(acc: np.ndarray) -> np.ndarray:
        return Pf[rows, np.where(np.isfinite(P), acc * (Pf - cost[:, None]), -np.inf).argmax(1)]

    req = pd.DataFrame({"customer_id": traffic["customer_id"].to_numpy(), "bundle_id": traffic["bundle_id"].to_numpy(),
                        "time": pd.Series([at] * len(ci), dtype="datetime64[us, UTC]")})
    tracking.configure(config)
    loaded = tracking.load_model(config.model.registered_model_name, alias=args.alias)
    ctx = context_features(loaded.builder, tables, req)
    p_model = best_rung(score_prices(loaded.model, loaded.builder, ctx, P))
    types = market.customer_type[ci]
    err = np.log(p_model / p_star)
    contrib = profit(p_model)
    Xl = assemble(ctx, price_features(ctx, lst), loaded.builder)
    sens = loaded.model.sensitivity(loaded.model._matrix(Xl)) if loaded.model.structured else np.full(len(ci), np.nan)
    by_type = []
    moved = p_model.copy()
    for k, name in enumerate(sim.TYPE_NAMES):
        s = types == k
        by_type.append({"type": name, "share_of_clairvoyant_profit": prof_star[s].sum() / clair,
                        "model_share": contrib[s].sum() / prof_star[s].sum(),
                        "loss_of_total": (prof_star[s].sum() - contrib[s].sum()) / clair,
                        "log_price_error_mean": err[s].mean(), "log_price_error_sd": err[s].std(),
                        "model_sensitivity_mean": sens[s].mean(), "true_sensitivity_mean": h[s].mean()})
        moved[s] = p_model[s] * np.exp(-err[s].mean())
    moved = np.clip(moved, cost * (1 + config.optimize.rules.min_margin), lst)
    results: dict = {"model_per_pair": float(contrib.sum() / clair), "by_type": by_type,
                     "types_moved_by_mean_error": float(profit(moved).sum() / clair)}
    print(f"model ({args.alias}), every pair at its best rung: {results['model_per_pair']:.4f}")
    print(pd.DataFrame(by_type).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"every type's prices moved by its mean log error: {results['types_moved_by_mean_error']:.4f}")
    if args.retrain:
        results["retrained"] = _retrained(args, config, tables, market, ci, bi, ctx, traffic, P, Pf, best_rung, profit,
                                          clair)
    out = Path(__file__).parent / "out" / "model-gap.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float))
    print(f"saved {out}")


def _retrained(args, config, tables, market, ci, bi, ctx, traffic, P, Pf, best_rung, profit, clair) -> dict:
    """Structured models trained in-process: as is, told the truth in one feature, and random effects."""
    from pricing import simulator as sim
    from pricing.features import PRICE_FEATURES, assemble, price_features
    from pricing.model import _log_ratio_of_discount, train_model
    from pricing.training import build_training_data

    data = build_training_data(tables, config)
    offers = tables["offers"]
    oci = sim.customer_index(market, offers["customer_id"].astype(str).to_numpy())
    obi = sim.bundle_index(market, offers["bundle_id"].astype(str).to_numpy())
    lst = market.bundle_list[bi]
    with np.errstate(invalid="ignore", divide="ignore"):
        disc = 1.0 - P / lst[:, None]
    ctx_x = assemble(ctx, price_features(ctx, lst), data.builder)
    told = {  # name: (training column, scoring column, categorical)
        "as is": None,
        "told the true type": (market.customer_type[oci], market.customer_type[ci], True),
        "told the true bundle value": (market.bundle_log_value[obi], market.bundle_log_value[bi], False),
        "bundle id as a feature": (obi, bi, True),
    }
    out: dict = {}
    for name, extra in told.items():
        X, Xe, cat = data.X, ctx_x, list(data.builder.categorical)
        if extra is not None:
            X = X.assign(told=np.asarray(extra[0], dtype=float))
            Xe = Xe.assign(told=np.asarray(extra[1], dtype=float))
            cat = cat + (["told"] if extra[2] else [])
        res = train_model(X, data.y, data.times, PRICE_FEATURES, config.model, cat)
        acc = res.model.predict_proba_at_discounts(Xe, disc.astype(np.float32).astype(np.float64))
        out[name] = {"per_pair": float(profit(best_rung(acc)).sum() / clair),
                     "test_log_loss": float(res.metrics["test_log_loss"])}
        print(f"{name}: per pair {out[name]['per_pair']:.4f}, test log loss {out[name]['test_log_loss']:.4f}", flush=True)

    # population model without the offer-history features, cross-fitted by customer; random effects on top
    def blank(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(**{c: np.nan for c in HISTORY if c in df.columns})

    Xb, Xeb, y = blank(data.X), blank(ctx_x), np.asarray(data.y)
    ucust, cidx = np.unique(oci, return_inverse=True)
    fold_c = np.random.default_rng(args.seed).integers(0, 3, len(ucust))
    fold = fold_c[cidx]
    tpos = np.searchsorted(ucust, ci)
    known = (tpos < len(ucust)) & (ucust[np.minimum(tpos, len(ucust) - 1)] == ci)
    tpos = np.minimum(tpos, len(ucust) - 1)
    tfold = np.where(known, fold_c[tpos], 0)
    lev_o, sen_o, ell_o = (np.empty(len(Xb)) for _ in range(3))
    lev_e, sen_e, ref_e = (np.empty(len(ci)) for _ in range(3))
    times = pd.Series(data.times).reset_index(drop=True)
    for f in range(3):
        tr = fold != f
        m = train_model(Xb[tr].reset_index(drop=True), y[tr], times[tr].reset_index(drop=True), PRICE_FEATURES,
                        config.model, data.builder.categorical).model
        lev_o[~tr], sen_o[~tr], ell_o[~tr] = m._structured_parts(Xb[~tr])
        te = tfold == f
        lev_e[te], sen_e[te] = m._level_and_sensitivity(m._matrix(Xeb[te]))
        ref_e[te] = m.ell_ref
    ell_e = _log_ratio_of_discount(np.broadcast_to(disc, P.shape)) - ref_e[:, None]
    out["population without offer history"] = {
        "per_pair": float(profit(best_rung(expit(lev_e[:, None] - sen_e[:, None] * ell_e))).sum() / clair)}
    z1, w1 = np.polynomial.hermite_e.hermegauss(15)
    z2, w2 = np.polynomial.hermite_e.hermegauss(7)
    Z1, Z2 = (g.ravel() for g in np.meshgrid(z1, z2, indexing="ij"))
    W = np.outer(w1, w2).ravel()
    W /= W.sum()
    sbar = float(np.exp(np.log(sen_o).mean()))

    def loglik(t1: float, t2: float, gam: float) -> np.ndarray:
        ll = np.zeros((len(ucust), len(W)))
        for s0 in range(0, len(Xb), 50_000):
            sl = slice(s0, s0 + 50_000)
            u = (lev_o[sl, None] + t1 * (sen_o[sl, None] / sbar) ** gam * Z1[None]
                 - sen_o[sl, None] * np.exp(t2 * Z2[None]) * ell_o[sl, None])
            np.add.at(ll, cidx[sl], np.where(y[sl].astype(bool)[:, None], log_expit(u), log_expit(-u)))
        return ll

    def priced(t1: float, t2: float, gam: float, ll: np.ndarray) -> float:
        post = np.exp(ll - ll.max(1, keepdims=True)) * W
        post /= post.sum(1, keepdims=True)
        pw = np.where(known[:, None], post[tpos], W[None])
        acc = np.zeros(P.shape)
        for g in range(len(W)):
            acc += pw[:, g:g + 1] * expit(lev_e[:, None] + t1 * (sen_e[:, None] / sbar) ** gam * Z1[g]
                                          - sen_e[:, None] * np.exp(t2 * Z2[g]) * ell_e)
        return float(profit(best_rung(acc)).sum() / clair)

    grid = []
    for gam in (0.0, 0.5, 1.0):
        for t1 in (0.5, 1.0, 1.5):
            for t2 in (0.0, 0.2, 0.4):
                ll = loglik(t1, t2, gam)
                mx = ll.max(1, keepdims=True)
                marg = float((np.log((np.exp(ll - mx) * W).sum(1)) + mx[:, 0]).sum())
                grid.append({"tau_level": t1, "tau_slope": t2, "gamma": gam, "marginal_loglik": marg,
                             "per_pair": priced(t1, t2, gam, ll)})
    grid_df = pd.DataFrame(grid)
    out["random effects grid"] = grid
    best = grid_df.loc[grid_df["marginal_loglik"].idxmax()]
    out["random effects (marginal likelihood's choice)"] = best.to_dict()
    print(f"population without offer history: per pair {out['population without offer history']['per_pair']:.4f}")
    print(grid_df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return out


if __name__ == "__main__":
    main()
