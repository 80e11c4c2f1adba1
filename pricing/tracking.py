"""MLflow tracking and model registry: where training runs, models and their lineage are kept.

- Tracking URI: ``tracking.tracking_uri`` from the config, else ``$MLFLOW_TRACKING_URI``, else an
  embedded SQLite store ``sqlite:///<work_dir>/mlflow/mlflow.db`` with artifacts in
  ``<work_dir>/mlflow/artifacts`` (nothing to start).
- Registry: MLflow 3 aliases, no stages. A new version gets ``challenger``; the very first version of
  a registered model also gets ``champion``.
- A registered version = the LightGBM classifier (``mlflow.lightgbm`` flavour, with signature and input
  example) + ``acceptance_model.json`` (calibrator, feature order, price features) +
  ``feature_builder.json`` in the same run; a structured model (``model.price_response: structured``)
  also ``sensitivity_model.txt``, its price-sensitivity booster, and then the registered LightGBM model
  is its **level** booster (log-odds at the reference price, before the price term): load the whole
  model with :func:`load_model`, which puts them back together.

No Prefect here; MLflow is imported lazily (3-4 s).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pricing.config import Config

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
MODEL_ARTIFACT = "model"
MODEL_META = "acceptance_model.json"
BUILDER_FILE = "feature_builder.json"
SLOPE_FILE = "sensitivity_model.txt"  # a structured model's price-sensitivity booster (LightGBM model text)


def resolve_tracking_uri(config: Config) -> str:
    if config.tracking.tracking_uri:
        return config.tracking.tracking_uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    db = Path(config.paths.work_dir).resolve() / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def configure(config: Config) -> str:
    """Point MLflow at the configured store and experiment; returns the experiment id."""
    import mlflow

    uri = resolve_tracking_uri(config)
    mlflow.set_tracking_uri(uri)
    name = config.tracking.experiment
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        mlflow.set_experiment(name)
        return exp.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):
        # keep artifacts beside the database, not in ./mlruns of whatever folder we run from
        root = Path(uri[len("sqlite:///") :]).parent / "artifacts"
        root.mkdir(parents=True, exist_ok=True)
        artifact_location = root.resolve().as_uri()
    exp_id = mlflow.create_experiment(name, artifact_location=artifact_location)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def ui_command(config: Config) -> str:
    """The command that shows this store in the MLflow UI."""
    uri = resolve_tracking_uri(config)
    if uri.startswith("sqlite:///"):
        return f"mlflow ui --backend-store-uri {uri} --port 5000"
    return f"open {uri} (MLflow tracking server)"


def pip_requirements() -> list[str]:
    """Explicit requirements for the logged model (inferring them costs 8-10 s per log)."""
    import lightgbm
    import numpy
    import pandas
    import sklearn

    return [
        f"lightgbm=={lightgbm.__version__}",
        f"pandas=={pandas.__version__}",
        f"numpy=={numpy.__version__}",
        f"scikit-learn=={sklearn.__version__}",
    ]


def log_model_and_register(
    model: Any,
    builder_json: str,
    X_example: Any,
    registered_name: str,
    register: bool = True,
) -> dict[str, Any]:
    """Inside an active run: log the classifier, its metadata and feature builder; register it.

    Returns ``{"model_uri", "version" (or None), "aliases"}``. The new version gets ``challenger``;
    when the registered model has no ``champion`` yet, it becomes champion too.
    """
    import mlflow
    from mlflow.models import infer_signature

    example = X_example.head(5)  # all numeric (categoricals as codes): valid for MLflow's serving path
    output = model.predict_proba(example)
    if getattr(model, "structured", False):
        # the logged LightGBM model is the level booster: its inputs are the non-price features
        example = example[model.context_features]
        output = model.classifier.predict_proba(example)[:, 1]
    signature = infer_signature(example, output)
    info = mlflow.lightgbm.log_model(
        model.classifier,
        name=MODEL_ARTIFACT,
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(),
        registered_model_name=registered_name if register else None,
    )
    mlflow.log_text(json.dumps(model.to_dict(), indent=2), MODEL_META)
    mlflow.log_text(builder_json, BUILDER_FILE)
    slope_text = model.slope_model_text()
    if slope_text is not None:
        mlflow.log_text(slope_text, SLOPE_FILE)
    out: dict[str, Any] = {"model_uri": info.model_uri, "version": None, "aliases": []}
    if not register:
        return out
    version = str(info.registered_model_version)
    out["version"] = version
    describe_version(registered_name, version, getattr(model, "price_response", "trees"))
    out["aliases"] = set_initial_aliases(registered_name, version)
    return out


def describe_version(name: str, version: str, price_response: str) -> None:
    """Tag a registered version with its price-response form and say, in its description (the MLflow
    UI shows it), how to load the whole acceptance model: a structured model's LightGBM artifact is
    only its level booster."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_model_version_tag(name, version, "price_response", price_response)
    how = ("structured acceptance model: the logged LightGBM model is the LEVEL booster only (log-odds at the "
           f"reference price); the price term needs {SLOPE_FILE} from the same run. Load the whole model with "
           "pricing.tracking.load_model(name, version=...)" if price_response == "structured" else
           "tree acceptance model (monotone in the price features); mlflow.lightgbm.load_model(...).predict_proba "
           f"gives raw probabilities, the calibrator is in {MODEL_META}; pricing.tracking.load_model applies it")
    client.update_model_version(name, version, description=how)


def set_initial_aliases(name: str, version: str) -> list[str]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    client.set_registered_model_alias(name, CHALLENGER, version)
    aliases = [CHALLENGER]
    try:
        client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no champion yet: the first version serves
        client.set_registered_model_alias(name, CHAMPION, version)
        aliases.append(CHAMPION)
    return aliases


def alias_map(name: str) -> dict[str, str]:
    """alias -> version of a registered model ({} when it does not exist)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        rm = MlflowClient().get_registered_model(name)
    except MlflowException:  # not registered yet
        return {}
    return {a: str(v) for a, v in (rm.aliases or {}).items()}


@dataclass
class LoadedModel:
    model: Any  # pricing.model.AcceptanceModel
    builder: Any  # pricing.features.FeatureBuilder
    name: str
    version: str
    run_id: str
    alias: str | None


def load_model(name: str, alias: str | None = CHAMPION, version: str | None = None) -> LoadedModel:
    """Load a registered version (by alias, default ``champion``, or by number) with its builder."""
    import mlflow
    from mlflow import MlflowClient

    from pricing.features import FeatureBuilder
    from pricing.model import AcceptanceModel

    client = MlflowClient()
    try:
        mv = client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, alias)
    except Exception as exc:
        what = f"version {version}" if version else f"alias '{alias}'"
        raise LookupError(
            f"no registered model '{name}' with {what} in {mlflow.get_tracking_uri()}: train one first "
            f"(bundle-pricing train --data DIR)"
        ) from exc
    classifier = mlflow.lightgbm.load_model(f"models:/{name}/{mv.version}")
    with tempfile.TemporaryDirectory() as tmp:
        meta = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=MODEL_META, dst_path=tmp)).read_text())
        builder_json = Path(
            mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=BUILDER_FILE, dst_path=tmp)
        ).read_text()
        slope_text = None
        if meta.get("price_response") == "structured":
            slope_text = Path(
                mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=SLOPE_FILE, dst_path=tmp)
            ).read_text()
    return LoadedModel(
        model=AcceptanceModel.from_dict(classifier, meta, slope_booster=slope_text),
        builder=FeatureBuilder.from_json(builder_json),
        name=name,
        version=str(mv.version),
        run_id=mv.run_id,
        alias=alias,
    )
