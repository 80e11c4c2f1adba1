"""Prefect tasks for ingestion: thin wrappers around :mod:`pricing.ingest`.

Frames are passed in memory between tasks of one flow run, so these tasks do not use Prefect's
input-hash cache (it cannot hash DataFrames); the whole ingestion is cached by the data fingerprint
instead (a snapshot with the same fingerprint is reused, see ``flows/ingest.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from pricing import ingest as ing
from pricing.config import IngestConfig
from tasks.common import no_retry_on_contract_error, run_logger


@task(name="fingerprint-inputs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=no_retry_on_contract_error)
def fingerprint_inputs(data_dir: str, cfg: IngestConfig) -> str:
    fp = ing.input_fingerprint(data_dir, cfg)
    run_logger().info("data fingerprint %s for %s", fp, data_dir)
    return fp


@task(name="read-and-type", task_run_name="read-and-type-{table}", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=2, retry_condition_fn=no_retry_on_contract_error)
def read_and_type(data_dir: str, table: str, cfg: IngestConfig) -> ing.PreparedTable | None:
    prep = ing.prepare_table(data_dir, table, cfg)
    logger = run_logger()
    if prep is None:
        logger.info("%s: absent (optional table)", table)
    else:
        r = prep.report
        logger.info("%s: %s rows read from %s in %.1f s", table, f"{r.rows_read:,}", Path(r.source).name, r.seconds)
        if r.pii_columns_dropped:
            logger.warning("%s: personal-data columns dropped: %s", table, ", ".join(r.pii_columns_dropped))
        if r.extra_columns_ignored:
            logger.info("%s: extra columns ignored: %s", table, ", ".join(r.extra_columns_ignored))
    return prep


@task(name="validate", task_run_name="validate-{prep.table}", cache_policy=NO_CACHE)
def validate(prep: ing.PreparedTable, runner: Any, keys: dict[str, pd.Series], limit: pd.Timestamp,
             cfg: IngestConfig) -> ing.ValidatedTable:
    outcomes = ing.validate_table(prep, runner, keys, limit)
    vt = ing.decide(prep, outcomes, cfg)
    r = vt.report
    run_logger().info("%s: %s valid, %s quarantined", prep.table, f"{r.rows_valid:,}", f"{r.rows_quarantined:,}")
    return vt


@task(name="write-snapshot", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def write_snapshot(tables: dict[str, ing.ValidatedTable], out_dir: str, summary: ing.IngestSummary) -> str:
    path = ing.write_snapshot(tables, out_dir, summary)
    run_logger().info("snapshot written to %s", path)
    return str(path)


@task(name="publish-ingest-summary", cache_policy=NO_CACHE)
def publish_summary(summary: ing.IngestSummary) -> None:
    create_markdown_artifact(summary.to_markdown(), key="ingestion-summary", description="Validated ingestion")
    rows = [
        {
            "table": name,
            "rows_read": r.rows_read,
            "rows_valid": r.rows_valid,
            "rows_quarantined": r.rows_quarantined,
            "present": r.present,
        }
        for name, r in summary.tables.items()
    ]
    create_table_artifact(rows, key="ingestion-tables", description=f"fingerprint {summary.fingerprint}")


@task(name="publish-ingest-failure", cache_policy=NO_CACHE)
def publish_failure(message: str, data_docs: str | None) -> None:
    text = f"# Ingestion stopped\n\n{message}\n\nNothing was written downstream."
    if data_docs:
        text += f"\n\nData Docs: `{data_docs}`"
    create_markdown_artifact(text, key="ingestion-failure", description="Hard failure of the data contract")
