"""On a CUDA device: the stats trace with no host synchronisation per layer.

`python -m benchmarks.gpu` traces the conv stack and the ResNet-like CNN on
`cuda`, counting the synchronising calls torch reports while the forward runs
(`torch.cuda.set_sync_debug_mode("warn")`), and times the trace against the
plain forward. Prints Markdown; exits 2 when no CUDA device is present.
"""

from __future__ import annotations

import sys
import warnings

import torch

import layerlens as ll

from .models import CASES
from .timing import interleaved


def synchronisations(fn: object) -> int:
    """How many synchronising CUDA calls `fn()` made (torch's sync debug mode)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()  # type: ignore[operator]
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def _row(name: str, model: torch.nn.Module, x: torch.Tensor) -> str:
    def plain() -> None:
        with torch.no_grad():
            model(x)
        torch.cuda.synchronize()

    def traced() -> None:
        ll.trace(model, x)
        torch.cuda.synchronize()

    calls = len(ll.trace(model, x))
    syncs = synchronisations(lambda: ll.trace(model, x))
    m = interleaved({"plain": plain, "stats": traced}, 7)
    return f"| {name} | {calls} | {syncs} | {m['plain'] * 1e3:.2f} ms | x{m['stats'] / m['plain']:.2f} |"


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing measured")
        return 2
    rows = ["| model | module calls | syncs in the trace | plain forward | stats trace |", "|---|---|---|---|---|"]
    for case in (CASES[1], CASES[5]):
        model, x = case.build()
        rows.append(_row(case.short, model.cuda(), x.cuda()))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
