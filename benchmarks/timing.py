"""Interleaved timing: every variant runs once per round, rounds repeat, medians win.

A sample of a fast variant is a batch of calls lasting at least `MIN_SAMPLE_S`
(the mean per call), so that a sub-millisecond forward is not measured against
the timer's and the cold cache's noise; the garbage collector runs before each
sample, not inside it.

The clock is the calling thread's CPU time: the benchmarks run torch on one
thread (this one), and on a shared virtual machine wall-clock medians swing by
±20% from run to run with other tenants' load (steal time), which this clock
does not count. Work on other threads (a GPU's, torch's own pools) would not be
counted either: `gpu.py` times with the wall clock and synchronisations."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

MIN_SAMPLE_S = 0.02


def interleaved(variants: dict[str, Callable[[], object]], rounds: int, warmup: int = 2,
                budget_s: float = 60.0) -> dict[str, float]:  # fmt: skip
    """Median seconds per call of each variant, run round-robin so that drift (thermal,
    other load) hits all alike. A variant slower than `budget_s / rounds` gets fewer rounds."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    batch: dict[str, int] = {}
    for name, fn in variants.items():
        for _ in range(warmup):
            times[name].append(_sample(fn, 1))
        batch[name] = max(1, int(MIN_SAMPLE_S / max(times[name][-1], 1e-9)))
        times[name] = times[name][-1:]  # keep the last warm-up as a first estimate
    for _ in range(rounds):
        for name, fn in variants.items():
            if len(times[name]) > 2 and sum(times[name]) * batch[name] > budget_s:
                continue
            times[name].append(_sample(fn, batch[name]))
    return {name: statistics.median(ts[1:] if len(ts) > 2 else ts) for name, ts in times.items()}


def _sample(fn: Callable[[], object], number: int) -> float:
    """Mean seconds per call over `number` back-to-back calls."""
    gc.collect()
    start = time.thread_time()
    for _ in range(number):
        fn()
    return (time.thread_time() - start) / number
