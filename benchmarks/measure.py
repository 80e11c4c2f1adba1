"""Measuring helpers for the benchmark scripts: wall time, CPU time and peak memory of a stage."""

from __future__ import annotations

import json
import os
import platform
import resource
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil


@dataclass
class Stage:
    name: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mib: float = 0.0  # highest resident memory of the process seen during the stage
    extra: dict = field(default_factory=dict)


class _PeakSampler(threading.Thread):
    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        self.proc = psutil.Process(os.getpid())
        self.interval = interval
        self.peak = self.proc.memory_info().rss
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_evt.set()
        self.join()
        return max(self.peak, self.proc.memory_info().rss)


class Recorder:
    """Collects stages; ``with rec.stage("name"):`` measures one."""

    def __init__(self) -> None:
        self.stages: list[Stage] = []

    @contextmanager
    def stage(self, name: str, **extra):
        sampler = _PeakSampler()
        sampler.start()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        st = Stage(name, extra=dict(extra))
        try:
            yield st
        finally:
            st.wall_s = time.perf_counter() - t0
            st.cpu_s = time.process_time() - cpu0
            st.peak_rss_mib = sampler.stop() / 2**20
            self.stages.append(st)
            print(f"  {name:<40} wall {st.wall_s:8.1f} s  cpu {st.cpu_s:8.1f} s  peak {st.peak_rss_mib:8.0f} MiB"
                  + (f"  {st.extra}" if st.extra else ""), flush=True)

    def table(self) -> str:
        lines = ["| stage | wall s | CPU s | peak RSS MiB | notes |", "|---|---:|---:|---:|---|"]
        for s in self.stages:
            notes = ", ".join(f"{k}={v}" for k, v in s.extra.items())
            lines.append(f"| {s.name} | {s.wall_s:.1f} | {s.cpu_s:.1f} | {s.peak_rss_mib:.0f} | {notes} |")
        return "\n".join(lines)

    def save(self, path: Path, **meta) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "max_rss_mib_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **meta,
            "stages": [asdict(s) for s in self.stages],
        }
        path.write_text(json.dumps(info, indent=2, default=str))
