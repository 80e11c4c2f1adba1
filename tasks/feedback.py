"""Prefect tasks for the feedback flow: thin wrappers around :mod:`pricing.feedback` and :mod:`pricing.tracking`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from pricing import feedback as fb
from pricing.config import Config
from pricing.pricebook import PriceBook, read_price_book
from tasks.common import run_logger


@task(name="read-price-book", cache_policy=NO_CACHE)
def read_book(prices_dir: str) -> PriceBook:
    book = read_price_book(prices_dir)
    exp = book.manifest.get("experiment")
    run_logger().info(
        "price book %s (%s)%s", prices_dir, book.manifest.get("mode"),
        f"; groups {exp['customers']}" if exp else "; no experiment groups",
    )
    return book


@task(name="load-realized-data", cache_policy=NO_CACHE)
def load_realized(realized_dir: str, config: Config) -> dict[str, pd.DataFrame]:
    realized = fb.load_realized(realized_dir, config.ingest)
    run_logger().info("realized data: %s", ", ".join(f"{k} {len(v):,}" for k, v in realized.items()))
    return realized


@task(name="check-realized-data", cache_policy=NO_CACHE)
def check_realized(realized: dict[str, pd.DataFrame], tables: dict[str, pd.DataFrame], book: PriceBook) -> None:
    fb.check_realized(realized, tables, book)


@task(name="load-model-of-the-book", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3)
def load_model(config: Config, book: PriceBook, alias: str | None, version: str | None) -> Any:
    """The model to judge: an explicit alias or version, else the one that priced the book, else `champion`."""
    from pricing import tracking

    tracking.configure(config)
    priced_by = (book.manifest.get("model") or {}).get("version")
    if alias is None and version is None:
        version = str(priced_by) if priced_by else None
        alias = None if version else tracking.CHAMPION
    loaded = tracking.load_model(config.model.registered_model_name, alias=alias, version=version)
    run_logger().info("judging %s version %s (the book was priced by version %s)", loaded.name, loaded.version,
                      priced_by or "unknown")
    return loaded


@task(name="model-training-info", cache_policy=NO_CACHE)
def model_info(loaded: Any, tables: dict[str, pd.DataFrame]) -> tuple[dict[str, Any], pd.Timestamp]:
    """Training-time test metrics of the model's MLflow run and the end of its training data.

    The end of the training data is the latest offer of the snapshot the run trained on (its ``snapshot``
    tag), else the latest offer of the given snapshot tables.
    """
    from mlflow import MlflowClient

    run = MlflowClient().get_run(loaded.run_id)
    metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
    until = pd.Timestamp(tables["offers"]["offer_time"].max())
    snap = Path(run.data.tags.get("snapshot", "") or "/nonexistent") / "offers.parquet"
    if snap.exists():
        until = pd.Timestamp(pd.read_parquet(snap, columns=["offer_time"])["offer_time"].max())
    info = {"name": loaded.name, "version": loaded.version, "mlflow_run_id": loaded.run_id,
            "training_metrics": metrics, "trained_until": str(until)}
    return info, until


@task(name="compute-feedback", cache_policy=NO_CACHE)
def compute(book: PriceBook, realized: dict[str, pd.DataFrame], tables: dict[str, pd.DataFrame], loaded: Any,
            config: Config, trained_until: pd.Timestamp, info: dict[str, Any]) -> fb.FeedbackReport:
    report = fb.compute_feedback(book, realized, tables, loaded.model, loaded.builder, config,
                                 trained_until=trained_until, model_info=info)
    logger = run_logger()
    for line in report.summary_lines():
        logger.info(line)
    return report


@task(name="publish-feedback", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def publish(report: fb.FeedbackReport, config: Config, prices_dir: str, realized_dir: str,
            flow_run_id: str | None) -> dict[str, Any]:
    """MLflow run (metrics, tags, plots, tables, the markdown report) and Prefect artifacts."""
    import mlflow

    from pricing import feedback_plots, plots, tracking

    tracking.configure(config)
    markdown = report.to_markdown()
    with mlflow.start_run(run_name=f"feedback-{report.period['start'][:10]}") as run:
        mlflow.set_tags({
            "kind": "feedback",
            "price_book": prices_dir,
            "realized_data": realized_dir,
            "model_name": str(report.model.get("name", "")),
            "model_version": str(report.model.get("version", "")),
            "retrain": str(report.decision.fire),
            "prefect_flow_run_id": flow_run_id or "",
            "config_hash": config.fingerprint(),
        })
        mlflow.log_metrics(report.metrics())
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            feedback_plots.calibration_by_segment_plot(report.by_segment, t / "calibration_by_segment.png")
            feedback_plots.psi_plot(report.drift, config.feedback.max_psi, t / "psi.png")
            plots.reliability_plot(report.reliability, None, t / "reliability.png", title="Reliability (the period)")
            for name in ("by_group", "by_segment", "by_bundle", "reliability", "lift", "drift"):
                getattr(report, name).to_csv(t / f"{name}.csv", index=False)
            report.decision.checks.to_csv(t / "checks.csv", index=False)
            (t / "feedback.md").write_text(markdown)
            (t / "period.json").write_text(json.dumps(report.period, indent=2, default=str))
            mlflow.log_artifacts(str(t))
        run_id = run.info.run_id
    create_markdown_artifact(markdown, key="feedback-report", description="Feedback on the price book")
    rows = report.decision.checks.drop(columns=["detail"]).round(4).astype(str).to_dict(orient="records")
    create_table_artifact(rows, key="retrain-checks", description="Retraining trigger checks")
    run_logger().info("feedback logged to MLflow run %s", run_id)
    return {"mlflow_run_id": run_id, "tracking_uri": mlflow.get_tracking_uri()}


@task(name="write-retraining-data", cache_policy=NO_CACHE)
def retraining_data(tables: dict[str, pd.DataFrame], realized: dict[str, pd.DataFrame], out_dir: str) -> str:
    """The snapshot tables with the period appended, as contract Parquet files for the training flow."""
    fb.write_period_data(tables, realized, out_dir)
    run_logger().info("retraining data (snapshot + the period) written to %s", out_dir)
    return out_dir
