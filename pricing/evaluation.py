"""Evaluating a price book against the simulator's ground truth (simulator data only).

The next period's traffic (who is shown which bundle when, independent of price) is drawn from the
simulator; every shown offer gets the price the book gives it (the customer's personal price for that
bundle, else their segment's price). Expected profit under the TRUE acceptance is compared with:

- **clairvoyant**: the best price per (customer, bundle, day) between cost and list, knowing the truth;
- **list price**: every bundle at the sum of its items' list prices;
- **best single price per bundle**: one price per bundle, the best under the truth (grid search);
- **clairvoyant per latent type**: the best price per (true customer type, bundle), knowing the truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pricing.pricebook import PriceBook, read_price_book

if TYPE_CHECKING:
    from pricing.simulator import Market


def price_lookup(book: PriceBook, customer_ids: np.ndarray, bundle_ids: np.ndarray) -> np.ndarray:
    """The price the book gives each (customer, bundle): personal offer, else the segment price.

    A customer without a segment gets the median segment price of the bundle.
    """
    req = pd.DataFrame({"customer_id": customer_ids.astype(str), "bundle_id": bundle_ids.astype(str)})
    personal = book.customer_offers[["customer_id", "bundle_id", "price"]].astype({"customer_id": str, "bundle_id": str})
    personal = personal.drop_duplicates(["customer_id", "bundle_id"]).rename(columns={"price": "p_personal"})
    seg = book.customer_segments.astype(str).drop_duplicates("customer_id")
    segp = book.bundle_prices[["bundle_id", "segment_id", "price"]].astype({"bundle_id": str, "segment_id": str})
    median = segp.groupby("bundle_id")["price"].median().rename("p_median")
    out = req.merge(personal, on=["customer_id", "bundle_id"], how="left")
    out = out.merge(seg, on="customer_id", how="left")
    out = out.merge(segp.rename(columns={"price": "p_segment"}), on=["bundle_id", "segment_id"], how="left")
    out = out.merge(median, left_on="bundle_id", right_index=True, how="left")
    price = out["p_personal"].fillna(out["p_segment"]).fillna(out["p_median"]).to_numpy(dtype=np.float64)
    if np.isnan(price).any():
        missing = out.loc[np.isnan(price), "bundle_id"].unique()[:5].tolist()
        raise ValueError(f"the price book has no price for bundles {missing}")
    return price


def _best_price_per_group(p_fn, groups: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_grid: int = 80) -> np.ndarray:
    """Per group, the single relative price (between lo and hi of each row) maximizing total profit."""
    fr = np.linspace(0.0, 1.0, n_grid)
    best = np.full(len(groups), np.nan)
    uniq, inv = np.unique(groups, return_inverse=True)
    totals = np.zeros((len(uniq), n_grid))
    for j, f in enumerate(fr):
        price = lo + f * (hi - lo)
        totals[:, j] = np.bincount(inv, weights=p_fn(price) * (price - lo), minlength=len(uniq))
    fbest = fr[np.argmax(totals, axis=1)]
    best = lo + fbest[inv] * (hi - lo)
    return best


def evaluate_price_book(
    data_dir: str | Path,
    prices_dir: str | Path,
    n_offers: int = 100_000,
    days: int = 7,
    seed: int = 0,
) -> pd.DataFrame:
    """Expected profit of the book and the baselines over the next period's simulated traffic.

    Besides profit, each policy's ``units_beyond_stock``: the expected units of the products with
    limited stock it would sell beyond that stock over the period, at the history's offer rate
    (``n_offers`` only sets the precision; its units are scaled to that volume), and
    ``products_over_stock``. The clairvoyant optimum keeps no stock, and neither does the share: a
    book that respects inventory gives up the profit of units it may not sell.
    """
    from pricing.simulator import (
        bundle_index,
        clairvoyant_prices,
        customer_index,
        expected_units,
        load_market,
        period_offers,
        period_start,
        sample_traffic,
        true_accept_prob,
    )

    market = load_market(data_dir)
    book = read_price_book(prices_dir)
    # the period the book is played for: from the first midnight after the time it was priced for
    start = period_start(book.manifest.get("priced_for") or market.end_time)
    traffic = sample_traffic(market, start, days, n_offers, seed)
    ci = customer_index(market, traffic["customer_id"].to_numpy())
    bi = bundle_index(market, traffic["bundle_id"].to_numpy())
    day = traffic["offer_time"]
    cost = market.bundle_cost[bi]
    list_ = market.bundle_list[bi]

    def p_true(price: np.ndarray) -> np.ndarray:
        return true_accept_prob(market, ci, bi, price, day)

    limited = np.isfinite(market.inventory)
    volume = period_offers(market, start, days)
    scale = volume / max(len(traffic), 1)

    def outcome(price: np.ndarray) -> tuple[float, float, int]:
        accept = p_true(price)
        over = expected_units(market, bi, accept)[limited] * scale - market.inventory[limited]
        return float(np.sum(accept * (price - cost))), float(np.maximum(over, 0).sum()), int((over > 0).sum())

    p_book = price_lookup(book, traffic["customer_id"].to_numpy(), traffic["bundle_id"].to_numpy())
    p_star, _prof_star = clairvoyant_prices(market, ci, bi, day)
    types = market.customer_type[ci]
    rows = [
        ("price book", *outcome(p_book)),
        ("list price", *outcome(list_)),
        ("best single price per bundle", *outcome(_best_price_per_group(p_true, bi, cost, list_))),
        ("clairvoyant per latent type", *outcome(_best_price_per_group(p_true, bi * 100 + types, cost, list_))),
        ("clairvoyant per customer", *outcome(p_star)),
    ]
    table = pd.DataFrame(rows, columns=["policy", "expected_profit", "units_beyond_stock", "products_over_stock"])
    clair = float(table["expected_profit"].iloc[-1])
    table["share_of_clairvoyant"] = table["expected_profit"] / clair
    table["profit_per_offer"] = table["expected_profit"] / len(traffic)
    table.attrs.update({"offers": len(traffic), "days": days, "start": str(start), "mode": book.manifest.get("mode"),
                        "period_offers": volume, "limited_products": int(limited.sum())})
    return table


def played_period_outcome(market: Market, realized: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """What a played period earned, per experiment group and overall, against the truth of ``market``.

    ``realized`` is the output of :func:`pricing.simulator.play_price_book` (``offers`` and ``truth``
    with each offer's group and true acceptance probability). Per group: offers, accepted, realized
    profit (accepted offers x (price - cost)), expected profit under the truth at the prices shown,
    the clairvoyant optimum of the same offers (best price per customer, bundle and day between cost and
    list) and the share of it the shown prices earn in expectation.
    """
    from pricing.simulator import bundle_index, clairvoyant_prices, customer_index

    offers = realized["offers"]
    truth = realized["truth"].set_index("offer_id").loc[offers["offer_id"]]
    ci = customer_index(market, offers["customer_id"].astype(str).to_numpy())
    bi = bundle_index(market, offers["bundle_id"].astype(str).to_numpy())
    price = offers["offered_price"].to_numpy(dtype=np.float64)
    margin = price - market.bundle_cost[bi]
    _p, best = clairvoyant_prices(market, ci, bi, offers["offer_time"])
    df = pd.DataFrame({
        "group": truth["group"].to_numpy(),
        "offers": 1,
        "accepted": offers["accepted"].to_numpy(dtype=np.int64),
        "realized_profit": offers["accepted"].to_numpy(dtype=np.float64) * margin,
        "expected_profit": truth["true_prob"].to_numpy(dtype=np.float64) * margin,
        "clairvoyant_profit": best,
    })
    cols = ["offers", "accepted", "realized_profit", "expected_profit", "clairvoyant_profit"]
    out = df.groupby("group")[cols].sum()
    out.loc["all"] = df[cols].sum()
    out["share_of_clairvoyant"] = out["expected_profit"] / out["clairvoyant_profit"]
    out["realized_profit_per_offer"] = out["realized_profit"] / out["offers"]
    return out.reset_index()
