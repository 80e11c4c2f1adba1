"""Training flow: validated snapshot -> features -> LightGBM -> evaluation -> MLflow run -> registry.

    ingest (subflow; reuses the snapshot when the data fingerprint is unchanged)
    -> load snapshot -> bundles (the shop's, or mined from co-purchases)
    -> point-in-time features -> monotone LightGBM with early stopping + calibration
    -> metrics (and the true probabilities' log loss on simulator data) -> demand curves
    -> MLflow run (params, metrics, lineage, plots, model) -> registry: alias `challenger`
       (the first version is also `champion`)

Bad training data (no offers, one class, too few rows) stops with a clear message; nothing is logged
or registered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from pricing.config import load_config
from pricing.ingest import latest_snapshot
from tasks import train as t


@flow(name="train", log_prints=True)
def train_flow(
    data_dir: str | None = None,
    snapshot_dir: str | None = None,
    config_path: str | None = None,
    ingest_out: str | None = None,
    register_model: bool = True,
) -> dict[str, Any]:
    """Train the acceptance model and register it as `challenger`.

    Args:
        data_dir: the shop's raw tables; ingested first (or reused by fingerprint).
        snapshot_dir: an existing validated snapshot (instead of ``data_dir``).
        config_path: YAML config overriding the defaults.
        ingest_out: where ingestion snapshots live (default ``<work_dir>/ingest``).
        register_model: register the model in the MLflow registry (else only log the run).
    """
    import json

    from flows.ingest import default_out_dir, ingest_flow

    config = load_config(config_path)
    fingerprint = None
    if snapshot_dir is None:
        if data_dir is None:
            snap = latest_snapshot(ingest_out or default_out_dir(config))
            if snap is None:
                raise ValueError("give data_dir (raw tables) or snapshot_dir (a validated snapshot)")
            snapshot_dir = str(snap)
        else:
            summary = ingest_flow(data_dir=data_dir, out_dir=ingest_out, config_path=config_path)
            snapshot_dir, fingerprint = summary.snapshot_dir, summary.fingerprint
    meta = json.loads((Path(snapshot_dir) / "summary.json").read_text())
    fingerprint = fingerprint or meta["fingerprint"]
    data_dir = data_dir or meta.get("data_dir")

    tables = t.load_tables(snapshot_dir)
    tables, mined = t.ensure_bundles(tables, config)
    data = t.build_features(tables, config)
    result = t.fit(data, config)
    truth = t.evaluate_truth(data_dir, tables, data, result)
    curves = t.demand_curves(result, data, tables, data_dir)
    lineage = {
        "fingerprint": fingerprint,
        "snapshot_dir": snapshot_dir,
        "bundles_mined": mined,
        "table_rows": {k: len(v) for k, v in tables.items()},
    }
    logged = t.log_and_register(config, result, data, truth, curves, lineage, register_model, flow_run.get_id())
    summary = {**logged, "model_name": config.model.registered_model_name, "fingerprint": fingerprint,
               "snapshot_dir": snapshot_dir}
    t.publish_report(summary)
    return summary
