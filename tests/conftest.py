"""Test session set-up: isolated Prefect home and MLflow store, one Prefect test harness per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="bundle-pricing-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_TMP / "prefect")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_TMP / 'mlflow.db'}"
os.environ["PREFECT_LOGGING_LEVEL"] = os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING")

REPO = Path(__file__).resolve().parents[1]


def online_retail_path() -> Path | None:
    """The real Online Retail file, beside the repo (../shared/datasets) or named by ONLINE_RETAIL_CSV."""
    env = os.environ.get("ONLINE_RETAIL_CSV")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "datasets" / "online_retail" / "online_retail_2010-12_2011-12.csv.gz")
    for c in candidates:
        if c.exists():
            return c
    return None


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's test harness (a throwaway API server and database), started once per session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def session_tmp() -> Path:
    return _SESSION_TMP


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory) -> Path:
    """The tiny simulated market as CSV files (with its _truth), shared by the flow tests."""
    from pricing.simulator import simulate

    d = tmp_path_factory.mktemp("tiny-market") / "data"
    simulate(d, size="tiny", seed=5)
    return d


def flow_config(tmp: Path, name: str) -> str:
    """A config file with its own work dir, registered-model name and experiment (tests stay apart)."""
    f = tmp / "config.yaml"
    f.write_text(
        f"paths:\n  work_dir: {tmp / 'work'}\n"
        f"model:\n  registered_model_name: {name}\n  n_estimators: 200\n"
        f"tracking:\n  experiment: {name}\n"
    )
    return str(f)
