"""Prefect tasks for pricing: thin wrappers around :mod:`pricing.pricebook` and :mod:`pricing.tracking`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner
from prefect.utilities.annotations import unmapped

from pricing import pricebook as pb
from pricing.config import Config
from pricing.distributed import ChunkMapper
from pricing.scoring import score_prices
from tasks.common import run_logger


@task(name="load-model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3)
def load_model(config: Config, alias: str | None, version: str | None) -> Any:
    from pricing import tracking

    tracking.configure(config)
    loaded = tracking.load_model(config.model.registered_model_name, alias=alias, version=version)
    run_logger().info("pricing with %s version %s (%s)", loaded.name, loaded.version, alias or "pinned version")
    return loaded


@task(name="read-current-price-book", cache_policy=NO_CACHE)
def read_current(out_dir: str) -> pb.PriceBook | None:
    try:
        book = pb.read_price_book(out_dir)
    except FileNotFoundError:
        return None
    run_logger().info("current price book found in %s: max-change rule applies", out_dir)
    return book


@task(name="optimize-prices", cache_policy=NO_CACHE)
def optimize(
    tables: dict[str, pd.DataFrame],
    loaded: Any,
    config: Config,
    current: pb.PriceBook | None,
    scorer: Callable[..., np.ndarray] | None = None,
) -> pb.PriceBook:
    """``scorer``: None scores in this process; a :class:`pricing.distributed.ChunkedScorer` over
    :func:`runner_chunk_mapper` fans the ladder scoring out (``flows/scaleout.py``)."""
    logger = run_logger()
    return pb.build_price_book(tables, loaded.model, loaded.builder, config, current, progress=logger.info,
                               scorer=scorer)


@task(name="score-chunk", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def score_chunk(model: Any, builder: Any, ctx: pd.DataFrame, prices: np.ndarray) -> np.ndarray:
    """Acceptance of one chunk of context rows along their prices (:func:`pricing.scoring.score_prices`)."""
    return score_prices(model, builder, ctx, prices)


def runner_chunk_mapper(runner: TaskRunner) -> ChunkMapper:
    """A chunk mapper (:class:`pricing.distributed.ChunkedScorer`) that maps :func:`score_chunk` over
    the chunks on a started Prefect task runner: one task run per chunk, children of the flow run.

    On a ``DaskTaskRunner`` the model and the feature builder are scattered to every worker once per
    (model, builder) pair (``client.scatter(broadcast=True)``) and the tasks receive the scattered
    futures, which Dask resolves on the worker; other runners get the objects themselves.
    """
    from prefect_dask import DaskTaskRunner

    cache: dict[tuple[int, int], tuple[Any, Any, Any, Any]] = {}

    def mapper(model: Any, builder: Any, ctxs: Sequence[pd.DataFrame],
               prices: Sequence[np.ndarray]) -> list[np.ndarray]:
        key = (id(model), id(builder))
        if key not in cache:  # the objects stay referenced by the cache, so their ids stay theirs
            shared: tuple[Any, Any] = (model, builder)
            if isinstance(runner, DaskTaskRunner):
                m, b = runner.client.scatter([model, builder], broadcast=True, hash=False)
                shared = (m, b)
            cache.clear()
            cache[key] = (model, builder, *shared)
        _, _, m, b = cache[key]
        futures = runner.map(
            score_chunk,
            parameters={"model": unmapped(m), "builder": unmapped(b), "ctx": list(ctxs), "prices": list(prices)},
        )
        return [f.result() for f in futures]

    return mapper


@task(name="exploration-prices", cache_policy=NO_CACHE)
def explore(tables: dict[str, pd.DataFrame], config: Config) -> pb.PriceBook:
    run_logger().warning("no offers log: publishing an exploration price book (randomized prices within the rules)")
    return pb.exploration_price_book(tables, config)


@task(name="publish-price-book", cache_policy=NO_CACHE, retries=1)
def publish(book: pb.PriceBook, out_dir: str, config: Config, log_to_mlflow: bool = True) -> dict[str, Any]:
    path = book.write(out_dir)
    info: dict[str, Any] = {"out_dir": str(path)}
    if log_to_mlflow:
        import mlflow

        from pricing import tracking

        tracking.configure(config)
        with mlflow.start_run(run_name=f"price-book-{book.manifest.get('mode')}") as run:
            mlflow.set_tags({k: str(v) for k, v in book.manifest.items() if isinstance(v, str | int | float)})
            seg = book.manifest.get("segment_solver") or {}
            for k in ("expected_profit", "profit_low", "profit_high", "mip_gap", "solve_time_s"):
                if isinstance(seg.get(k), int | float):
                    mlflow.log_metric(f"segment_{k}", float(seg[k]))
            mlflow.log_artifacts(str(path), artifact_path="price_book")
            info["mlflow_run_id"] = run.info.run_id
    rows = book.bundle_prices.head(200).round(4).astype(str).to_dict(orient="records")
    create_table_artifact(rows, key="price-book", description=f"{book.manifest.get('mode')} price book (first 200 rows)")
    create_markdown_artifact(price_book_markdown(book, str(path)), key="price-book-summary")
    run_logger().info("price book written to %s", path)
    return info


def price_book_markdown(book: pb.PriceBook, path: str) -> str:
    m = book.manifest
    lines = [f"# Price book ({m.get('mode')})", "", f"- folder: `{path}`", f"- priced for: {m.get('priced_for', '')}"]
    if m.get("mode") == "exploration":
        lines.append(f"- **{m.get('note')}**")
    seg = m.get("segment_solver") or {}
    if seg:
        lines.append(
            f"- segment MILP: {seg.get('status')} ({seg.get('source')}), gap {seg.get('mip_gap')}, "
            f"expected profit {seg.get('expected_profit', 0):,.0f} [{seg.get('profit_low', 0):,.0f}, "
            f"{seg.get('profit_high', 0):,.0f}]"
        )
    lines += [f"- bundles x segments: {len(book.bundle_prices):,}; personal offers: {len(book.customer_offers):,}",
              f"- rule check: {m.get('rule_check')}"]
    return "\n".join(lines)
