"""Does a price book keep expected sales within stock under the TRUE acceptance of a simulated market?

    .venv/bin/python benchmarks/inventory_check.py --data work/demo/data --work work --book work/demo/prices

The inventory rule asks that the *expected* units of every product over the planning period stay
within its stock, as the price book estimates them. This script measures what those prices sell
under the simulator's truth: a week of traffic at the offers log's recent rate (the same rate the
price book plans with), drawn by the simulator (who is shown which bundle), priced by the book
(personal price, else the segment price), each offer's true acceptance summed into units per product.

Prints, for the products with limited stock: expected units sold beyond stock (summed over
products), how many products exceed their stock and by more than 5 %, and how far the book's own
usage estimates (one mean rate for every pair, or exposure-weighted rates; from its
``customer_offers.csv`` conversions) are from the truth per product. The truth's units are averaged
over ``--draws`` weeks of traffic to keep sampling noise out of them.
Results: benchmarks/out/inventory-check.json and a summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="work/demo/data", help="simulated market folder (with _truth)")
    ap.add_argument("--work", default="work", help="work dir holding the ingested snapshot")
    ap.add_argument("--book", type=Path, required=True, help="price book folder")
    ap.add_argument("--draws", type=int, default=20, help="weeks of traffic the truth's units are averaged over")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from pricing import simulator as sim
    from pricing.config import Config
    from pricing.evaluation import price_lookup
    from pricing.ingest import latest_snapshot, load_snapshot
    from pricing.pricebook import CustomerExposure, catalog, offers_rate, read_price_book
    from pricing.scoring import pricing_time

    cfg = Config().pricebook
    snap = latest_snapshot(Path(args.work) / "ingest")
    if snap is None:
        sys.exit(f"no validated snapshot under {args.work}/ingest: run `bundle-pricing ingest` first")
    tables = load_snapshot(snap)
    market = sim.load_market(args.data)
    book = read_price_book(args.book)
    cat = catalog(tables)
    customers = tables["customers"]["customer_id"].astype(str).drop_duplicates().to_numpy()
    C = len(customers)
    rate = offers_rate(tables, cat, C, cfg.period_days, cfg.traffic_window_days)
    per_week = float(rate.sum() * C)
    limited = np.isfinite(cat.inventory)
    stock = cat.inventory[limited]

    # the truth: a period of traffic at the log's rate, `draws` times over, at the book's prices
    at = pricing_time(tables)
    traffic = sim.sample_traffic(market, at.normalize().tz_localize(None), cfg.period_days,
                                 round(per_week * args.draws), args.seed)
    cid, bid = traffic["customer_id"].astype(str).to_numpy(), traffic["bundle_id"].astype(str).to_numpy()
    price = price_lookup(book, cid, bid)
    ci, bi = sim.customer_index(market, cid), sim.bundle_index(market, bid)
    accept = sim.true_accept_prob(market, ci, bi, price, traffic["offer_time"])
    b_of = pd.Index(cat.bundle_ids).get_indexer(bid)
    true_units = (cat.items.T @ np.bincount(b_of, weights=accept, minlength=len(cat.bundle_ids)))[limited] / args.draws

    out = {"data": args.data, "book": str(args.book), "offers_per_period": per_week, "draws": args.draws,
           "limited_products": int(limited.sum()), "true_units_limited": float(true_units.sum()),
           "units_over_stock": float(np.maximum(true_units - stock, 0).sum()),
           "products_over_stock": int((true_units > stock).sum()),
           "products_over_stock_5pct": int((true_units > 1.05 * stock).sum())}

    # the book's own usage estimate from its personal conversions (every pair personal), two ways
    offers = book.customer_offers
    if len(offers):
        ob = pd.Index(cat.bundle_ids).get_indexer(offers["bundle_id"].astype(str))
        oc = pd.Index(customers).get_indexer(offers["customer_id"].astype(str))
        conv = offers["expected_conversion"].to_numpy(dtype=np.float64)
        exposure = CustomerExposure.from_tables(tables, cat, customers)
        weights = {"mean rate for every pair": np.full(len(ob), float(np.mean(rate))),
                   "each bundle's rate for every pair": rate[ob]}
        # exposure-weighted: rate[b] * C * exposure[c, b] / sum_c exposure[c, b]
        full = np.zeros(len(cat.bundle_ids))
        for start in range(0, C, 20_000):
            full += exposure.rows(slice(start, min(start + 20_000, C))).sum(axis=0)
        ex = np.empty(len(ob))
        order = np.argsort(oc, kind="stable")
        for start in range(0, len(order), 1_000_000):
            sel = order[start:start + 1_000_000]
            rows = np.unique(oc[sel])
            e = exposure.rows(rows)
            pos = np.searchsorted(rows, oc[sel])
            ex[sel] = e[pos, ob[sel]]
        weights["exposure-weighted rate per pair"] = rate[ob] * C * ex / np.where(full[ob] > 0, full[ob], 1.0)
        est = {}
        for name, w in weights.items():
            units = (cat.items.T @ np.bincount(ob, weights=w * conv, minlength=len(cat.bundle_ids)))[limited]
            ok = true_units > 1.0
            est[name] = {"total_units": float(units.sum()),
                         "mean_abs_log_error_per_product": float(np.mean(np.abs(np.log(units[ok] / true_units[ok])))),
                         "products_at_stock": int((units >= 0.99 * stock).sum())}
        out["book_estimates"] = est

    Path("benchmarks/out").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/out/inventory-check.json").write_text(json.dumps(out, indent=2))
    print(f"{out['limited_products']} products with limited stock; {per_week:,.0f} offers per period; "
          f"truth averaged over {args.draws} periods")
    print(f"under the truth: {out['true_units_limited']:,.0f} units of them sold, {out['units_over_stock']:.1f} beyond "
          f"stock; {out['products_over_stock']} products over stock, {out['products_over_stock_5pct']} by more than 5 %")
    for name, e in out.get("book_estimates", {}).items():
        print(f"book's usage with {name}: {e['total_units']:,.0f} units, per-product |log(estimate / truth)| "
              f"{e['mean_abs_log_error_per_product']:.3f}, {e['products_at_stock']} products at stock")


if __name__ == "__main__":
    main()
