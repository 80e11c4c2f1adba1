"""Prefect tasks for training: thin wrappers around :mod:`pricing.training`, :mod:`pricing.model` and
:mod:`pricing.tracking`. Frames travel in memory within a flow run (no input-hash caching)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pricing import training as tr
from pricing.config import Config
from pricing.features import PRICE_FEATURES
from pricing.ingest import load_snapshot
from pricing.model import TrainResult, train_model
from tasks.common import run_logger


@task(name="load-snapshot", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def load_tables(snapshot_dir: str) -> dict[str, pd.DataFrame]:
    tables = load_snapshot(snapshot_dir)
    run_logger().info("loaded %s", ", ".join(f"{k} {len(v):,}" for k, v in tables.items()))
    return tables


@task(name="ensure-bundles", cache_policy=NO_CACHE)
def ensure_bundles(tables: dict[str, pd.DataFrame], config: Config) -> tuple[dict[str, pd.DataFrame], bool]:
    out, mined = tr.ensure_bundles(tables, config.mining)
    if mined:
        run_logger().info("no bundles given: mined %d candidates from co-purchases", len(out["bundles"]))
    return out, mined


@task(name="build-features", cache_policy=NO_CACHE)
def build_features(tables: dict[str, pd.DataFrame], config: Config) -> tr.TrainingData:
    data = tr.build_training_data(tables, config)
    run_logger().info(
        "features: %s offers x %d columns (builder state learned before %s)",
        f"{len(data.X):,}", data.X.shape[1], data.cutoff,
    )
    return data


@task(name="train-model", cache_policy=NO_CACHE)
def fit(data: tr.TrainingData, config: Config) -> TrainResult:
    if config.scaleout.train_on_dask:  # LightGBM's Dask interface (pricing/model.py::_fit_on_dask)
        from pricing.distributed import dask_client

        with dask_client(config.scaleout) as client:
            run_logger().info("training on Dask: %d workers at %s", len(client.nthreads()),
                              client.scheduler.address)
            result = train_model(data.X, data.y, data.times, PRICE_FEATURES, config.model,
                                 data.builder.categorical, dask_client=client)
    else:
        result = train_model(data.X, data.y, data.times, PRICE_FEATURES, config.model, data.builder.categorical)
    m = result.metrics
    run_logger().info(
        "test AUC %.4f, log loss %.4f, ECE %.4f (best iteration %d)",
        m["test_auc"], m["test_log_loss"], m["test_ece"], int(m["best_iteration"]),
    )
    return result


@task(name="evaluate-against-truth", cache_policy=NO_CACHE)
def evaluate_truth(data_dir: str | None, tables: dict[str, pd.DataFrame], data: tr.TrainingData,
                   result: TrainResult) -> dict[str, float]:
    truth = tr.truth_dir_of(data_dir)
    if truth is None:
        return {}
    p = result.model.predict_proba(data.X.loc[result.splits["test"]])
    p_full = np.full(len(data.X), np.nan)
    p_full[result.splits["test"]] = p
    m = tr.truth_metrics(truth, tables["offers"], result.splits["test"], data.y, p_full)
    run_logger().info("true probabilities on the test rows: log loss %.4f (the ceiling)", m["test_true_log_loss"])
    return m


@task(name="demand-curves", cache_policy=NO_CACHE)
def demand_curves(result: TrainResult, data: tr.TrainingData, tables: dict[str, pd.DataFrame],
                  data_dir: str | None) -> pd.DataFrame:
    offers = tables["offers"].loc[result.splits["test"]]
    return tr.demand_curves(result.model, data.builder, tables, offers, tr.truth_dir_of(data_dir))


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # no git, or not a checkout
        return None


@task(name="log-to-mlflow", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def log_and_register(
    config: Config,
    result: TrainResult,
    data: tr.TrainingData,
    truth: dict[str, float],
    curves: pd.DataFrame,
    lineage: dict[str, Any],
    register: bool,
    flow_run_id: str | None,
) -> dict[str, Any]:
    import mlflow

    from pricing import plots, tracking

    tracking.configure(config)
    with mlflow.start_run(run_name=f"train-{lineage.get('fingerprint', '')[:8]}") as run:
        mlflow.set_tags(
            {
                "data_fingerprint": lineage.get("fingerprint", ""),
                "snapshot": lineage.get("snapshot_dir", ""),
                "config_hash": config.fingerprint(),
                "bundles_mined": str(lineage.get("bundles_mined", False)),
                "prefect_flow_run_id": flow_run_id or "",
                "git_sha": _git_sha() or "",
                "calibration": result.calibration_decision.method if result.model.calibrator is not None else "none",
                "training_engine": "dask" if config.scaleout.train_on_dask else "local",
                "price_response": result.model.price_response,
            }
        )
        params = {f"model.{k}": v for k, v in config.model.model_dump().items()}
        params.update({f"features.{k}": v for k, v in config.features.model_dump().items() if k != "calendar"})
        params["features.cutoff"] = str(data.cutoff)
        params["n_features"] = data.X.shape[1]
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        rows = {f"rows_{k}": int(v.sum()) for k, v in result.splits.items()}
        rows.update({f"table_rows_{k}": int(v) for k, v in lineage.get("table_rows", {}).items()})
        metrics = {k: float(v) for k, v in {**result.metrics, **truth, **rows}.items() if np.isfinite(float(v))}
        if "test_true_log_loss" in truth:
            metrics["test_log_loss_gap_to_truth"] = result.metrics["test_log_loss"] - truth["test_true_log_loss"]
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            plots.reliability_plot(result.reliability("test", "before"), result.reliability("test", "after"),
                                   t / "reliability.png")
            plots.demand_curves_plot(curves, t / "demand_curves.png")
            plots.feature_importance_plot(result.feature_importance, t / "feature_importance.png")
            result.feature_importance.to_csv(t / "feature_importance.csv", index=False)
            result.calibration.to_csv(t / "calibration.csv", index=False)
            curves.to_csv(t / "demand_curves.csv", index=False)
            (t / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2))
            mlflow.log_artifacts(str(t))
        reg = tracking.log_model_and_register(
            result.model, data.builder.to_json(), data.X.loc[result.splits["test"]],
            config.model.registered_model_name, register=register,
        )
        out = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, **reg, "metrics": metrics,
               "tracking_uri": mlflow.get_tracking_uri()}
    logger = run_logger()
    if register:
        logger.info("registered %s version %s with aliases %s", config.model.registered_model_name, reg["version"],
                    ", ".join(reg["aliases"]))
    return out


@task(name="publish-training-report", cache_policy=NO_CACHE)
def publish_report(summary: dict[str, Any]) -> str:
    m = summary["metrics"]
    lines = [
        "# Training run",
        "",
        (f"- registered model: `{summary.get('model_name')}` version **{summary.get('version')}** "
        f"(aliases: {', '.join(summary.get('aliases') or []) or 'none'})"),
        f"- MLflow run: `{summary['run_id']}` in `{summary['tracking_uri']}`",
        f"- data fingerprint: `{summary.get('fingerprint')}`",
        "",
        "| metric (test split) | model | true probabilities |",
        "|---|---:|---:|",
        f"| AUC | {m.get('test_auc', float('nan')):.4f} | {m.get('test_true_auc', float('nan')):.4f} |",
        f"| log loss | {m.get('test_log_loss', float('nan')):.4f} | {m.get('test_true_log_loss', float('nan')):.4f} |",
        f"| Brier | {m.get('test_brier', float('nan')):.4f} | |",
        f"| calibration error (ECE) | {m.get('test_ece', float('nan')):.4f} | |",
        (f"| offers (train / valid / test) | {m.get('rows_train', 0):,.0f} / {m.get('rows_valid', 0):,.0f} / "
        f"{m.get('rows_test', 0):,.0f} | |"),
    ]
    text = "\n".join(lines)
    create_markdown_artifact(text, key="training-report", description="Training metrics and registry")
    return text
