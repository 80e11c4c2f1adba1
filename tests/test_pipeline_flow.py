"""The end-to-end `run` (pipeline flow) on the tiny market under Prefect's test harness, the cold-start
exploration price book, and bad input leaving no price book."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.pipeline import pipeline_flow
from pricing.config import load_config
from pricing.contract import ContractError
from tests.conftest import flow_config

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]

BOOK_COLUMNS = {
    "bundle_prices.csv": ["bundle_id", "segment_id", "price", "list_price", "unit_cost", "expected_conversion",
                          "expected_profit", "profit_low", "profit_high", "binding_rules", "top_drivers"],
    "customer_segments.csv": ["customer_id", "segment_id", "group"],
    "customer_offers.csv": ["customer_id", "bundle_id", "price", "expected_conversion", "expected_profit"],
}




def _check_rules(out: Path, data: Path, config_path: str) -> None:
    cfg = load_config(config_path).optimize.rules
    bp = pd.read_csv(out / "bundle_prices.csv", dtype={"bundle_id": str})
    eps = 1e-6
    assert (bp["price"] <= bp["list_price"] * (1 - cfg.min_bundle_discount) + eps).all(), "never above the parts"
    assert (bp["price"] >= bp["unit_cost"] * (1 + cfg.min_margin) - eps).all(), "margin floor"
    spread = bp.groupby("bundle_id")["price"].agg(lambda s: s.max() - s.min())
    gap = bp.groupby("bundle_id")["list_price"].first() * cfg.fairness_gap
    assert (spread <= gap + 0.01).all(), "fairness gap between segments"
    co = pd.read_csv(out / "customer_offers.csv", dtype={"customer_id": str, "bundle_id": str})
    seg = pd.read_csv(out / "customer_segments.csv", dtype=str)
    m = co.merge(seg, on="customer_id").merge(bp, on=["bundle_id", "segment_id"], suffixes=("", "_seg"))
    assert len(m) == len(co)
    assert (m["price"] <= m["list_price"] + eps).all()
    assert (np.abs(m["price"] - m["price_seg"]) <= cfg.customer_band * m["list_price"] + 0.01).all(), "customer band"


def test_run_writes_a_rule_abiding_price_book(tiny_market, tmp_path):
    out = tmp_path / "book"
    cfg = flow_config(tmp_path, "pipeline-tiny")
    result = pipeline_flow(data_dir=str(tiny_market), out_dir=str(out), config_path=cfg)
    for name, cols in BOOK_COLUMNS.items():
        assert list(pd.read_csv(out / name, nrows=1).columns) == cols, name
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("model", "data_fingerprint", "config_hash", "rule_check", "created_at", "prefect_flow_run_id"):
        assert key in manifest
    assert manifest["model"]["version"] == result["train"]["version"]
    customers = pd.read_csv(tiny_market / "customers.csv", dtype=str)["customer_id"]
    seg = pd.read_csv(out / "customer_segments.csv", dtype=str)
    assert set(seg["customer_id"]) == set(customers), "every customer has a segment"
    _check_rules(out, tiny_market, cfg)


def test_cold_start_gives_an_exploration_price_book(tiny_market, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in tiny_market.glob("*.csv"):
        if f.name != "offers.csv":
            (data / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "book"
    result = pipeline_flow(data_dir=str(data), out_dir=str(out), config_path=flow_config(tmp_path, "cold"))
    assert result["train"] is None
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "exploration" and "no offers log" in manifest["note"]
    co = pd.read_csv(out / "customer_offers.csv")
    assert co["price"].nunique() > 10, "randomized prices"
    _check_rules(out, data, flow_config(tmp_path, "cold"))


def test_bad_input_leaves_no_price_book(tiny_market, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in tiny_market.glob("*.csv"):
        (data / f.name).write_bytes(f.read_bytes())
    (data / "products.csv").write_bytes(b"")
    out = tmp_path / "book"
    with pytest.raises(ContractError):
        pipeline_flow(data_dir=str(data), out_dir=str(out), config_path=flow_config(tmp_path, "bad"))
    assert not out.exists()
