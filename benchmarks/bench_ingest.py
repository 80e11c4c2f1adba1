"""Benchmark: simulate a market and ingest + validate it, per table (wall, CPU, peak memory).

    .venv/bin/python benchmarks/bench_ingest.py --size bench            # ~10M events, 3M offers
    .venv/bin/python benchmarks/bench_ingest.py --size default --data work/demo/data   # reuse data

Runs the same library steps as ``flows/ingest.py`` (read & type, Great Expectations suite, quarantine
decision, snapshot) table by table, without the Prefect server, so each table is measured alone.
Results go to benchmarks/out/ingest-<size>.json and are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import Recorder, Stage


@contextmanager
def _unmeasured(name: str, **_extra):
    yield Stage(name)


def simulate_to(data: Path, size: str, seed: int, fmt: str, rec: Recorder) -> None:
    """Simulate a market and write its tables into ``data`` (measured per step)."""
    from pricing.contract import TABLE_ORDER
    from pricing.io import write_table
    from pricing.simulator import generate_market, generate_tables

    if data.exists():
        shutil.rmtree(data)
    print(f"simulating {size} market into {data}")
    with rec.stage("simulate: market"):
        market = generate_market(size, seed=seed)
    with rec.stage("simulate: tables (in memory)"):
        tables = generate_tables(market)
    for name in TABLE_ORDER:
        with rec.stage(f"simulate: write {name}", rows=len(tables[name])):
            write_table(tables[name], data, name, fmt)


def ingest_into(data: Path, out: Path, rec: Recorder, per_table: bool = True) -> tuple[Path, float]:
    """Ingest + validate ``data`` into a snapshot under ``out`` as flows/ingest.py does, without Prefect.

    Returns (snapshot folder, total seconds). ``per_table``: one measured stage per table and step;
    else one stage for the whole ingestion.
    """
    import contextlib

    import pandas as pd

    from expectations.runner import SuiteRunner
    from pricing import ingest as ing
    from pricing.config import load_config
    from pricing.contract import TABLE_ORDER

    cfg = load_config().ingest
    if out.exists():
        shutil.rmtree(out)
    print(f"ingesting {data}")
    t0 = time.perf_counter()
    outer = contextlib.nullcontext() if per_table else rec.stage("ingest + validate (all tables)")
    step = rec.stage if per_table else _unmeasured
    with outer:
        with step("ingest: fingerprint inputs"):
            fp = ing.input_fingerprint(data, cfg)
        runner = SuiteRunner(out / "gx")
        limit = ing.now_limit(cfg)
        keys: dict = {}
        validated = {}
        reports = {}
        for name in TABLE_ORDER:
            with step(f"ingest: read+type {name}") as st:
                prep = ing.prepare_table(data, name, cfg)
                st.extra["rows"] = 0 if prep is None else len(prep.typed)
            if prep is None:
                continue
            with step(f"ingest: GX suite + decide {name}"):
                vt = ing.decide(prep, ing.validate_table(prep, runner, keys, limit), cfg)
            validated[name], reports[name] = vt, vt.report
            keys.update(ing.parent_keys_of(vt))
            del prep
        summary = ing.IngestSummary(str(data), fp, None, reports, created_at=pd.Timestamp.now(tz="UTC").isoformat())
        with step("ingest: Data Docs"):
            runner.build_data_docs()
        with step("ingest: write snapshot"):
            snapshot = ing.write_snapshot(validated, out, summary)
    return snapshot, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="bench", choices=["tiny", "default", "bench"])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data", type=Path, help="existing data folder (skip simulation)")
    ap.add_argument("--work", type=Path, default=Path("work/bench"))
    ap.add_argument("--format", default="csv", choices=["csv", "parquet"])
    args = ap.parse_args()

    rec = Recorder()
    data = args.data
    if data is None:
        data = args.work / f"data-{args.size}"
        simulate_to(data, args.size, args.seed, args.format, rec)
    _snapshot, total = ingest_into(data, args.work / f"ingest-{args.size}", rec)
    print(f"\ningest + validate total: {total:.1f} s\n")
    print(rec.table())
    rec.save(Path(__file__).parent / "out" / f"ingest-{args.size}.json", size=args.size, ingest_total_s=total)


if __name__ == "__main__":
    main()
