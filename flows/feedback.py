"""Feedback flow: a played price book + the period's realized data -> report -> retraining trigger.

    price book (with experiment groups) + realized offers / orders of the period (contract CSVs)
    -> the snapshot the book was priced from -> the model that priced it (MLflow registry)
    -> realized vs predicted conversion and profit, lift of treatment over control, feature drift (PSI),
       AUC / log loss on the new data (pricing/feedback.py)
    -> Prefect markdown artifact + MLflow run (metrics, plots) -> one-screen summary
    -> when a threshold is crossed: the training flow as a subflow, on the snapshot plus the period

Bad realized data (no offers, offers for unknown customers or bundles, offers already in the snapshot)
stops the flow with a :class:`pricing.feedback.FeedbackDataError` before anything is logged or trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow
from prefect.runtime import deployment, flow_run

from pricing.config import load_config
from pricing.ingest import latest_snapshot
from tasks import feedback as t
from tasks import train as tt


@flow(name="feedback", log_prints=True)
def feedback_flow(
    prices_dir: str,
    realized_dir: str | None = None,
    snapshot_dir: str | None = None,
    data_dir: str | None = None,
    config_path: str | None = None,
    model_alias: str | None = None,
    model_version: str | None = None,
    retrain: bool = True,
    ingest_out: str | None = None,
    retrain_data_dir: str | None = None,
    retrain_via: Literal["auto", "subflow", "deployment"] = "auto",
) -> dict[str, Any]:
    """Judge the price book in ``prices_dir`` on the realized data in ``realized_dir``; retrain when needed.

    Args:
        prices_dir: the published price book that was played (its manifest names its snapshot and model).
        realized_dir: the period's tables in the contract format: offers.csv (required: offer_id, offer_time,
            customer_id, bundle_id, offered_price, accepted), orders.csv, events.csv, competitor_prices.csv
            (default: ``<work_dir>/realized``, where a scheduled run finds the shop's latest period).
        snapshot_dir / data_dir: the data before the period (default: the book's snapshot, else the latest).
        model_alias / model_version: the model to judge (default: the version that priced the book).
        retrain: start the training flow (subflow) when the trigger fires.
        retrain_data_dir: where the snapshot plus the period are written for retraining (default:
            ``<work_dir>/feedback/retrain-<period end>-<flow run>/data``).
        retrain_via: ``subflow`` runs the training flow inside this run and waits for the new version;
            ``deployment`` starts a run of the served ``train/bundle-pricing`` deployment with
            ``run_deployment`` and returns at once (the training run shows under that deployment);
            ``auto`` (default): ``deployment`` when this run itself belongs to a deployment, else ``subflow``.
    """
    from flows.ingest import default_out_dir, ingest_flow

    config = load_config(config_path)
    realized_dir = realized_dir or str(Path(config.paths.work_dir) / "realized")
    book = t.read_book(prices_dir)
    if snapshot_dir is None:
        if data_dir is not None:
            snapshot_dir = ingest_flow(data_dir=data_dir, out_dir=ingest_out, config_path=config_path).snapshot_dir
        elif book.manifest.get("snapshot") and Path(book.manifest["snapshot"]).exists():
            snapshot_dir = str(book.manifest["snapshot"])
        else:
            snap = latest_snapshot(ingest_out or default_out_dir(config))
            if snap is None:
                raise ValueError("no snapshot of the data before the period: give snapshot_dir or data_dir")
            snapshot_dir = str(snap)
    tables = tt.load_tables(snapshot_dir)
    tables, _mined = tt.ensure_bundles(tables, config)
    realized = t.load_realized(realized_dir, config)
    t.check_realized(realized, tables, book)  # bad input stops here: nothing logged, nothing trained
    loaded = t.load_model(config, book, model_alias, model_version)
    info, trained_until = t.model_info(loaded, tables)
    report = t.compute(book, realized, tables, loaded, config, trained_until, info)
    published = t.publish(report, config, prices_dir, realized_dir, flow_run.get_id())
    summary = report.summary_lines()
    print("\n".join(summary))

    retrained = None
    if report.decision.fire and retrain:
        from flows.train import train_flow

        stamp = report.period["end"][:10]
        out = Path(retrain_data_dir) if retrain_data_dir else (
            Path(config.paths.work_dir) / "feedback" / f"retrain-{stamp}-{flow_run.get_id() or 'local'}" / "data")
        data = t.retraining_data(tables, realized, str(out))
        via = retrain_via if retrain_via != "auto" else ("deployment" if deployment.id else "subflow")
        if via == "deployment":
            retrained = start_training_deployment(data, config_path, ingest_out)
            print(f"retraining triggered: flow run {retrained['flow_run_name']} of deployment "
                  f"{retrained['deployment']} trains on the snapshot plus the period ({data})")
        else:
            print(f"retraining triggered: training on the snapshot plus the period ({data})")
            retrained = train_flow(data_dir=data, config_path=config_path, ingest_out=ingest_out)
    return {
        "retrain": report.decision.fire,
        "reasons": report.decision.reasons,
        "checks": report.decision.checks.to_dict(orient="records"),
        "metrics": report.metrics(),
        "period": report.period,
        "model": report.model,
        "summary": summary,
        "snapshot_dir": snapshot_dir,
        "retrained": retrained,
        **published,
    }


def start_training_deployment(data_dir: str, config_path: str | None, ingest_out: str | None) -> dict[str, Any]:
    """Start the served training deployment on ``data_dir`` (``run_deployment``, not waiting for it)."""
    from prefect.deployments import run_deployment

    from flows.deployments import DEPLOYMENT_NAME, given

    name = f"train/{DEPLOYMENT_NAME}"
    params = given({"data_dir": data_dir, "config_path": config_path, "ingest_out": ingest_out})
    run = run_deployment(name, parameters=params, timeout=0)
    return {"deployment": name, "flow_run_id": str(run.id), "flow_run_name": run.name, "parameters": params}
