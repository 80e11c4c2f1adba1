"""Every flow as a deployment, served by one process (Prefect ``serve``): ``bundle-pricing serve``.

| deployment | schedule (config ``serve:``) | what |
|---|---|---|
| ``pipeline/bundle-pricing`` | manual | ingest -> train -> register -> price book |
| ``train/bundle-pricing`` | weekly (``train_cron``) | retrain on the data, register a `challenger` |
| ``feedback/bundle-pricing`` | daily (``feedback_cron``) | realized vs predicted, drift, retraining trigger |
| ``price/bundle-pricing`` | daily (``price_cron``) | re-price with the `champion` |
| ``promote/bundle-pricing`` | manual | promotion review; waits for approval in the UI |

Parameters are the flows' own typed arguments (editable in the UI before a run, or per deployment);
the ``--config``, ``--data`` and ``--out`` given to ``serve`` become their defaults; the feedback flow
judges the book in ``--out`` on the period the shop drops into ``<work_dir>/realized`` (its default).
Deployments reference the flows by module path
(``flows.train.train_flow``), so runs work from any working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pricing.config import load_config

#: the deployment name of every served flow: run one with ``<flow name>/bundle-pricing``
DEPLOYMENT_NAME = "bundle-pricing"
TAGS = ["bundle-pricing"]


def _abs(path: str | Path | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def given(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without the unset (None) entries: the flow's own defaults apply to those."""
    return {k: v for k, v in params.items() if v is not None}


def build_deployments(
    config_path: str | None = None,
    data_dir: str | None = None,
    out_dir: str | None = None,
) -> list[Any]:
    """The runner deployments to serve.

    Args:
        config_path: YAML config passed to every flow (schedules come from its ``serve:`` section).
        data_dir: the shop's raw tables (ingested by fingerprint, reused when unchanged); default: the
            latest validated snapshot.
        out_dir: the price book folder of the price and pipeline flows (default ``<work_dir>/prices``).
    """
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from flows.feedback import feedback_flow
    from flows.pipeline import pipeline_flow
    from flows.price import price_flow
    from flows.promote import promote_flow
    from flows.train import train_flow

    config = load_config(config_path)
    sv = config.serve
    cfg = _abs(config_path)
    data = _abs(data_dir)
    out = _abs(out_dir) or _abs(Path(config.paths.work_dir) / "prices")
    common = {"tags": TAGS, "entrypoint_type": EntrypointType.MODULE_PATH}
    deployments = [
        pipeline_flow.to_deployment(
            DEPLOYMENT_NAME,
            parameters=given({"data_dir": data, "out_dir": out, "config_path": cfg}),
            description="The whole pipeline on demand: ingest, validate, features, train, register, price book.",
            **common,
        ),
        train_flow.to_deployment(
            DEPLOYMENT_NAME,
            schedules=[Cron(sv.train_cron, timezone=sv.timezone)],
            parameters=given({"data_dir": data, "config_path": cfg}),
            description="Weekly retraining: registers a new `challenger` (promotion is a separate review).",
            **common,
        ),
        price_flow.to_deployment(
            DEPLOYMENT_NAME,
            schedules=[Cron(sv.price_cron, timezone=sv.timezone)],
            parameters=given({"out_dir": out, "data_dir": data, "config_path": cfg}),
            description="Daily re-pricing with the `champion` model.",
            **common,
        ),
        promote_flow.to_deployment(
            DEPLOYMENT_NAME,
            parameters=given({"data_dir": data, "config_path": cfg}),
            description="Promotion review of the `challenger`; a better one waits for approval in this UI.",
            **common,
        ),
        feedback_flow.to_deployment(
            DEPLOYMENT_NAME,
            schedules=[Cron(sv.feedback_cron, timezone=sv.timezone)],
            parameters=given({"prices_dir": out, "config_path": cfg}),  # the data before: the book's snapshot
            description="Daily feedback on the played price book (the period in <work_dir>/realized); may "
            "trigger retraining.",
            **common,
        ),
    ]
    return deployments


def serve_deployments(deployments: list[Any], limit: int | None = None) -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM); runs execute in subprocesses of this process."""
    from prefect import serve

    serve(*deployments, limit=limit)
