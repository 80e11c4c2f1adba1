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


class Config(_Section):
    paths: PathsConfig = PathsConfig()
    ingest: IngestConfig = IngestConfig()
    simulator: SimulatorConfig = SimulatorConfig()

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
