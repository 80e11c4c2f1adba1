"""Ingestion flow under Prefect's test harness: valid data, every bad-input class, quarantine, privacy."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from flows.ingest import ingest_flow
from pricing.contract import ContractError
from pricing.ingest import load_snapshot
from pricing.io import file_sha256
from tests.factories import write_valid_dataset

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_valid_dataset(tmp_path / "data")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


def run(data: Path, out: Path, **kw):
    return ingest_flow(data_dir=str(data), out_dir=str(out), **kw)


def assert_stopped(data: Path, out: Path, *fragments: str) -> str:
    with pytest.raises(ContractError) as info:
        run(data, out)
    msg = str(info.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in message: {msg}"
    snaps = out / "snapshots"
    assert not snaps.exists() or not [p for p in snaps.iterdir() if not p.name.startswith(".")], "nothing may be published"
    assert not (out / "LATEST").exists()
    return msg


def edit_csv(path: Path, fn) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(df)
    df.to_csv(path, index=False)


# -- the good path -----------------------------------------------------------------------------------
def test_valid_dataset_is_ingested_typed_and_fingerprinted(data, out):
    s = run(data, out)
    snap = Path(s.snapshot_dir)
    assert snap.exists() and (out / "LATEST").read_text().strip() == s.fingerprint
    tables = load_snapshot(snap)
    assert set(tables) == {"products", "customers", "bundles", "orders", "events", "competitor_prices", "offers"}
    assert str(tables["orders"]["order_time"].dtype) == "datetime64[us, UTC]"
    assert str(tables["orders"]["quantity"].dtype) == "Int64"
    assert str(tables["offers"]["accepted"].dtype) == "Int64"
    assert str(tables["products"]["list_price"].dtype) == "float64"
    assert str(tables["competitor_prices"]["date"].dtype) == "datetime64[us]"
    assert all(r.rows_quarantined == 0 for r in s.tables.values())
    assert s.data_docs and Path(s.data_docs).exists()
    summary = json.loads((snap / "summary.json").read_text())
    assert summary["fingerprint"] == s.fingerprint
    # same inputs: the snapshot is reused, not rebuilt
    again = run(data, out)
    assert again.reused and again.fingerprint == s.fingerprint
    assert Path(again.snapshot_dir) == snap.resolve() and Path(again.snapshot_dir).is_absolute()


def test_a_reused_snapshot_is_found_from_another_working_directory(tmp_path, monkeypatch):
    data = write_valid_dataset(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    first = run(data, Path("rel-out"))  # a relative out dir, as with the default work dir
    monkeypatch.chdir(tmp_path / "in")
    again = run(data, tmp_path / "rel-out")
    assert again.reused and Path(again.snapshot_dir).exists()
    assert Path(first.snapshot_dir).is_absolute()


def test_parquet_input_and_optional_tables_absent(tmp_path, out):
    data = write_valid_dataset(tmp_path / "pq", fmt="parquet")
    for t in ("events", "competitor_prices", "offers"):
        (data / f"{t}.parquet").unlink()
    s = run(data, out)
    assert not s.tables["events"].present
    assert s.tables["orders"].rows_valid == 300


# -- hard failures: one test per bad-input class -------------------------------------------------------
def test_missing_required_file(data, out):
    (data / "customers.csv").unlink()
    assert_stopped(data, out, "customers", "required file")


def test_missing_column(data, out):
    edit_csv(data / "products.csv", lambda df: df.pop("unit_cost"))
    assert_stopped(data, out, "products.unit_cost", "required columns")


def test_wrong_type(data, out):
    edit_csv(data / "orders.csv", lambda df: df.__setitem__("quantity", "many"))
    assert_stopped(data, out, "orders.quantity", "type int", "whole number", "line")


def test_duplicate_key(data, out):
    def dup(df):
        df.loc[5, "offer_id"] = df.loc[4, "offer_id"]

    edit_csv(data / "offers.csv", dup)
    assert_stopped(data, out, "offers.offer_id", "key unique", "F4")


def test_negative_price(data, out):
    def neg(df):
        df.loc[:3, "list_price"] = "-5.0"

    edit_csv(data / "products.csv", neg)
    assert_stopped(data, out, "products.list_price", "> 0", "-5.0")


def test_unknown_product(data, out):
    def unknown(df):
        df.loc[:19, "product_id"] = "NOPE"

    edit_csv(data / "orders.csv", unknown)
    assert_stopped(data, out, "orders.product_id", "exists in products.product_id", "NOPE")


def test_unknown_customer(data, out):
    def unknown(df):
        df.loc[:9, "customer_id"] = "GHOST"

    edit_csv(data / "offers.csv", unknown)
    assert_stopped(data, out, "offers.customer_id", "exists in customers.customer_id", "GHOST")


def test_bundle_with_one_item(data, out):
    def single(df):
        df.loc[0, "product_ids"] = "P000"

    edit_csv(data / "bundles.csv", single)
    assert_stopped(data, out, "bundles", "two or more distinct items")


def test_timestamp_in_the_future(data, out):
    def future(df):
        df.loc[:9, "offer_time"] = "2099-01-01 00:00:00"

    edit_csv(data / "offers.csv", future)
    assert_stopped(data, out, "offers.offer_time", "not in the future")


def test_empty_file(data, out):
    (data / "orders.csv").write_bytes(b"")
    assert_stopped(data, out, "orders", "empty")


def test_header_only_file(data, out):
    (data / "customers.csv").write_text("customer_id,signup_date,region\n")
    assert_stopped(data, out, "customers", "no rows")


def test_malformed_csv_line(data, out):
    with (data / "orders.csv").open("a") as fh:
        fh.write('O999,2026-01-01 00:00:00,C001,P001,1,2.0,,extra,"unclosed\n')
    assert_stopped(data, out, "orders", "malformed")


def test_non_utf8_bytes(data, out):
    raw = (data / "products.csv").read_bytes().replace(b'"home"', b'"h\xf4me"', 1)
    (data / "products.csv").write_bytes(raw)
    assert_stopped(data, out, "products", "UTF-8")


def test_accepted_not_zero_or_one(data, out):
    def bad(df):
        df.loc[:9, "accepted"] = "2"

    edit_csv(data / "offers.csv", bad)
    assert_stopped(data, out, "offers.accepted", "in {0, 1}")


# -- row-level failures under the tolerance are quarantined ----------------------------------------
def test_few_bad_rows_are_quarantined_with_reason(data, out):
    def one_bad(df):
        df.loc[7, "quantity"] = "0"

    edit_csv(data / "orders.csv", one_bad)
    before = file_sha256(data / "orders.csv")
    s = run(data, out)
    assert file_sha256(data / "orders.csv") == before, "raw input is never modified"
    r = s.tables["orders"]
    assert (r.rows_read, r.rows_valid, r.rows_quarantined) == (300, 299, 1)
    assert [(f.column, f.rule, f.rows) for f in r.failures] == [("quantity", ">= 1", 1)]
    q = pd.read_csv(Path(s.snapshot_dir) / "quarantine" / "orders.csv", dtype=str)
    assert q["_line"].tolist() == ["9"] and "quantity: >= 1" in q["_reason"].iloc[0]


def test_quarantined_parent_cascades_to_children(data, out):
    # a customer quarantined for a bad signup date: its orders and offers are unknown references
    def bad_date(df):
        df.loc[0, "signup_date"] = "not a date"

    edit_csv(data / "customers.csv", bad_date)
    cfg = data.parent / "lenient.yaml"
    cfg.write_text("ingest:\n  max_row_failure_share: 0.05\n  max_reference_failure_share: 0.05\n")
    s = run(data, out, config_path=str(cfg))
    assert s.tables["customers"].rows_quarantined == 1
    tables = load_snapshot(s.snapshot_dir)
    assert "C000" not in set(tables["customers"]["customer_id"])
    for child in ("orders", "events", "offers"):
        assert "C000" not in set(tables[child]["customer_id"]), child
        assert any("exists in customers.customer_id" in f.rule for f in s.tables[child].failures) or not (
            pd.read_csv(data / f"{child}.csv", dtype=str)["customer_id"].eq("C000").any()
        )


# -- personal data ---------------------------------------------------------------------------------
def test_personal_data_is_dropped_and_never_written(data, out):
    def add_pii(df):
        df["email"] = [f"person{i}@example.com" for i in range(len(df))]
        df["First Name"] = "Alice"

    edit_csv(data / "customers.csv", add_pii)
    s = run(data, out)
    assert sorted(s.tables["customers"].pii_columns_dropped) == ["First Name", "email"]
    for f in Path(out).rglob("*"):
        if f.is_file() and f.suffix in {".parquet", ".csv", ".json", ".html"}:
            blob = f.read_bytes()
            assert b"@example.com" not in blob and b"Alice" not in blob, f"personal data leaked into {f}"


def test_event_rules_need_product_for_views_and_query_for_searches(data, out):
    df = pd.read_csv(data / "events.csv", dtype=str, keep_default_na=False)
    view = df.index[df["event_type"] == "view"][0]
    search = df.index[df["event_type"] == "search"][0]
    df.loc[view, "product_id"] = ""
    df.loc[search, "query"] = ""
    df.to_csv(data / "events.csv", index=False)
    cfg = data.parent / "lenient.yaml"
    cfg.write_text("ingest:\n  max_row_failure_share: 0.05\n")
    s = run(data, out, config_path=str(cfg))
    rules = {f.rule: f.rows for f in s.tables["events"].failures}
    assert rules == {"product_id needed for view and add_to_cart": 1, "query needed for search": 1}


def test_simulated_market_passes_ingestion(tmp_path, out):
    from pricing.simulator import simulate

    data = tmp_path / "sim"
    simulate(data, size="tiny", seed=3)
    s = run(data, out)
    for name, r in s.tables.items():
        assert r.present and r.rows_quarantined == 0 and r.rows_valid == r.rows_read > 0, name


def test_online_retail_import_passes_ingestion(tmp_path, out):
    """The real transactions, imported into contract tables, pass validation with nothing quarantined."""
    from pricing.io import write_table
    from pricing.online_retail import load_online_retail, to_contract_tables
    from tests.conftest import online_retail_path

    src = online_retail_path()
    if src is None:
        pytest.skip("Online Retail file not found (../shared/datasets/online_retail or $ONLINE_RETAIL_CSV)")
    tables, _report = to_contract_tables(load_online_retail(src, nrows=40_000))
    data = tmp_path / "retail"
    for name, df in tables.items():
        write_table(df, data, name)
    s = run(data, out)
    assert {n for n, r in s.tables.items() if r.present} == {"products", "customers", "orders"}
    for name in ("products", "customers", "orders"):
        r = s.tables[name]
        assert r.rows_quarantined == 0 and r.rows_valid == len(tables[name]) > 0, name
