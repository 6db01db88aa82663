"""Timing shared by the benchmarks: the best of several runs after a warm-up."""

from __future__ import annotations

import time
from collections.abc import Callable


def best(run: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of `repeats` runs, after one warm-up run (caches, lazy loading)."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)
