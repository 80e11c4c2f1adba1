"""Pricing flow: validated snapshot + registered model -> price book (segment and personal prices).

    snapshot -> bundles (the shop's, or mined) -> [no offers log: exploration price book]
    -> champion model from the registry -> segments -> segment MILP (CVXPY + HiGHS)
    -> personal prices (Lagrangian) -> rule re-check -> experiment groups (treatment / control /
    exploration) -> files written atomically -> MLflow + artifacts
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.scaleout import describe as describe_scaleout
from flows.scaleout import price_scorer
from pricing.config import load_config
from pricing.experiment import with_groups
from pricing.ingest import latest_snapshot
from tasks import price as t
from tasks import train as tt


@flow(name="price", log_prints=True)
def price_flow(
    out_dir: str,
    snapshot_dir: str | None = None,
    data_dir: str | None = None,
    config_path: str | None = None,
    model_alias: str | None = "champion",
    model_version: str | None = None,
    ingest_out: str | None = None,
) -> dict[str, Any]:
    """Write a price book into ``out_dir`` (the previous one, if any, bounds the price changes).

    Args:
        out_dir: price book folder (bundle_prices.csv, customer_segments.csv, customer_offers.csv, manifest.json).
        snapshot_dir / data_dir: the validated snapshot, or raw tables to ingest (default: latest snapshot).
        model_alias / model_version: which registered model prices (default alias ``champion``).
    """
    from flows.ingest import default_out_dir, ingest_flow

    config = load_config(config_path)
    if snapshot_dir is None:
        if data_dir is not None:
            snapshot_dir = ingest_flow(data_dir=data_dir, out_dir=ingest_out, config_path=config_path).snapshot_dir
        else:
            snap = latest_snapshot(ingest_out or default_out_dir(config))
            if snap is None:
                raise ValueError("no validated snapshot: give data_dir or run the ingest flow first")
            snapshot_dir = str(snap)
    tables = tt.load_tables(snapshot_dir)
    tables, mined = tt.ensure_bundles(tables, config)
    current = t.read_current(out_dir)
    offers = tables.get("offers")
    if offers is None or len(offers) == 0:
        book = t.explore(tables, config)
    else:
        loaded = t.load_model(config, model_alias if model_version is None else None, model_version)
        with price_scorer(config) as scorer:  # scaleout.engine: dask fans the scoring out (flows/scaleout.py)
            # with a scorer the step runs in the flow run itself, so its score-chunk tasks are submitted
            # from the flow: from inside a task, prefect-dask would ship that task's parameters (every
            # table) to the workers with each chunk
            optimize = t.optimize if scorer is None else t.optimize.fn
            book = optimize(tables, loaded, config, current, scorer)
        book.manifest["scoring"] = describe_scaleout(config.scaleout, scorer)
        book.manifest["model"] = {"name": loaded.name, "version": loaded.version, "alias": loaded.alias,
                                  "mlflow_run_id": loaded.run_id}
    import json

    snap_meta = json.loads((Path(snapshot_dir) / "summary.json").read_text())
    book.manifest.update(
        {
            "data_fingerprint": snap_meta["fingerprint"],
            "snapshot": snapshot_dir,
            "config_hash": config.fingerprint(),
            "prefect_flow_run_id": flow_run.get_id(),
            "bundles_mined": mined,
        }
    )
    book = with_groups(book, config, previous=current)  # treatment / control / exploration (pricing/experiment.py)
    info = t.publish(book, out_dir, config)
    return {**info, "manifest": book.manifest}
