"""Benchmark of the feature pipeline: fit_feature_builder + offer_training_frame.

    python benchmarks/bench_features.py --size bench                 # simulate (cached) and time
    python benchmarks/bench_features.py --data DIR                   # raw tables or an ingest snapshot

Tables are typed as the pipeline sees them (``pricing.ingest.prepare_table``; an ingest snapshot is
read with ``load_snapshot``) before the clock starts. Prints wall time, CPU time (user + system) and
memory: peak RSS sampled during the feature phase, the RSS before it, and the process peak.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Self

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pricing.config import load_config
from pricing.contract import TABLE_ORDER
from pricing.features import fit_feature_builder, offer_training_frame
from pricing.ingest import ROW_ID, SNAPSHOT_SUMMARY, load_snapshot, prepare_table

GiB = 1024**3


class PeakRSS:
    """Samples this process's RSS in a thread (getrusage only knows the whole-process peak)."""

    def __init__(self, every_s: float = 0.02):
        self.proc = psutil.Process(os.getpid())
        self.every = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.every)

    def __enter__(self) -> Self:
        self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def load_tables(data: Path) -> dict:
    if (data / SNAPSHOT_SUMMARY).exists():
        return load_snapshot(data)
    cfg = load_config().ingest
    out = {}
    for table in TABLE_ORDER:
        prep = prepare_table(data, table, cfg)
        if prep is not None:
            out[table] = prep.typed.drop(columns=ROW_ID)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="default", choices=["tiny", "default", "bench"])
    ap.add_argument("--data", type=Path, default=None, help="simulated raw tables or an ingest snapshot")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cut-share", type=float, default=0.7,
                    help="builder cut-off: this quantile of the offer times (training data only)")
    args = ap.parse_args(argv)

    data = args.data
    if data is None:
        data = Path("work") / "bench" / f"sim-{args.size}-{args.seed}"
    if not any(data.glob("offers.*")) and not (data / SNAPSHOT_SUMMARY).exists():
        from pricing.simulator import simulate

        t0 = time.perf_counter()
        print(f"simulating {args.size} market into {data} ...", flush=True)
        simulate(data, size=args.size, seed=args.seed, fmt="parquet")
        print(f"  simulated in {time.perf_counter() - t0:.1f} s", flush=True)

    t0 = time.perf_counter()
    tables = load_tables(data)
    print(f"loaded and typed {data} in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{k} {len(v):,}" for k, v in tables.items()), flush=True)
    cfg = load_config().features
    cut = tables["offers"]["offer_time"].quantile(args.cut_share)

    rss_before = psutil.Process().memory_info().rss
    with PeakRSS() as mem:
        w0, c0 = time.perf_counter(), time.process_time()
        builder = fit_feature_builder(tables, cfg, before=cut)
        w1, c1 = time.perf_counter(), time.process_time()
        X, y, offer_time, offer_id = offer_training_frame(builder, tables)
        w2, c2 = time.perf_counter(), time.process_time()
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    print(f"fit_feature_builder : wall {w1 - w0:7.1f} s   cpu {c1 - c0:7.1f} s  "
          f"({len(builder.tokens)} tokens, {len(builder.pair_lift)} pair lifts)")
    print(f"offer_training_frame: wall {w2 - w1:7.1f} s   cpu {c2 - c1:7.1f} s  "
          f"(X {X.shape[0]:,} x {X.shape[1]}, {X.memory_usage(deep=False).sum() / GiB:.2f} GiB)")
    print(f"total               : wall {w2 - w0:7.1f} s   cpu {c2 - c0:7.1f} s")
    print(f"memory: RSS before features {rss_before / GiB:.2f} GiB, peak during features {mem.peak / GiB:.2f} GiB "
          f"(+{(mem.peak - rss_before) / GiB:.2f}), process peak {process_peak / GiB:.2f} GiB")
    print(f"positives {int(y.sum()):,} / {len(y):,}; offers {offer_time.min()} .. {offer_time.max()}; "
          f"ids {offer_id.iloc[0]} ..")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
