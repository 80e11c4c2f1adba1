"""``bundle-pricing evaluate``: a price book against the simulator's truth and the baselines."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pricing.evaluation import evaluate_price_book
from pricing.pricebook import PriceBook, write_price_book
from pricing.simulator import (
    bundle_index,
    customer_index,
    expected_units,
    load_market,
    period_offers,
    sample_traffic,
    save_market,
    true_accept_prob,
)


def _single_price_book(market, fraction: float) -> PriceBook:
    """Every bundle at ``cost + fraction * (list - cost)`` for everyone (one segment, no personal prices)."""
    price = market.bundle_cost + fraction * (market.bundle_list - market.bundle_cost)
    bp = pd.DataFrame({"bundle_id": market.bundle_ids, "segment_id": "S0", "price": price,
                       "list_price": market.bundle_list, "unit_cost": market.bundle_cost,
                       "expected_conversion": 0.1, "expected_profit": 1.0, "profit_low": 0.5, "profit_high": 1.5,
                       "binding_rules": "", "top_drivers": ""})
    seg = pd.DataFrame({"customer_id": market.customer_ids, "segment_id": "S0"})
    empty = pd.DataFrame(columns=["customer_id", "bundle_id", "price", "expected_conversion", "expected_profit"])
    return PriceBook(bp, seg, empty, {"mode": "optimized", "priced_for": market.end_time.isoformat()})


@pytest.fixture(scope="module")
def tables(tiny_market, tmp_path_factory):
    market = load_market(tiny_market)
    out = {}
    for name, fraction in (("list", 1.0), ("half", 0.5)):
        path = write_price_book(_single_price_book(market, fraction), tmp_path_factory.mktemp(name) / "prices")
        out[name] = evaluate_price_book(tiny_market, path, n_offers=20_000, days=7, seed=1)
    return out


def test_baselines_are_ordered_and_the_clairvoyant_is_the_unit(tables):
    t = tables["list"].set_index("policy")
    share = t["share_of_clairvoyant"]
    assert share["clairvoyant per customer"] == pytest.approx(1.0)
    assert share["price book"] == pytest.approx(share["list price"]), "a list-price book is the list baseline"
    assert share["list price"] <= share["best single price per bundle"] + 1e-12 <= share["clairvoyant per latent type"] + 2e-12
    assert share["clairvoyant per latent type"] <= 1.0 + 1e-9
    assert tables["half"].set_index("policy").loc["price book", "expected_profit"] != t.loc["price book", "expected_profit"]


def test_units_beyond_stock_never_fall_as_prices_fall(tables, tiny_market):
    market = load_market(tiny_market)
    for table in tables.values():
        t = table.set_index("policy")
        # every policy prices at or below list and acceptance falls with price: list sells the fewest units
        assert (t["units_beyond_stock"] >= t.loc["list price", "units_beyond_stock"] - 1e-9).all()
        assert table.attrs["limited_products"] == int(np.isfinite(market.inventory).sum())
    # the simulator stocks a peak week at list price: at list nothing goes beyond stock
    assert tables["list"].set_index("policy").loc["list price", "units_beyond_stock"] == 0.0


def test_units_beyond_stock_are_the_truths_expected_units_over_the_period(tiny_market, tmp_path):
    market = load_market(tiny_market)
    # scarce stock: a tenth of what sells at half price, a third of the products unlimited
    half = market.bundle_cost + 0.5 * (market.bundle_list - market.bundle_cost)
    start = market.end_time
    traffic = sample_traffic(market, start.tz_localize(None), 7, 20_000, 1)
    ci = customer_index(market, traffic["customer_id"].to_numpy())
    bi = bundle_index(market, traffic["bundle_id"].to_numpy())
    scale = period_offers(market, start, 7) / len(traffic)
    units = expected_units(market, bi, true_accept_prob(market, ci, bi, half[bi], traffic["offer_time"])) * scale
    stock = np.where(np.arange(market.n_products) % 3 == 0, np.nan, np.floor(units / 10))
    scarce = replace(market, inventory=stock)
    save_market(scarce, tmp_path / "truth")
    book = write_price_book(_single_price_book(market, 0.5), tmp_path / "prices")
    t = evaluate_price_book(tmp_path / "truth", book, n_offers=20_000, days=7, seed=1).set_index("policy")

    limited = np.isfinite(stock)
    over = units[limited] - stock[limited]
    assert t.loc["price book", "units_beyond_stock"] == pytest.approx(np.maximum(over, 0).sum())
    assert t.loc["price book", "products_over_stock"] == int((over > 0).sum()) > 0
    assert 0 < t.loc["list price", "units_beyond_stock"] < t.loc["price book", "units_beyond_stock"]
    assert t.loc["clairvoyant per customer", "units_beyond_stock"] > t.loc["list price", "units_beyond_stock"]
