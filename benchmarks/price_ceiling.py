"""How close can any price book get to the clairvoyant optimum on a simulated market?

    .venv/bin/python benchmarks/price_ceiling.py --data work/demo/data --work work [--alias challenger]

Prices the same sample of next-week traffic (who is shown which bundle, drawn by the simulator)
in several ways and values each under the TRUE acceptance, as a share of the clairvoyant optimum
(best price per customer, bundle and day between cost and list):

* ``ladder, knowing the truth``: the best rung of the price ladder per pair (the ladder's own loss);
* ``model, every pair priced``: the registered model's most profitable ladder rung for every shown
  pair, no rules (the ceiling of a price book built on this model, if every pair got a personal price);
* ``type known, individual level learned (oracle)``: knows each customer's latent type and the type's
  true parameters, and learns the customer's own deviation from the type (a random intercept) from
  the offers log by exact Bayes on a grid, then prices by posterior expected profit. An estimate of
  what the data could support at best with this information; no model of ours has access to the
  types;
* ``type known, no individual information``: the same prior without the offers log.

The gap between the first rows says how much is lost to the model and how much to information.
Results: benchmarks/out/price-ceiling.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def full_bayes_prices(market, sim, tables, ci, bi, day, cost, lst, n_samples: int, seed: int,
                      n_grid: int = 60) -> np.ndarray:
    """Bayes-optimal price per shown pair for an oracle that knows each customer's type and the model.

    The simulator draws a customer's parameters as type level x noise: ``alpha = A_t + e1``,
    ``w = W_t exp(e2)``, ``eta = E_t exp(e3)``, ``lambda = L_t exp(e4)`` (sds in ``sim._NOISE``), and no
    behaviour but the customer's offers depends on ``e1..e4``. So the posterior over ``e`` given the
    offers log (importance sampling: prior draws weighted by each customer's likelihood) is all any
    policy can know of the customer's price response; the price maximizing posterior expected profit
    on a fine grid between ``cost x 1.05`` and list is an upper bound on every per-pair pricing that does
    not know the types (it is told them) -- up to Monte Carlo error.
    """
    rng = np.random.default_rng([seed, 99])
    nz = sim._NOISE
    e1 = rng.normal(0, nz["alpha"], n_samples)
    e2 = rng.normal(0, nz["wtp"], n_samples)
    g3 = np.exp(rng.normal(0, nz["eta"], n_samples))
    g4 = np.exp(rng.normal(0, nz["lambda"], n_samples))
    t = market.customer_type
    A, W, E, L = (sim._TYPE_ALPHA[t], np.log(sim._TYPE_WTP[t]), sim._TYPE_ETA[t], sim._TYPE_LAMBDA[t])

    def parts(cidx, bidx, when):
        d = sim._day_offsets(market, when)
        dd = np.clip(d, 0, market.n_days_total - 1)
        base = A[cidx] + sim._accept_season(market, d) + sim._KAPPA * sim._affinity(market, cidx, bidx)
        return base, W[cidx] + market.bundle_log_value[bidx], market.bundle_comp_log[bidx, dd]

    def logit(base, x1, x2, cidx):  # [n, S] log-odds at log price already folded into x1, x2
        return (base[:, None] + e1[None] + E[cidx][:, None] * g3[None] * (x1[:, None] + e2[None])
                + L[cidx][:, None] * g4[None] * x2[:, None])

    offers = tables["offers"]
    oci = sim.customer_index(market, offers["customer_id"].astype(str).to_numpy())
    obi = sim.bundle_index(market, offers["bundle_id"].astype(str).to_numpy())
    otime = pd.to_datetime(offers["offer_time"], utc=True).dt.tz_localize(None)
    lp = np.log(offers["offered_price"].to_numpy(dtype=float))
    y = offers["accepted"].to_numpy(dtype=bool)
    base, x1, x2 = parts(oci, obi, otime)
    x1, x2 = x1 - lp, x2 - lp
    ll = np.zeros((market.n_customers, n_samples))
    for lo in range(0, len(oci), 20_000):
        sl = slice(lo, lo + 20_000)
        u = logit(base[sl], x1[sl], x2[sl], oci[sl])
        contrib = -np.logaddexp(0.0, np.where(y[sl, None], -u, u))  # log sigmoid(+-u)
        np.add.at(ll, oci[sl], contrib)
    post = np.exp(ll - ll.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)

    base, x1, x2 = parts(ci, bi, day)
    grid = np.exp(np.linspace(np.log(cost * 1.05), np.log(lst), n_grid, axis=1))  # [n, G]
    best = np.empty(len(ci))
    for lo in range(0, len(ci), 500):
        sl = slice(lo, lo + 500)
        w = post[ci[sl]]  # [n, S]
        prof = np.empty((len(w), n_grid))
        for g in range(n_grid):
            lpg = np.log(grid[sl, g])
            acc = 1.0 / (1.0 + np.exp(-logit(base[sl], x1[sl] - lpg, x2[sl] - lpg, ci[sl])))
            prof[:, g] = (w * acc).sum(1) * (grid[sl, g] - cost[sl])
        best[sl] = grid[sl][np.arange(len(w)), prof.argmax(1)]
    return best


def book_rows(book: Path, traffic: pd.DataFrame, P: np.ndarray, Pf: np.ndarray, cost: np.ndarray,
              share) -> dict[str, float]:
    """Shares of a price book's segment prices alone, and of the best ladder rung per (segment, bundle)
    chosen knowing the truth (the most any segment price book with these segments could earn here)."""
    segs = pd.read_csv(book / "customer_segments.csv", dtype=str).set_index("customer_id")["segment_id"]
    prices = pd.read_csv(book / "bundle_prices.csv", dtype={"bundle_id": str, "segment_id": str})
    seg = segs.reindex(traffic["customer_id"].astype(str)).to_numpy()
    cell = pd.Series(seg).astype(str) + "|" + traffic["bundle_id"].astype(str).to_numpy()
    book_price = (prices["segment_id"] + "|" + prices["bundle_id"]).pipe(
        lambda k: pd.Series(prices["price"].to_numpy(), index=k)).reindex(cell).to_numpy()
    key, _ = pd.factorize(cell)
    rows = np.arange(len(key))
    value = np.zeros(P.shape)  # each rung's contribution to the share, knowing the truth
    for j in range(P.shape[1]):
        price = Pf[:, j]
        value[:, j] = np.where(np.isfinite(P[:, j]), share(np.where(np.isfinite(P[:, j]), price, cost + 1e-9), per_row=True), -1.0)
    total = np.zeros((key.max() + 1, P.shape[1]))
    np.add.at(total, key, value)
    best = total.argmax(axis=1)[key]
    return {
        f"book {book.name}: its segment prices only (personal offers ignored)": share(book_price),
        f"book {book.name}: best rung per (segment, bundle), knowing the truth": share(Pf[rows, best]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="work/demo/data", help="simulated market folder (with _truth)")
    ap.add_argument("--work", default="work", help="work dir holding the ingested snapshot and MLflow store")
    ap.add_argument("--alias", default="champion", help="registered model alias to evaluate")
    ap.add_argument("--pairs", type=int, default=20_000, help="traffic sample size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=2048, help="prior samples of the full-Bayes oracle")
    ap.add_argument("--book", type=Path, default=None,
                    help="a price book folder: also value its segment prices alone, and the best price per (segment, "
                         "bundle) knowing the truth for its segments (is the segmentation or the model the limit?)")
    args = ap.parse_args()

    from pricing import simulator as sim
    from pricing import tracking
    from pricing.config import Config
    from pricing.features import context_features
    from pricing.ingest import latest_snapshot, load_snapshot
    from pricing.scoring import pricing_time, score_prices

    config = Config.model_validate({"paths": {"work_dir": args.work}})
    tracking.configure(config)
    loaded = tracking.load_model(config.model.registered_model_name, alias=args.alias)
    snap = latest_snapshot(Path(args.work) / "ingest")
    if snap is None:
        sys.exit(f"no validated snapshot under {args.work}/ingest: run `bundle-pricing ingest` first")
    tables = load_snapshot(snap)
    market = sim.load_market(args.data)
    at = pricing_time(tables)
    traffic = sim.sample_traffic(market, at.normalize().tz_localize(None), 7, args.pairs, args.seed)
    ci = sim.customer_index(market, traffic["customer_id"].to_numpy())
    bi = sim.bundle_index(market, traffic["bundle_id"].to_numpy())
    day = traffic["offer_time"]
    cost, lst = market.bundle_cost[bi], market.bundle_list[bi]
    _p, clair_profit = sim.clairvoyant_prices(market, ci, bi, day)
    clair = float(clair_profit.sum())
    a, h = sim._utility_parts(market, ci, bi, day)

    def share(price: np.ndarray, per_row: bool = False):
        contrib = (price - cost) * expit(a - h * np.log(price)) / clair
        return contrib if per_row else float(contrib.sum())

    # the default ladder (2.5 % steps to 50 % off list), rungs below cost x 1.05 dropped
    disc = np.arange(0.0, 0.5001, config.optimize.ladder.step)
    P = lst[:, None] * (1 - disc[None, :])
    P = np.where(P >= cost[:, None] * (1 + config.optimize.rules.min_margin), P, np.nan)
    Pf = np.where(np.isfinite(P), P, lst[:, None])
    rows = np.arange(len(ci))
    T = expit(a[:, None] - h[:, None] * np.log(Pf))
    truth_best = np.where(np.isfinite(P), T * (Pf - cost[:, None]), -np.inf).argmax(1)

    req = pd.DataFrame({"customer_id": traffic["customer_id"].to_numpy(), "bundle_id": traffic["bundle_id"].to_numpy(),
                        "time": pd.Series([at] * len(ci), dtype="datetime64[us, UTC]")})
    ctx = context_features(loaded.builder, tables, req)
    A = score_prices(loaded.model, loaded.builder, ctx, P)
    model_best = np.where(np.isfinite(P), A * (Pf - cost[:, None]), -np.inf).argmax(1)

    # oracle: type-level parameters known, individual deviation learned from the offers log
    t = market.customer_type
    typed = dataclasses.replace(market, alpha=sim._TYPE_ALPHA[t].astype(float), wtp=sim._TYPE_WTP[t].astype(float),
                                eta=sim._TYPE_ETA[t].astype(float), lam=sim._TYPE_LAMBDA[t].astype(float))
    offers = tables["offers"]
    oci = sim.customer_index(market, offers["customer_id"].astype(str).to_numpy())
    obi = sim.bundle_index(market, offers["bundle_id"].astype(str).to_numpy())
    otime = pd.to_datetime(offers["offer_time"], utc=True).dt.tz_localize(None)
    oprice = offers["offered_price"].to_numpy(dtype=float)
    y = offers["accepted"].to_numpy(dtype=float)
    a0, h0 = sim._utility_parts(typed, oci, obi, otime)
    m_past = a0 - h0 * np.log(oprice)
    a1, h1 = sim._utility_parts(market, oci, obi, otime)
    sigma = float(((a1 - h1 * np.log(oprice)) - m_past).std())
    grid = np.linspace(-4 * sigma, 4 * sigma, 81)
    prior = np.exp(-0.5 * (grid / sigma) ** 2)
    prior /= prior.sum()
    ll = np.zeros((market.n_customers, len(grid)))
    for g, d in enumerate(grid):
        p = np.clip(expit(m_past + d), 1e-12, 1 - 1e-12)
        ll[:, g] = np.bincount(oci, weights=y * np.log(p) + (1 - y) * np.log1p(-p), minlength=market.n_customers)
    post = np.exp(ll - ll.max(1, keepdims=True)) * prior
    post /= post.sum(1, keepdims=True)
    am, hm = sim._utility_parts(typed, ci, bi, day)
    base = am[:, None] - hm[:, None] * np.log(Pf)

    def bayes_best(weights: np.ndarray) -> np.ndarray:
        acc = sum(weights[:, g : g + 1] * expit(base + grid[g]) for g in range(len(grid)))
        return np.where(np.isfinite(P), acc * (Pf - cost[:, None]), -np.inf).argmax(1)

    # full Bayes: type known, all four individual parameters (intercept, willingness to pay, price and
    # competitor sensitivity) learned from the customer's offers by importance sampling over their prior
    full_bayes = full_bayes_prices(market, sim, tables, ci, bi, day, cost, lst, args.samples, args.seed)

    results = {
        "ladder, knowing the truth": share(Pf[rows, truth_best]),
        "type known, every individual parameter learned (full Bayes, any price)": share(full_bayes),
        "model, every pair priced": share(Pf[rows, model_best]),
        "type known, individual level learned (oracle)": share(Pf[rows, bayes_best(post[ci])]),
        "type known, no individual information": share(Pf[rows, bayes_best(np.broadcast_to(prior, (len(ci), len(grid))))]),
        "list price": share(lst),
    }
    if args.book is not None:
        results.update(book_rows(args.book, traffic, P, Pf, cost, share))
    out = {"data": str(args.data), "model_version": loaded.version, "pairs": len(ci),
           "individual_deviation_sd": sigma, "offers_per_customer": float(len(offers) / market.n_customers),
           "share_of_clairvoyant": results}
    Path("benchmarks/out").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/out/price-ceiling.json").write_text(json.dumps(out, indent=2))
    print(f"model version {loaded.version}; {len(ci):,} shown pairs; individual log-odds deviation sd {sigma:.2f}; "
          f"{out['offers_per_customer']:.1f} past offers per customer\n")
    print("| pricing | share of clairvoyant |\n|---|---|")
    for k, v in results.items():
        print(f"| {k} | {v:.3f} |")


if __name__ == "__main__":
    main()
