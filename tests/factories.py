"""Small valid contract datasets written by hand for ingestion tests (independent of the simulator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pricing.io import write_table


def valid_tables(n_products: int = 40, n_customers: int = 60, n_orders: int = 300, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    pid = [f"P{i:03d}" for i in range(n_products)]
    cid = [f"C{i:03d}" for i in range(n_customers)]
    cost = rng.uniform(2, 20, n_products).round(2)
    products = pd.DataFrame(
        {
            "product_id": pid,
            "category": rng.choice(["home", "garden", "toys"], n_products),
            "unit_cost": cost,
            "list_price": (cost * rng.uniform(1.3, 2.0, n_products)).round(2),
            "inventory": rng.integers(0, 100, n_products),
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": cid,
            "signup_date": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 300, n_customers), unit="D"),
            "region": rng.choice(["north", "south"], n_customers),
        }
    )
    bundles = pd.DataFrame({"bundle_id": [f"B{i}" for i in range(10)], "product_ids": [f"{pid[2*i]}|{pid[2*i+1]}" for i in range(10)]})
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    orders = pd.DataFrame(
        {
            "order_id": [f"O{i // 2}" for i in range(n_orders)],
            "order_time": t0 + pd.to_timedelta(rng.integers(0, 200 * 24 * 60, n_orders), unit="min"),
            "customer_id": rng.choice(cid, n_orders),
            "product_id": rng.choice(pid, n_orders),
            "quantity": rng.integers(1, 4, n_orders),
            "unit_price": rng.uniform(3, 30, n_orders).round(2),
            "bundle_id": [None] * n_orders,
        }
    )
    orders.loc[:9, "bundle_id"] = "B1"
    n_ev = 400
    etype = rng.choice(["view", "search", "add_to_cart"], n_ev, p=[0.7, 0.2, 0.1])
    events = pd.DataFrame(
        {
            "event_time": t0 + pd.to_timedelta(rng.integers(0, 200 * 24 * 60, n_ev), unit="min"),
            "customer_id": rng.choice(cid, n_ev),
            "product_id": np.where(etype == "search", None, rng.choice(pid, n_ev)),
            "event_type": etype,
            "duration_s": np.where(etype == "view", rng.uniform(1, 120, n_ev).round(1), np.nan),
            "query": np.where(etype == "search", rng.choice(["red mug", "garden hose", "toy car"], n_ev), None),
        }
    )
    dates = pd.date_range("2026-01-01", periods=20, freq="D")
    competitor_prices = pd.DataFrame(
        [(d, p, c, 10.0 + i) for d in dates for i, p in enumerate(pid[:5]) for c in ("acme", "globex")],
        columns=["date", "product_id", "competitor", "price"],
    )
    n_off = 200
    offers = pd.DataFrame(
        {
            "offer_id": [f"F{i}" for i in range(n_off)],
            "offer_time": t0 + pd.to_timedelta(rng.integers(0, 200 * 24 * 60, n_off), unit="min"),
            "customer_id": rng.choice(cid, n_off),
            "bundle_id": rng.choice(bundles["bundle_id"], n_off),
            "offered_price": rng.uniform(10, 40, n_off).round(2),
            "accepted": rng.integers(0, 2, n_off),
        }
    )
    return {
        "products": products,
        "customers": customers,
        "bundles": bundles,
        "orders": orders,
        "events": events,
        "competitor_prices": competitor_prices,
        "offers": offers,
    }


def write_valid_dataset(path: Path, fmt: str = "csv", **kwargs) -> Path:
    for name, df in valid_tables(**kwargs).items():
        write_table(df, path, name, fmt)
    return path
