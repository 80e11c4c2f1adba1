"""Environment defaults applied before Prefect or MLflow are imported (CLI, tests, benchmarks).

Only defaults: a value the user already exported always wins.
"""

from __future__ import annotations

import os

DEFAULTS = {
    # the ephemeral API server needs 19-25 s to start on 2 cores; Prefect's default timeout is 20 s
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # no internet here: telemetry would only log errors
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    # MLflow's "Downloading artifacts" bars would interleave with the flows' logs on every model load
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def configure_environment() -> None:
    for k, v in DEFAULTS.items():
        os.environ.setdefault(k, v)
