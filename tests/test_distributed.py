"""Scale-out on Dask (issue 6): chunked scoring on a local Dask cluster equals ``score_prices``; the
pipeline with ``scaleout.engine: dask`` (scoring as Prefect tasks on a DaskTaskRunner, training with
LightGBM's Dask interface) gives the same price book as the single-process path with the same model;
Dask training is as good as local training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pricing.config import Config, ScaleoutConfig
from pricing.distributed import ChunkedScorer, dask_chunk_mapper, local_chunk_mapper, row_chunks
from pricing.model import check_monotone, early_stopping_iteration, train_model, validation_log_loss_curve
from tests.conftest import flow_config
from tests.test_model import PRICE_FEATURES, fast_cfg, make_offers, price_cols, price_grid


@pytest.fixture(scope="module")
def dask_cluster():
    """Two single-threaded worker processes (LightGBM's distributed training needs one process each)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


# ---- pure helpers ------------------------------------------------------------------------------------


def test_row_chunks_cover_every_row_once():
    assert row_chunks(0, 5) == []
    assert row_chunks(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert row_chunks(3, 100) == [slice(0, 3)]
    with pytest.raises(ValueError, match="chunk_rows"):
        row_chunks(3, 0)


def test_chunked_scorer_rejects_lost_or_misshapen_chunks():
    ctx = pd.DataFrame({"a": range(5)})
    prices = np.ones((5, 2))
    with pytest.raises(RuntimeError, match="2 results for 3 chunks"):
        ChunkedScorer(lambda m, b, c, p: [np.zeros((2, 2))] * 2, chunk_rows=2)(None, None, ctx, prices)
    with pytest.raises(RuntimeError, match="shape"):
        ChunkedScorer(lambda m, b, c, p: [np.zeros((len(x), 1)) for x in c], chunk_rows=2)(None, None, ctx, prices)
    with pytest.raises(ValueError, match="4 rows for 5 contexts"):
        ChunkedScorer(local_chunk_mapper, chunk_rows=2)(None, None, ctx, np.ones((4, 2)))


def test_dask_training_needs_the_dask_engine_and_the_tree_model():
    with pytest.raises(ValueError, match="train_on_dask needs scaleout.engine: dask"):
        ScaleoutConfig(train_on_dask=True)
    assert Config().scaleout.engine == "local"
    dask_training = {"engine": "dask", "train_on_dask": True}
    with pytest.raises(ValueError, match="needs model.price_response: trees"):
        Config.model_validate({"scaleout": dask_training})
    assert Config.model_validate({"scaleout": dask_training, "model": {"price_response": "trees"}}).scaleout.train_on_dask


def test_early_stopping_rule_replays_lightgbm_callback():
    """The rule applied after Dask training picks what LightGBM's early_stopping callback picked, on a
    curve computed from the booster's leaves that equals LightGBM's own evaluation."""
    X, y, t, _ = make_offers(n=8_000, seed=3)
    cfg = fast_cfg(early_stopping_rounds=15, refit_on_all=False)  # the curve of the split model's own trees
    r = train_model(X, y, t, PRICE_FEATURES, cfg)
    lgb_curve = r.learning_curve["valid_log_loss"].to_numpy()
    assert len(lgb_curve) > r.metrics["best_iteration"], "early stopping did stop before n_estimators"
    assert early_stopping_iteration(lgb_curve, cfg.early_stopping_rounds) == r.metrics["best_iteration"]
    va = r.splits["valid"]
    ours = validation_log_loss_curve(r.model.booster, X[va], np.asarray(y)[va], block_rows=500)
    assert len(ours) == r.model.booster.num_trees() == r.metrics["best_iteration"]
    np.testing.assert_allclose(ours, lgb_curve[: len(ours)], rtol=0, atol=1e-12)
    assert early_stopping_iteration([3.0, 2.0, 2.0, 2.0, 1.0], rounds=2) == 2  # ties are no improvement
    assert early_stopping_iteration([3.0, 2.0, 2.0, 1.0], rounds=2) == 4


# ---- on a local Dask cluster ------------------------------------------------------------------------


def test_dask_training_matches_local_training(dask_cluster):
    """DaskLGBMClassifier (data-parallel, 2 workers) on the same rows: monotone in price, and test AUC /
    log loss within 0.01 of the local model (the trees differ: histogram bins and bagging per worker)."""
    X, y, t, _ = make_offers()
    Xc = X.astype({c: "float32" for c in X.columns if c != "segment"})
    Xc["segment"] = X["segment"].cat.codes.astype("float32")
    cfg = fast_cfg(calibration="none")
    local = train_model(Xc, y, t, PRICE_FEATURES, cfg, categorical=["segment"])
    dask = train_model(Xc, y, t, PRICE_FEATURES, cfg, categorical=["segment"], dask_client=dask_cluster)
    m, d = local.metrics, dask.metrics
    assert abs(d["test_auc"] - m["test_auc"]) < 0.01, (d["test_auc"], m["test_auc"])
    assert abs(d["test_log_loss"] - m["test_log_loss"]) < 0.01, (d["test_log_loss"], m["test_log_loss"])
    assert d["test_auc"] > 0.75
    assert dask.model.categorical == ["segment"]
    # all rounds grown, the early-stopping rule applied afterwards, the booster cut to the best round
    assert len(dask.learning_curve) == cfg.n_estimators
    assert d["best_iteration"] == early_stopping_iteration(dask.learning_curve["valid_log_loss"],
                                                           cfg.early_stopping_rounds)
    assert dask.model.booster.num_trees() == d["best_iteration"] < cfg.n_estimators
    rows = Xc.sample(300, random_state=1)
    assert check_monotone(dask.model, rows, price_cols, price_grid(rows)).ok(1e-12)


# ---- the flows ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_and_local_books(tiny_market, tmp_path_factory, prefect_harness):
    """The pipeline with engine dask (LocalCluster, Dask training), then the single-process price flow
    with the model that run registered, on the same snapshot."""
    from flows.pipeline import pipeline_flow
    from flows.price import price_flow

    tmp = tmp_path_factory.mktemp("scaleout")
    (tmp / "dask").mkdir()
    (tmp / "local").mkdir()
    dask_cfg = Path(flow_config(tmp / "dask", "dask-test"))
    dask_cfg.write_text(  # LightGBM's Dask interface grows the tree model only
        dask_cfg.read_text().replace("model:\n", "model:\n  price_response: trees\n")
        + "scaleout:\n  engine: dask\n  n_workers: 2\n  score_chunk_rows: 700\n  train_on_dask: true\n"
    )
    local_cfg = flow_config(tmp / "local", "dask-test")
    run = pipeline_flow(data_dir=str(tiny_market), out_dir=str(tmp / "dask" / "book"), config_path=str(dask_cfg))
    local = price_flow(out_dir=str(tmp / "local" / "book"), snapshot_dir=run["ingest"]["snapshot_dir"],
                       config_path=local_cfg, model_alias=None, model_version=run["train"]["version"])
    return run, local, tmp / "dask" / "book", tmp / "local" / "book"


@pytest.mark.flow
def test_dask_engine_gives_the_same_price_book(dask_and_local_books):
    run, _local, dask_dir, local_dir = dask_and_local_books
    dm = json.loads((dask_dir / "manifest.json").read_text())
    lm = json.loads((local_dir / "manifest.json").read_text())
    assert dm["scoring"]["engine"] == "dask" and lm["scoring"] == {"engine": "local"}
    assert dm["model"]["version"] == lm["model"]["version"] == run["train"]["version"]

    def read(d: Path, name: str, keys: list[str]) -> pd.DataFrame:
        return pd.read_csv(d / name, dtype={k: str for k in keys}).sort_values(keys).reset_index(drop=True)

    keys = {"bundle_prices.csv": ["bundle_id", "segment_id"], "customer_offers.csv": ["customer_id", "bundle_id"],
            "customer_segments.csv": ["customer_id"]}
    for name, k in keys.items():
        a, b = read(dask_dir, name, k), read(local_dir, name, k)
        assert len(a) > 0 and a[k].equals(b[k]), name
        for col in a.columns.difference(k):
            if pd.api.types.is_float_dtype(a[col]):
                np.testing.assert_allclose(a[col], b[col], rtol=1e-9, atol=1e-9, err_msg=f"{name}:{col}")
            else:
                assert a[col].equals(b[col]), f"{name}:{col}"


@pytest.mark.flow
def test_dask_engine_scores_as_prefect_tasks_and_trains_on_dask(dask_and_local_books):
    import mlflow
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    run, _local, dask_dir, _ = dask_and_local_books
    flow_run_id = json.loads((dask_dir / "manifest.json").read_text())["prefect_flow_run_id"]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="score-chunk")),
        )
    chunks = json.loads((dask_dir / "manifest.json").read_text())["scoring"]["chunks"]
    assert chunks >= 2 and len(runs) == chunks, "one Prefect task run per scored chunk"
    assert all(r.state.is_completed() for r in runs), [r.state for r in runs]
    tags = mlflow.get_run(run["train"]["run_id"]).data.tags
    assert tags["training_engine"] == "dask"


@pytest.mark.flow
def test_chunked_dask_scorer_equals_score_prices(dask_and_local_books, dask_cluster):
    """Uneven chunks, NaN (no candidate) cells, a row with no price at all: the same array, bit for bit."""
    from pricing.features import context_features
    from pricing.ingest import load_snapshot
    from pricing.scoring import pricing_time, requests_for, score_prices
    from pricing.tracking import load_model

    run = dask_and_local_books[0]
    tables = load_snapshot(run["ingest"]["snapshot_dir"])
    loaded = load_model("dask-test", version=run["train"]["version"])
    customers = tables["customers"]["customer_id"].astype(str).to_numpy()[:40]
    bundles = tables["bundles"]["bundle_id"].astype(str).to_numpy()[:12]
    ctx = context_features(loaded.builder, tables, requests_for(customers, bundles, pricing_time(tables)))
    rng = np.random.default_rng(0)
    ls = ctx["list_sum"].to_numpy()[:, None]
    prices = ls * rng.uniform(0.5, 1.0, (len(ctx), 7))
    prices[rng.random(prices.shape) < 0.2] = np.nan
    prices[3] = np.nan
    expected = score_prices(loaded.model, loaded.builder, ctx, prices)
    scorer = ChunkedScorer(dask_chunk_mapper(dask_cluster), chunk_rows=37)
    got = scorer(loaded.model, loaded.builder, ctx, prices)
    np.testing.assert_array_equal(got, expected)
    again = scorer(loaded.model, loaded.builder, ctx.iloc[:50], prices[:50])  # model and builder reused
    np.testing.assert_array_equal(again, expected[:50])
    assert scorer.chunks_scored == len(row_chunks(len(ctx), 37)) + 2
    assert np.isnan(got[3]).all() and np.isfinite(got[~np.isnan(prices)]).all()
