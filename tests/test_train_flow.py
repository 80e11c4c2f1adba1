"""Training flow under Prefect's test harness: trains on the tiny market, registers with aliases,
stops with a clear message on bad training data and then registers nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flows.train import train_flow
from pricing.model import TrainingDataError
from pricing.tracking import CHALLENGER, CHAMPION, alias_map, load_model
from tests.conftest import flow_config

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]




def test_train_registers_challenger_and_first_champion(tiny_market, tmp_path):
    cfg = flow_config(tmp_path, "tiny-accept")
    first = train_flow(data_dir=str(tiny_market), config_path=cfg)
    assert first["version"] == "1"
    assert alias_map("tiny-accept") == {CHALLENGER: "1", CHAMPION: "1"}
    m = first["metrics"]
    for key in ("test_auc", "test_log_loss", "test_brier", "test_ece", "test_true_log_loss"):
        assert key in m
    assert 0.6 < m["test_auc"] <= 1.0
    # the model cannot beat the truth by much (same rows): a sanity check on the ceiling
    assert m["test_log_loss"] > m["test_true_log_loss"] - 0.02

    second = train_flow(data_dir=str(tiny_market), config_path=cfg)
    assert second["version"] == "2"
    assert alias_map("tiny-accept") == {CHALLENGER: "2", CHAMPION: "1"}, "a new version never takes champion by itself"

    loaded = load_model("tiny-accept", alias=CHAMPION)
    assert loaded.version == "1"
    assert loaded.model.feature_names == loaded.builder.feature_names
    # the registry says what a version is and how to load it (a structured model's LightGBM artifact is
    # only its level booster)
    from mlflow import MlflowClient

    mv = MlflowClient().get_model_version("tiny-accept", "1")
    assert mv.tags.get("price_response") == loaded.model.price_response == "structured"
    assert "LEVEL booster only" in mv.description and "load_model" in mv.description


def _copy_market(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.glob("*.csv"):
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize(
    "case, edit, message",
    [
        ("no offers file", lambda d: (d / "offers.csv").unlink(), "no offers"),
        ("single class", lambda d: _set_col(d / "offers.csv", "accepted", "0"), "single class"),
        ("too few rows", lambda d: _head(d / "offers.csv", 100), "too few"),
    ],
)
def test_bad_training_data_stops_clearly_and_registers_nothing(tiny_market, tmp_path, case, edit, message):
    data = _copy_market(tiny_market, tmp_path / "data")
    edit(data)
    name = "bad-" + case.replace(" ", "-")
    with pytest.raises(TrainingDataError) as info:
        train_flow(data_dir=str(data), config_path=flow_config(tmp_path, name))
    assert message in str(info.value).lower()
    assert alias_map(name) == {}


def _set_col(path: Path, col: str, value: str) -> None:
    df = pd.read_csv(path, dtype=str)
    df[col] = value
    df.to_csv(path, index=False)


def _head(path: Path, n: int) -> None:
    pd.read_csv(path, dtype=str).head(n).to_csv(path, index=False)
