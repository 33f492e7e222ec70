"""Memory of one trace, measured in a fresh process so earlier runs leave nothing
behind: the growth of peak RSS over a plain forward, Python-tracked peak
(tracemalloc, in a second trace: its bookkeeping would inflate the RSS), and the
bytes of values the trace keeps."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tracemalloc

import torch
from torch import nn

import layerlens as ll

from .models import CASES


def measure(index: int, values: str) -> dict[str, float]:
    model, x = CASES[index].build()
    ll.trace(nn.Linear(2, 2), torch.ones(1, 2), values=values)  # type: ignore[arg-type]  # first-use imports, not this model's
    gc.collect()
    _reset_peak_rss()
    with torch.no_grad():
        model(x)  # the forward's own peak is the baseline
    base = _peak_rss()
    t = ll.trace(model, x, values=values, max_bytes=2**34)  # type: ignore[arg-type]
    grown = _peak_rss() - base
    kept = {id(i.value): i.value.nbytes for r in t for i in (*r.inputs, *r.outputs) if i.value is not None}
    del t
    gc.collect()
    tracemalloc.start()  # after the RSS is read: tracemalloc's own bookkeeping would count in it
    ll.trace(model, x, values=values, max_bytes=2**34)  # type: ignore[arg-type]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"rss": grown, "tracemalloc": peak, "kept": sum(kept.values()), "plain_peak": base, "peak": base + grown}


def _reset_peak_rss() -> None:
    """Start the peak RSS afresh (Linux: writing 5 to clear_refs resets VmHWM), so that
    building the model and layerlens's first-use imports are not the baseline's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM belongs to the address space, so unlike
    `ru_maxrss` (kept across exec) it does not start at the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_in_subprocess(index: int, values: str) -> dict[str, float]:
    code = f"import json; from benchmarks.memory import measure; print(json.dumps(measure({index}, {values!r})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
