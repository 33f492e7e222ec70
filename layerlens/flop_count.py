"""FLOPs per module call, counted by torch's own formulas (`torch.utils.flop_counter`).

`trace(..., flops=True)` runs the forward under `FlopCount`, a dispatch mode
that, like torch's `FlopCounterMode`, decomposes what has no formula and asks
the formula of what has one. Each op's count goes to the innermost module call
running it; `per_call` then adds every call's count into its ancestors, so a
block's figure includes its layers' and one reused module gets one per call
(where `FlopCounterMode` merges all calls of a module under its name).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

_aten = torch.ops.aten
# Metadata queries, which torch's counter passes on untouched too.
_QUERIES = {
    getattr(getattr(_aten, name), overload)
    for name, overload in (
        ("is_contiguous", "default"), ("is_contiguous", "memory_format"), ("is_strides_like_format", "default"),
        ("is_non_overlapping_and_dense", "default"), ("size", "default"), ("sym_size", "default"),
        ("stride", "default"), ("sym_stride", "default"), ("storage_offset", "default"),
        ("sym_storage_offset", "default"), ("numel", "default"), ("sym_numel", "default"), ("dim", "default"),
    )
    if hasattr(_aten, name) and hasattr(getattr(_aten, name), overload)
}  # fmt: skip


class FlopCount(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Counts the FLOPs of the ops run while it is on, by the call on top of `stack`."""

    def __init__(self, stack: Sequence[int]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._stack = stack
        self.own: dict[int, int] = {}  # call index -> FLOPs of the ops it ran itself (-1: outside any call)
        self.failed: set[str] = set()  # ops whose formula raised: left out of the counts
        self.uncounted: set[str] = set()  # recurrent kernels, which torch's formulas do not cover

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _QUERIES or isinstance(func, torch._ops.HigherOrderOperator):
            return NotImplemented
        formula = flop_registry.get(func._overloadpacket)
        if formula is None:
            if func is not torch.ops.prim.device.default:
                with self:
                    done = func.decompose(*args, **kwargs)
                if done is not NotImplemented:
                    return done
            if _RECURRENT.search(func._overloadpacket.__name__):
                self.uncounted.add(f"aten.{func._overloadpacket.__name__}")
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        try:
            count = int(formula(*args, **kwargs, out_val=out))
        except Exception:  # a formula that does not know these arguments: no count, never a broken forward
            self.failed.add(str(func._overloadpacket))
            return out
        k = self._stack[-1] if self._stack else -1
        self.own[k] = self.own.get(k, 0) + count
        return out

    def notes(self) -> list[str]:
        """What the counts leave out, for the trace's warnings."""
        notes = []
        if self.uncounted:
            notes.append(
                f"flops: torch.utils.flop_counter has no formula for {', '.join(sorted(self.uncounted))}: "
                "the recurrent layers that ran it count 0 FLOPs"
            )
        if self.failed:
            notes.append(f"flops: the formula for {', '.join(sorted(self.failed))} raised: those ops count 0 FLOPs")
        return notes


_RECURRENT = re.compile(r"lstm|gru|rnn", re.IGNORECASE)


def per_call(own: dict[int, int], parents: Sequence[int]) -> list[int]:
    """Each call's FLOPs with those of the calls inside it (parents[k] < k, -1 for none)."""
    total = [own.get(k, 0) for k in range(len(parents))]
    for k in range(len(parents) - 1, -1, -1):
        if parents[k] >= 0:
            total[parents[k]] += total[k]
    return total


def flops_text(n: int) -> str:
    """`n` with an SI suffix: 1.23 GFLOPs is "1.23 G"."""
    for size, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= size:
            return f"{n / size:.3g} {suffix}"
    return str(n)
