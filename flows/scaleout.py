"""Scale-out switch for the flows: which Prefect task runner scores the price ladders (docs/scaleout.md).

``scaleout.engine: local`` (default): nothing changes, the price book is scored in the flow's process.
``scaleout.engine: dask``: the price flow starts a prefect-dask ``DaskTaskRunner`` for the scoring step,
connected to ``scaleout.scheduler_address`` or to a new ``LocalCluster``, and maps one ``score-chunk``
task per ``scaleout.score_chunk_rows`` context rows over it. The choice is made at run time from the
config, so the CLI, the pipeline and deployments all follow it without another flow definition.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pricing.config import Config, ScaleoutConfig
from pricing.distributed import ChunkedScorer, local_cluster_kwargs


def dask_task_runner(cfg: ScaleoutConfig) -> Any:
    """The ``prefect_dask.DaskTaskRunner`` for ``cfg``: on the scheduler address, or a temporary
    ``distributed.LocalCluster`` (worker processes) torn down when the runner exits."""
    from prefect_dask import DaskTaskRunner

    if cfg.scheduler_address:
        return DaskTaskRunner(address=cfg.scheduler_address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=local_cluster_kwargs(cfg))


def describe(cfg: ScaleoutConfig, scorer: ChunkedScorer | None = None) -> dict[str, Any]:
    """What the manifest records about where the scoring ran (and in how many chunk tasks)."""
    if cfg.engine == "local":
        return {"engine": "local"}
    where = cfg.scheduler_address or f"LocalCluster({cfg.n_workers} x {cfg.threads_per_worker} threads)"
    out: dict[str, Any] = {"engine": "dask", "cluster": where, "score_chunk_rows": cfg.score_chunk_rows}
    if scorer is not None:
        out["chunks"] = scorer.chunks_scored
    return out


@contextmanager
def price_scorer(config: Config) -> Iterator[ChunkedScorer | None]:
    """The ``scorer=`` for :func:`pricing.pricebook.build_price_book` under ``config.scaleout``.

    ``engine: local`` yields None (``score_prices`` in this process, as before). ``engine: dask`` starts
    the Dask task runner (the cluster connection is made on the first chunk), yields a
    :class:`~pricing.distributed.ChunkedScorer` mapping ``score-chunk`` tasks on it, and shuts the
    runner (and a LocalCluster it started) down on exit.
    """
    from tasks.price import runner_chunk_mapper

    cfg = config.scaleout
    if cfg.engine == "local":
        yield None
        return
    with dask_task_runner(cfg) as runner:
        yield ChunkedScorer(runner_chunk_mapper(runner), cfg.score_chunk_rows)
