"""Unit tests of the price book helpers (pricing/pricebook.py) that need no model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pricing.pricebook import catalog, customer_exposure_candidates


def _tables() -> dict[str, pd.DataFrame]:
    products = pd.DataFrame({
        "product_id": ["a1", "a2", "b1", "b2", "c1"],
        "category": ["A", "A", "B", "B", "C"],
        "list_price": [10.0, 12.0, 20.0, 22.0, 30.0],
        "unit_cost": [5.0, 6.0, 10.0, 11.0, 15.0],
    })
    bundles = pd.DataFrame({"bundle_id": ["AA", "BB", "AC", "BC"], "product_ids": ["a1|a2", "b1|b2", "a1|c1", "b2|c1"]})
    events = pd.DataFrame({  # u1 looks at category A only, u2 at B only, u3 has no history
        "customer_id": ["u1"] * 6 + ["u2"] * 6,
        "product_id": ["a1", "a2"] * 3 + ["b1", "b2"] * 3,
        "event_type": ["view"] * 12,
    })
    orders = pd.DataFrame({"customer_id": ["u2"], "product_id": ["b1"]})
    return {"products": products, "bundles": bundles, "events": events, "orders": orders}


def test_candidates_follow_the_customers_interest():
    tables = _tables()
    cat = catalog(tables)
    value = np.ones((1, len(cat.bundle_ids)))
    cand = customer_exposure_candidates(tables, cat, np.array(["u1", "u2", "u3"]), value, np.zeros(3, int), k=2)
    got = [[cat.bundle_ids[j] for j in row] for row in cand]
    assert set(got[0]) == {"AA", "AC"}  # the bundles holding category A
    assert set(got[1]) == {"BB", "BC"}
    assert cand.shape == (3, 2) and cand.dtype == np.int32


def test_value_weighs_exposure_and_k_is_capped():
    tables = _tables()
    cat = catalog(tables)
    value = np.array([[1.0, 1.0, 100.0, 1.0]])  # AC is worth far more per offer
    cand = customer_exposure_candidates(tables, cat, np.array(["u1", "u2"]), value, np.zeros(2, int), k=10)
    assert cand.shape == (2, 4)  # k capped at the number of bundles
    assert cat.bundle_ids[cand[0, 0]] == "AC" and cat.bundle_ids[cand[1, 0]] == "AC"
    assert all(sorted(row) == [0, 1, 2, 3] for row in cand.tolist())


def test_chunks_give_the_same_answer():
    tables = _tables()
    cat = catalog(tables)
    ids = np.array(["u1", "u2", "u3"])
    value = np.random.default_rng(0).random((2, 4))
    seg = np.array([0, 1, 0])
    whole = customer_exposure_candidates(tables, cat, ids, value, seg, k=3)
    chunked = customer_exposure_candidates(tables, cat, ids, value, seg, k=3, chunk=1)
    assert np.array_equal(whole, chunked)


def _book(price: float):
    from pricing.pricebook import PriceBook

    return PriceBook(
        bundle_prices=pd.DataFrame({"bundle_id": ["AA"], "segment_id": ["S1"], "price": [price]}),
        customer_segments=pd.DataFrame({"customer_id": ["u1"], "segment_id": ["S1"]}),
        customer_offers=pd.DataFrame(columns=["customer_id", "bundle_id", "price"]),
        manifest={"mode": "optimized"},
    )


def test_a_swap_interrupted_between_the_renames_keeps_the_previous_book(tmp_path):
    from pricing.pricebook import read_price_book, write_price_book

    out = tmp_path / "prices"
    write_price_book(_book(10.0), out)
    out.rename(tmp_path / ".prices.old")  # the state a crash between the two renames leaves
    assert read_price_book(out).bundle_prices["price"].tolist() == [10.0]  # put back on read
    out.rename(tmp_path / ".prices.old")
    write_price_book(_book(12.0), out)  # the next write must not delete the parked book first
    assert read_price_book(out).bundle_prices["price"].tolist() == [12.0]
    assert not (tmp_path / ".prices.old").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prices"]


def test_a_failed_write_leaves_the_previous_book_and_no_temporary_folder(tmp_path, monkeypatch):
    from pricing.pricebook import read_price_book, write_price_book

    out = tmp_path / "prices"
    write_price_book(_book(10.0), out)

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    try:
        write_price_book(_book(12.0), out)
    except OSError:
        pass
    monkeypatch.undo()
    assert read_price_book(out).bundle_prices["price"].tolist() == [10.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prices"]


def test_offers_rate_averages_a_longer_window_and_scales_it_to_the_period():
    from pricing.pricebook import offers_rate

    tables = _tables()
    cat = catalog(tables)
    end = pd.Timestamp("2026-09-30 12:00", tz="UTC")
    # AA: 28 offers spread evenly over 28 days (one a day); BB: 7 offers all in the last week; AC, BC: none
    times = [end - pd.Timedelta(days=d) for d in range(28)] + [end - pd.Timedelta(hours=h) for h in range(0, 140, 20)]
    tables["offers"] = pd.DataFrame({"offer_time": times, "bundle_id": ["AA"] * 28 + ["BB"] * 7})
    rate = dict(zip(cat.bundle_ids, offers_rate(tables, cat, n_customers=10, period_days=7, window_days=28)))
    assert np.isclose(rate["AA"], 7 / 10 * 28 / 27.0)  # 28 offers over the 27 days the log covers, per week
    assert np.isclose(rate["BB"], 7 / 10 * 7 / 27.0)
    assert rate["AC"] == rate["BC"] == min(rate["AA"], rate["BB"])  # unseen bundles get the smallest seen rate
    week = dict(zip(cat.bundle_ids, offers_rate(tables, cat, n_customers=10, period_days=7)))
    assert np.isclose(week["BB"], 0.7) and np.isclose(week["AA"], 0.7)  # the last 7 days only (the old estimate)


def test_segment_sample_shrinks_to_the_budget_but_not_below_ten():
    from pricing.pricebook import segment_sample_size

    assert segment_sample_size(100, 1_000_000, 12, 200) == 100  # default market: 240k requests, within budget
    assert segment_sample_size(100, 1_000_000, 12, 2000) == 41  # bench: 2.4M requests -> 984k
    assert segment_sample_size(100, 1_000, 12, 2000) == 10
    assert segment_sample_size(5, 1_000, 12, 2000) == 5


def test_personal_scoring_in_chunks_gives_the_same_book():
    """Building the candidates' contexts a chunk at a time (memory) changes no price."""
    from pricing.config import load_config
    from pricing.features import PRICE_FEATURES
    from pricing.model import train_model
    from pricing.pricebook import build_price_book
    from pricing.simulator import generate_market, generate_tables
    from pricing.training import build_training_data

    tables = generate_tables(generate_market("tiny", seed=3))
    config = load_config(overrides={"model": {"n_estimators": 40, "refit_on_all": False}})
    data = build_training_data(tables, config)
    res = train_model(data.X, data.y, data.times, PRICE_FEATURES, config.model, data.builder.categorical)
    whole = build_price_book(tables, res.model, data.builder, config)
    small = config.model_copy(update={"pricebook": config.pricebook.model_copy(update={"context_chunk_rows": 777})})
    chunked = build_price_book(tables, res.model, data.builder, small)
    assert len(whole.customer_offers) > 777
    pd.testing.assert_frame_equal(whole.customer_offers, chunked.customer_offers)
    pd.testing.assert_frame_equal(whole.bundle_prices, chunked.bundle_prices)
