"""The whole pipeline: ingest -> validate -> features -> (mine bundles) -> train -> register -> price.

``bundle-pricing run --data DIR --out DIR`` runs this flow. The price book is priced with the model
this run trained (not the registry's champion, which only a promotion review moves); with no offers
log it is an exploration price book. On bad input the flow stops before anything is written to --out.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from pricing.config import load_config


@flow(name="pipeline", log_prints=True)
def pipeline_flow(data_dir: str, out_dir: str, config_path: str | None = None) -> dict[str, Any]:
    from flows.ingest import ingest_flow
    from flows.price import price_flow
    from flows.train import train_flow
    from pricing.ingest import load_snapshot

    config = load_config(config_path)
    summary = ingest_flow(data_dir=data_dir, config_path=config_path)
    offers = load_snapshot(summary.snapshot_dir).get("offers")
    trained = None
    if offers is not None and len(offers):
        trained = train_flow(snapshot_dir=summary.snapshot_dir, data_dir=data_dir, config_path=config_path)
    priced = price_flow(
        out_dir=out_dir,
        snapshot_dir=summary.snapshot_dir,
        config_path=config_path,
        model_alias=None if trained else "champion",
        model_version=trained["version"] if trained else None,
    )
    return {"ingest": summary.to_dict(), "train": trained, "price": priced,
            "model_name": config.model.registered_model_name}
