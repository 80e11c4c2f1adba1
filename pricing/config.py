"""One typed configuration for the whole system (pydantic), loaded from YAML.

The shipped defaults live in ``pricing/defaults/config.yaml`` (documented there, and equal to the
defaults below; a test keeps them in step). A user file given with ``--config`` overrides any subset
of keys; unknown keys are an error so a typo never goes unnoticed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_CONFIG_PATH = Path(__file__).parent / "defaults" / "config.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(_Section):
    work_dir: Path = Field(Path("work"), description="working data folder (runs, MLflow store, docs)")


class IngestConfig(_Section):
    max_row_failure_share: float = Field(
        0.01, ge=0, le=1, description="per table: share of rows that may be quarantined before the run stops"
    )
    max_reference_failure_share: float = Field(
        0.01, ge=0, le=1, description="per table: share of rows with unknown references tolerated (quarantined)"
    )
    future_tolerance_minutes: float = Field(
        5.0, ge=0, description="timestamps later than now + this are 'in the future'"
    )
    examples_in_messages: int = Field(5, ge=1, description="offending rows shown in an error message")
    build_data_docs: bool = Field(True, description="build Great Expectations Data Docs (HTML)")


class SimulatorConfig(_Section):
    size: Literal["tiny", "default", "bench"] = "default"
    seed: int = 7


class SeasonWindow(_Section):
    name: str
    start: str = Field(..., pattern=r"^\d{2}-\d{2}$", description="MM-DD, inclusive")
    end: str = Field(..., pattern=r"^\d{2}-\d{2}$", description="MM-DD, inclusive (may wrap the year end)")


class FeaturesConfig(_Section):
    windows_days: tuple[int, ...] = Field((7, 30, 90), description="look-back windows of customer activity")
    n_search_tokens: int = Field(32, ge=0, description="top-k search tokens learned from the training queries")
    demand_window_days: int = Field(7, ge=1, description="recent demand in the bundle's categories")
    competitor_max_age_days: int = Field(14, ge=0, description="use a competitor price at most this old")
    calendar: tuple[SeasonWindow, ...] = Field(
        (
            SeasonWindow(name="winter_holidays", start="12-01", end="12-31"),
            SeasonWindow(name="black_friday", start="11-20", end="11-30"),
            SeasonWindow(name="summer_sale", start="07-01", end="07-31"),
            SeasonWindow(name="valentines", start="02-01", end="02-14"),
        ),
        description="named seasons; each becomes a 0/1 context feature",
    )


class MiningConfig(_Section):
    min_support: float = Field(0.002, ge=0, le=1)
    min_lift: float = Field(1.5, ge=0)
    min_confidence: float = Field(0.0, ge=0, le=1)
    max_items: int = Field(3, ge=2, le=3)
    max_candidates: int = Field(200, ge=1)
    max_per_product: int | None = Field(5, ge=1)
    allowed_category_mixes: tuple[tuple[str, ...], ...] | None = None


class ModelConfig(_Section):
    registered_model_name: str = "bundle-acceptance"
    valid_share: float = Field(0.15, gt=0, lt=0.5, description="latest-but-one share of offers (by time) for early stopping and calibration")
    test_share: float = Field(0.15, gt=0, lt=0.5, description="latest share of offers (by time) held out for metrics")
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(50, ge=1)
    n_estimators: int = Field(1000, ge=1, description="upper bound; early stopping picks the number")
    early_stopping_rounds: int = Field(50, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.9, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    monotone_constraints_method: Literal["basic", "intermediate", "advanced"] = "advanced"
    calibration: Literal["auto", "isotonic", "none"] = Field(
        "auto", description="auto: isotonic when it lowers the validation calibration error by a clear margin"
    )
    calibration_bins: int = Field(15, ge=2)
    min_rows: int = Field(500, ge=10, description="fewer offers than this: training stops with a message")
    min_positives: int = Field(20, ge=1, description="fewer accepted (or declined) offers than this: stop")
    n_threads: int = Field(2, ge=1)
    seed: int = 7


class TrackingConfig(_Section):
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; None: $MLFLOW_TRACKING_URI, else sqlite:///<work_dir>/mlflow/mlflow.db",
    )
    experiment: str = "bundle-pricing"


class Config(_Section):
    paths: PathsConfig = PathsConfig()
    ingest: IngestConfig = IngestConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    features: FeaturesConfig = FeaturesConfig()
    mining: MiningConfig = MiningConfig()
    model: ModelConfig = ModelConfig()
    tracking: TrackingConfig = TrackingConfig()

    def fingerprint(self) -> str:
        """A short, stable hash of the effective configuration (lineage, caching)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults from the shipped YAML, then the user's YAML file, then explicit overrides."""
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()) or {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file not found: {p}")
        user = yaml.safe_load(p.read_text()) or {}
        if not isinstance(user, dict):
            raise ValueError(f"config file {p} must hold a mapping at the top level")
        data = _deep_merge(data, user)
    if overrides:
        data = _deep_merge(data, overrides)
    return Config.model_validate(data)
