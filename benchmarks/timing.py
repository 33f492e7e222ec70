"""Interleaved timing: every variant runs once per round, rounds repeat, medians win."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable


def interleaved(variants: dict[str, Callable[[], object]], rounds: int, warmup: int = 2,
                budget_s: float = 60.0) -> dict[str, float]:  # fmt: skip
    """Median seconds per call of each variant, run round-robin so that drift (thermal,
    other load) hits all alike. A variant slower than `budget_s / rounds` gets fewer rounds."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for name, fn in variants.items():
        for _ in range(warmup):
            times[name].append(_once(fn))
        times[name] = times[name][-1:]  # keep the last warm-up as a first estimate
    for _ in range(rounds):
        for name, fn in variants.items():
            if len(times[name]) > 2 and sum(times[name]) > budget_s:
                continue
            times[name].append(_once(fn))
    return {name: statistics.median(ts[1:] if len(ts) > 2 else ts) for name, ts in times.items()}


def _once(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
