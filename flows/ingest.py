"""Ingestion flow: read every contract table, validate it with Great Expectations, publish a snapshot.

    fingerprint -> (reuse snapshot if the same) -> per table: read & type -> GX suite -> quarantine
    -> write snapshot (typed Parquet + quarantine + summary) -> Data Docs -> summary artifact

A hard failure (missing file or column, unreadable file, wrong types, duplicate keys, too many bad
rows or unknown references) stops the flow with a message naming table, column, rule and example
rows; no snapshot is written.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from prefect import flow

from pricing import ingest as ing
from pricing.config import Config, load_config
from pricing.contract import TABLE_ORDER, ContractError
from tasks import ingest as t
from tasks.common import run_logger


def default_out_dir(config: Config) -> Path:
    return Path(config.paths.work_dir) / "ingest"


@flow(name="ingest", log_prints=True)
def ingest_flow(
    data_dir: str,
    out_dir: str | None = None,
    config_path: str | None = None,
    force: bool = False,
    now: str | None = None,
) -> ing.IngestSummary:
    """Validate the shop's tables in ``data_dir`` and write a typed snapshot under ``out_dir``.

    Args:
        data_dir: folder with ``<table>.csv`` or ``<table>.parquet`` files (data contract v1).
        out_dir: where snapshots go (default ``<work_dir>/ingest``).
        config_path: YAML config overriding the defaults.
        force: ingest again even when a snapshot with the same data fingerprint exists.
        now: reference time for the "not in the future" rule (ISO 8601; default: the current time).
    """
    from expectations.runner import SuiteRunner  # Great Expectations costs 4-7 s to import: only here

    config = load_config(config_path)
    cfg = config.ingest
    out = Path(out_dir) if out_dir else default_out_dir(config)
    logger = run_logger()
    t0 = time.perf_counter()
    if not Path(data_dir).is_dir():
        raise ContractError("(all)", "data directory", f"{data_dir} is not a directory")

    fp = t.fingerprint_inputs(data_dir, cfg)
    existing = ing.snapshot_path(out, fp)
    if existing.exists() and not force:
        summary = ing.IngestSummary(**_summary_fields(existing))
        summary.reused = True
        summary.snapshot_dir = str(existing.resolve())  # the stored one may be relative to another cwd
        logger.info("inputs unchanged (fingerprint %s): reusing %s", fp, existing)
        (out / "LATEST").write_text(fp + "\n")
        t.publish_summary(summary)
        return summary

    runner = SuiteRunner(out / "gx")
    limit = ing.now_limit(cfg, pd.Timestamp(now) if now else None)
    validated: dict[str, ing.ValidatedTable] = {}
    reports: dict[str, ing.TableReport] = {}
    keys: dict[str, pd.Series] = {}
    try:
        for table in TABLE_ORDER:
            prep = t.read_and_type(data_dir, table, cfg)
            if prep is None:
                reports[table] = ing.TableReport(table=table, source=None, present=False)
                continue
            vt = t.validate(prep, runner, keys, limit, cfg)
            validated[table] = vt
            reports[table] = vt.report
            keys.update(ing.parent_keys_of(vt))
    except ContractError as exc:
        docs = runner.build_data_docs() if cfg.build_data_docs else None
        logger.error("ingestion stopped: %s", exc)
        t.publish_failure(str(exc), str(docs) if docs else None)
        raise

    summary = ing.IngestSummary(
        data_dir=str(data_dir),
        fingerprint=fp,
        snapshot_dir=None,
        tables=reports,
        created_at=pd.Timestamp.now(tz="UTC").isoformat(),
    )
    docs = runner.build_data_docs() if cfg.build_data_docs else None
    summary.data_docs = str(docs) if docs else None
    summary.seconds = time.perf_counter() - t0
    t.write_snapshot(validated, str(out), summary)
    t.publish_summary(summary)
    logger.info("ingestion done in %.1f s: snapshot %s", summary.seconds, summary.snapshot_dir)
    return summary


def _summary_fields(snapshot: Path) -> dict:
    import json

    d = json.loads((snapshot / ing.SNAPSHOT_SUMMARY).read_text())
    d["tables"] = {
        k: ing.TableReport(**{**v, "failures": [ing.RuleCount(**f) for f in v.get("failures", [])]})
        for k, v in d["tables"].items()
    }
    return d


if __name__ == "__main__":
    import sys

    ingest_flow(sys.argv[1])
