"""Training pipeline steps as pure functions: tables in, model and evaluation out (no Prefect, no MLflow).

    ensure_bundles -> training_cutoff -> fit_feature_builder -> offer_training_frame -> train_model
    -> truth_metrics (simulator data) -> demand_curves

The flow in ``flows/train.py`` runs these as tasks and logs the outcome to MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pricing.config import Config, MiningConfig, ModelConfig
from pricing.model import TrainingDataError, time_split


@dataclass
class TrainingData:
    builder: Any  # pricing.features.FeatureBuilder
    X: pd.DataFrame
    y: np.ndarray
    times: pd.Series
    offer_ids: pd.Series
    cutoff: pd.Timestamp


def ensure_bundles(tables: dict[str, pd.DataFrame], cfg: MiningConfig) -> tuple[dict[str, pd.DataFrame], bool]:
    """The shop's bundles, or candidates mined from co-purchases when it gives none (second item True)."""
    if "bundles" in tables and len(tables["bundles"]):
        return tables, False
    from pricing.mining import MiningRules, mine_bundles

    rules = MiningRules(
        min_support=cfg.min_support,
        min_lift=cfg.min_lift,
        min_confidence=cfg.min_confidence,
        max_items=cfg.max_items,
        max_candidates=cfg.max_candidates,
        max_per_product=cfg.max_per_product,
        allowed_category_mixes=cfg.allowed_category_mixes,
    )
    mined = mine_bundles(tables["orders"], tables["products"], rules)
    if mined.empty:
        raise TrainingDataError(
            "the shop gives no bundles and none could be mined from its orders with the configured rules "
            f"(mining.min_support={cfg.min_support}, min_lift={cfg.min_lift}); lower them or provide bundles"
        )
    return {**tables, "bundles": mined[["bundle_id", "product_ids"]].copy()}, True


def check_offers(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    offers = tables.get("offers")
    if offers is None or len(offers) == 0:
        raise TrainingDataError(
            "no offers to learn from: the offers table (the log of bundle offers shown, with the price and "
            "whether it was taken) is absent or empty. Run a price experiment first: the price step makes an "
            "exploration price book when there is no offers log."
        )
    return offers


def training_cutoff(offer_times: pd.Series, cfg: ModelConfig) -> pd.Timestamp:
    """Start of the validation period: feature-builder state (vocabulary, lifts) is learned before it."""
    train, _valid, _test = time_split(offer_times, cfg.valid_share, cfg.test_share)
    if not train.any():
        raise TrainingDataError("no offers fall in the training period; add offers or lower the validation/test shares")
    return pd.Timestamp(pd.Series(offer_times)[~train].min())


def build_training_data(tables: dict[str, pd.DataFrame], config: Config) -> TrainingData:
    from pricing.features import fit_feature_builder, offer_training_frame

    offers = check_offers(tables)
    from pricing.model import check_training_data

    check_training_data(offers["accepted"].to_numpy(dtype=np.int8), offers["offer_time"], config.model)
    cutoff = training_cutoff(offers["offer_time"], config.model)
    builder = fit_feature_builder(tables, config.features, before=cutoff)
    X, y, times, ids = offer_training_frame(builder, tables)
    return TrainingData(builder, X, y, times, ids, cutoff)


def truth_dir_of(data_dir: str | Path | None) -> Path | None:
    """The simulator's ground truth beside the data, if this is simulated data."""
    if data_dir is None:
        return None
    d = Path(data_dir) / "_truth"
    return d if (d / "market.json").exists() else None


def truth_metrics(
    truth_dir: Path, offers: pd.DataFrame, mask: np.ndarray, y: np.ndarray, p_model: np.ndarray
) -> dict[str, float]:
    """The true acceptance probabilities' log loss/AUC on the same rows: the ceiling for any model."""
    from sklearn.metrics import log_loss, roc_auc_score

    from pricing.simulator import bundle_index, customer_index, load_market, true_accept_prob

    market = load_market(truth_dir)
    o = offers.loc[mask]
    p_true = true_accept_prob(
        market,
        customer_index(market, o["customer_id"].to_numpy()),
        bundle_index(market, o["bundle_id"].to_numpy()),
        o["offered_price"].to_numpy(dtype=np.float64),
        o["offer_time"],
    )
    yt = y[mask]
    eps = 1e-12
    return {
        "test_true_log_loss": float(log_loss(yt, np.clip(p_true, eps, 1 - eps), labels=[0, 1])),
        "test_true_auc": float(roc_auc_score(yt, p_true)) if len(np.unique(yt)) == 2 else float("nan"),
        "test_model_vs_true_mae": float(np.mean(np.abs(p_model[mask] - p_true))),
    }


def demand_curves(
    model: Any,
    builder: Any,
    tables: dict[str, pd.DataFrame],
    offers: pd.DataFrame,
    truth_dir: Path | None = None,
    n_bundles: int = 3,
    rows_per_bundle: int = 300,
    grid_points: int = 21,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean acceptance against price for the most-offered bundles, per customer group.

    Groups are the simulator's latent customer types when the truth is known, else all customers.
    Prices run from the bundle's cost to its list price (sum of the items); only the price features
    change along the grid. Columns: bundle_id, group, price_rel (price / list_sum), price, p_model
    [, p_true].
    """
    from pricing.features import assemble, context_features, price_features

    top = offers["bundle_id"].value_counts().index[:n_bundles]
    rng = np.random.default_rng(seed)
    picks = []
    for b in top:
        idx = offers.index[offers["bundle_id"] == b]
        picks.append(offers.loc[rng.choice(idx, size=min(rows_per_bundle, len(idx)), replace=False)])
    sample = pd.concat(picks)
    requests = pd.DataFrame(
        {"customer_id": sample["customer_id"], "bundle_id": sample["bundle_id"], "time": sample["offer_time"]}
    ).reset_index(drop=True)
    ctx = context_features(builder, tables, requests)
    market = None
    groups = pd.Series("all customers", index=requests.index)
    if truth_dir is not None:
        from pricing.simulator import load_market

        market = load_market(truth_dir)
        groups = requests["customer_id"].map(market.customer_types()).fillna("unknown").reset_index(drop=True)
    list_sum = ctx["list_sum"].to_numpy(dtype=np.float64)
    cost_sum = ctx["cost_sum"].to_numpy(dtype=np.float64)
    frames = []
    for f in np.linspace(0.0, 1.0, grid_points):
        price = cost_sum + f * (list_sum - cost_sum)
        X = assemble(ctx, price_features(ctx, price), builder)
        part = pd.DataFrame(
            {
                "bundle_id": requests["bundle_id"].to_numpy(),
                "group": groups.to_numpy(),
                "price_rel": price / list_sum,
                "price": price,
                "p_model": model.predict_proba(X),
            }
        )
        if market is not None:
            from pricing.simulator import bundle_index, customer_index, true_accept_prob

            part["p_true"] = true_accept_prob(
                market,
                customer_index(market, requests["customer_id"].to_numpy()),
                bundle_index(market, requests["bundle_id"].to_numpy()),
                price,
                requests["time"],
            )
        frames.append(part)
    long = pd.concat(frames, ignore_index=True)
    long["step"] = np.repeat(np.arange(grid_points), len(requests))
    agg = {"price_rel": "mean", "price": "mean", "p_model": "mean"}
    if "p_true" in long:
        agg["p_true"] = "mean"
    return long.groupby(["bundle_id", "group", "step"], as_index=False).agg(agg).drop(columns="step")
