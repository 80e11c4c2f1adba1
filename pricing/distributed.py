"""Scale-out on Dask, the pure part: scoring price ladders in chunks of rows, and the Dask client.

No Prefect here (the Prefect side, tasks mapped over the chunks on a ``DaskTaskRunner``, lives in
``tasks/price.py`` and ``flows/scaleout.py``). See docs/scaleout.md.

:class:`ChunkedScorer` has the signature of :func:`pricing.scoring.score_prices` and can be passed as
``scorer=`` to :func:`pricing.pricebook.build_price_book`: it splits the context rows into chunks of
``chunk_rows``, hands them to a *chunk mapper* (which scores every chunk with ``score_prices``,
wherever it likes) and stitches the results back in row order. Each row's acceptance depends on that
row alone, so the result is exactly the one ``score_prices`` gives on the whole frame.
:func:`dask_chunk_mapper` is a mapper that runs the chunks on a ``distributed.Client``, with the model
and feature builder sent to the workers once (``scatter(broadcast=True)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from pricing.config import ScaleoutConfig
from pricing.scoring import score_prices

#: ``(model, builder, context chunks, price chunks) -> acceptance chunks`` (same order, same shapes)
ChunkMapper = Callable[[Any, Any, Sequence[pd.DataFrame], Sequence[np.ndarray]], Sequence[np.ndarray]]


def row_chunks(n: int, chunk_rows: int) -> list[slice]:
    """Consecutive slices of at most ``chunk_rows`` rows covering ``range(n)`` (none when n == 0)."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    return [slice(s, min(s + chunk_rows, n)) for s in range(0, n, chunk_rows)]


def _as_price_matrix(prices: Any, n_rows: int) -> np.ndarray:
    p = np.asarray(prices, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"prices must be 1-D or [n_rows, n_prices], got shape {p.shape}")
    if p.shape[0] != n_rows:
        raise ValueError(f"prices has {p.shape[0]} rows for {n_rows} contexts")
    return p


class ChunkedScorer:
    """A drop-in for :func:`pricing.scoring.score_prices` that scores chunks of rows through ``mapper``.

    ``mapper`` receives the model, the builder and the chunks, and must return one
    ``[chunk rows, n_prices]`` array per chunk, in order; anything else is an error (a lost or
    reordered chunk would silently misprice customers). ``chunks_scored`` counts the chunks handed out.
    """

    def __init__(self, mapper: ChunkMapper, chunk_rows: int) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        self.mapper = mapper
        self.chunk_rows = chunk_rows
        self.chunks_scored = 0

    def __call__(self, model: Any, builder: Any, ctx: pd.DataFrame, prices: np.ndarray) -> np.ndarray:
        p = _as_price_matrix(prices, len(ctx))
        n, L = p.shape
        if n == 0:
            return np.full((0, L), np.nan)
        slices = row_chunks(n, self.chunk_rows)
        parts = list(self.mapper(model, builder, [ctx.iloc[s] for s in slices], [p[s] for s in slices]))
        if len(parts) != len(slices):
            raise RuntimeError(f"the chunk mapper returned {len(parts)} results for {len(slices)} chunks")
        out = np.empty((n, L))
        for s, part in zip(slices, parts, strict=True):
            a = np.asarray(part, dtype=np.float64)
            if a.shape != (s.stop - s.start, L):
                raise RuntimeError(
                    f"the chunk of rows {s.start}..{s.stop - 1} came back with shape {a.shape}, "
                    f"expected {(s.stop - s.start, L)}"
                )
            out[s] = a
        self.chunks_scored += len(slices)
        return out


def local_chunk_mapper(model: Any, builder: Any, ctxs: Sequence[pd.DataFrame],
                       prices: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Scores the chunks one after the other in this process (reference and tests)."""
    return [score_prices(model, builder, c, p) for c, p in zip(ctxs, prices, strict=True)]


def dask_chunk_mapper(client: Any) -> ChunkMapper:
    """A mapper scoring the chunks on the workers of ``client`` (a ``distributed.Client``).

    The model and the feature builder are scattered to every worker once per (model, builder) pair
    and reused by later calls; each chunk is one ``score_prices`` call on a worker.
    """
    cache: dict[tuple[int, int], tuple[Any, Any, Any, Any]] = {}

    def mapper(model: Any, builder: Any, ctxs: Sequence[pd.DataFrame],
               prices: Sequence[np.ndarray]) -> list[np.ndarray]:
        key = (id(model), id(builder))
        if key not in cache:  # the objects are kept in the cache, so their ids stay theirs
            m, b = client.scatter([model, builder], broadcast=True, hash=False)
            cache.clear()
            cache[key] = (model, builder, m, b)
        _, _, m, b = cache[key]
        futures = [client.submit(score_prices, m, b, c, p, pure=False) for c, p in zip(ctxs, prices, strict=True)]
        return client.gather(futures)

    return mapper


@contextmanager
def dask_client(cfg: ScaleoutConfig) -> Iterator[Any]:
    """A ``distributed.Client`` on ``cfg.scheduler_address``, or on a new ``LocalCluster`` of
    ``cfg.n_workers`` worker processes x ``cfg.threads_per_worker`` threads (closed on exit).

    Worker processes (not threads): LightGBM's distributed training needs one process per worker.
    """
    from distributed import Client, LocalCluster

    if cfg.scheduler_address:
        try:
            client = Client(cfg.scheduler_address, timeout="30s")
        except OSError as e:
            raise ConnectionError(
                f"cannot reach the Dask scheduler at scaleout.scheduler_address={cfg.scheduler_address!r}: {e}. "
                "Start it (dask scheduler; dask worker <address>) or set scheduler_address: null for a LocalCluster."
            ) from e
        with client:
            yield client
        return
    with LocalCluster(**local_cluster_kwargs(cfg)) as cluster, Client(cluster) as client:
        yield client


def local_cluster_kwargs(cfg: ScaleoutConfig) -> dict[str, Any]:
    """Keyword arguments of the ``distributed.LocalCluster`` started when no scheduler address is set."""
    return {
        "n_workers": cfg.n_workers,
        "threads_per_worker": cfg.threads_per_worker,
        "processes": True,
        "dashboard_address": None,
    }
