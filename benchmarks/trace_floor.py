"""The floor under a trace's cost: what any tracer keeping the API's promises must do.

Per module call a trace must at least record the call (a wrapper that appends
the shapes), know the model's modules (one `named_modules()` walk), snapshot
and check what a forward may change (each module's flag and tables), and make
one record with its input and output descriptions. Each part is timed alone
here, with no inspector, statistic or check, as a share of the plain forward
(thread CPU time, interleaved, medians), so that a target can be held against
the sum: `python -m benchmarks.trace_floor "2,000-layer MLP"`.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from layerlens.records import LayerRecord, TensorInfo

from .models import CASES


def floors(model: nn.Module, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The plain forward and each bare part of a trace of it, as callables."""
    mods = list(model.modules())
    names = [n for n, _ in model.named_modules()]

    def plain() -> None:
        with torch.no_grad():
            model(x)

    def snapshot() -> None:
        saved = [(m, m.training, tuple(m._parameters.values()), tuple(m._modules.values())) for m in mods]
        for m, flag, *_ in saved:
            if m.training is not flag:
                m.training = flag

    def recorder() -> list[Any]:
        calls: list[Any] = []
        for m in mods:
            m.__dict__["_call_impl"] = _appending(m._call_impl, m, calls)
        try:
            plain()
        finally:
            for m in mods:
                m.__dict__.pop("_call_impl", None)
        return calls

    def records() -> list[LayerRecord]:
        made = []
        for n in names:
            ins, outs = (TensorInfo("0", (1,), "float32", "cpu"),), (TensorInfo("", (1,), "float32", "cpu"),)
            made.append(LayerRecord(n, "Module", n.count(".") + 1, 0, ins, outs, 0, 0, {}, []))
        return made

    return {
        "plain forward": plain,
        "recorder appending shapes (with the forward)": recorder,
        "named_modules() walk": lambda: list(model.named_modules()),
        "flags and tables snapshot and check": snapshot,
        "one bare record per call": records,
    }


def _appending(call: Callable[..., Any], module: nn.Module, calls: list[Any]) -> Callable[..., Any]:
    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append((module, [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]))
        out = call(*args, **kwargs)
        calls.append(tuple(out.shape) if isinstance(out, torch.Tensor) else None)
        return out

    return recording


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    short = argv[0] if argv else "2,000-layer MLP"
    case = next((c for c in CASES if c.short == short), None)
    if case is None:
        raise SystemExit(f"unknown model {short!r}; choose from {', '.join(c.short for c in CASES)}")
    model, x = case.build()
    model.eval()
    parts = floors(model, x)
    times: dict[str, list[float]] = {k: [] for k in parts}
    for fn in parts.values():
        fn()
    for _ in range(9):
        for name, fn in parts.items():
            gc.collect()
            start = time.thread_time()
            fn()
            times[name].append(time.thread_time() - start)
    base = statistics.median(times["plain forward"])
    total = 0.0
    for name, ts in times.items():
        share = statistics.median(ts) / base
        total += share if name != "plain forward" else 0.0
        print(f"{name:46s} {statistics.median(ts) * 1e3:8.2f} ms  x{share:.3f}")
    print(f"{'floor of a values=None trace (the sum)':46s} {'':8s}     x{total:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
