"""Norms of many parameters (or their gradients) at once, and the size of the
optimizer's update: what a sampled step measures per parameter.

On the CPU a model's small tensors are measured together: one `torch.cat` into
a flat buffer and segmented numpy reductions (`reduceat`), since a call per
tensor costs more than the arithmetic (~2 us a tensor to even reach its
values from Python here); large tensors get their own BLAS dot. Elsewhere,
`torch._foreach_norm` keeps everything on the device; sharded DTensors are
reduced across ranks (see `sharded`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from ..tensor_stats import as_numpy
from .sharded import global_norms, is_distributed_tensor

SMALL = 2**16  # tensors up to this many elements share one buffer
CHUNK = 2**22  # the buffer's most elements at a time (16 MiB of float32)
_PLAIN = (torch.Tensor, torch.nn.Parameter)  # not a subclass: a DTensor or a wrapper has no numpy view


def norms(tensors: list[torch.Tensor], both: bool = False) -> list[float] | torch.Tensor:
    """The 2-norm of every tensor (then, with `both`, the largest |value| of every
    tensor): floats on the CPU, else one float64 vector on the device. A sparse
    tensor (an `Embedding(sparse=True)` gradient) is measured by its stored values."""
    tensors = [t.coalesce().values() if t.is_sparse else t for t in tensors]
    if any(is_distributed_tensor(t) for t in tensors):  # FSDP2 shards: reduced across ranks
        return global_norms(tensors, both)
    if on_cpu(tensors):
        return cpu_norms(tensors, both)
    orders = (2.0, math.inf) if both else (2.0,)
    if len({(t.device, t.dtype) for t in tensors}) == 1:
        return torch.cat([torch.stack(torch._foreach_norm(tensors, o)).to(torch.float64) for o in orders])
    device = tensors[0].device
    return torch.stack([torch.linalg.vector_norm(t, o).to(device, torch.float64) for o in orders for t in tensors])


def on_cpu(tensors: list[torch.Tensor]) -> bool:
    """Whether every tensor is a plain, dense floating-point CPU tensor (numpy measures those)."""
    return all(type(t) in _PLAIN and t.is_cpu and not t.is_sparse and t.is_floating_point() for t in tensors)


def cpu_norms(tensors: list[torch.Tensor], both: bool = False) -> list[float]:
    """`norms` of CPU tensors (see `on_cpu`): the small ones copied together, `CHUNK`
    elements at a time, and measured with segmented reductions; large ones one by one."""
    n = len(tensors)
    out, maxes = [0.0] * n, [0.0] * n
    batch: list[int] = []
    filled = 0
    for i, t in enumerate(tensors):
        size = t.numel()
        if size > SMALL:
            _one(_values(t), i, out, maxes, both)
        elif size:
            batch.append(i)
            filled += size
            if filled >= CHUNK:
                _copied_together(tensors, batch, out, maxes, both)
                batch, filled = [], 0
    _copied_together(tensors, batch, out, maxes, both)
    return out + maxes if both else out


def flat_norms(flat: np.ndarray, sizes: list[int]) -> list[float]:
    """The 2-norm of each consecutive segment of `flat` (one per size), reduced in
    place: small segments `CHUNK` elements at a time, large ones one by one."""
    out, unused = [0.0] * len(sizes), [0.0] * len(sizes)
    group: list[int] = []  # consecutive small segments
    start = end = 0
    for i, size in enumerate(sizes):
        if size > SMALL or end - start >= CHUNK:
            _segments(flat[start:end], group, [sizes[j] for j in group], out, unused, False)
            group, start = [], end
        if size > SMALL:
            _one(flat[end : end + size], i, out, unused, False)
            start = end + size
        elif size:
            group.append(i)
        end += size
    _segments(flat[start:end], group, [sizes[j] for j in group], out, unused, False)
    return out


def flat_copy(tensors: list[torch.Tensor]) -> np.ndarray:
    """One new flat float32/float64 array holding all the (CPU) tensors' values in order."""
    if not tensors:
        return np.empty(0, np.float32)
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])  # always a copy
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    return flat.numpy()


def _values(t: torch.Tensor) -> np.ndarray:
    """A flat numpy view of one CPU tensor (a float32 copy where numpy has no view of it)."""
    a = as_numpy(t)
    return a.reshape(-1) if a is not None else flat_copy([t])


def _one(flat: np.ndarray, i: int, out: list[float], maxes: list[float], both: bool) -> None:
    with np.errstate(all="ignore"):
        out[i] = norm_of(flat)
        if both:
            maxes[i] = float(np.abs(flat).max())


def _copied_together(tensors: list[torch.Tensor], batch: list[int], out: list[float], maxes: list[float],
                     both: bool) -> None:  # fmt: skip
    if batch:
        parts = [tensors[i] for i in batch]
        _segments(flat_copy(parts), batch, [t.numel() for t in parts], out, maxes, both)


def _segments(flat: np.ndarray, index: list[int], sizes: list[int], out: list[float], maxes: list[float],
              both: bool) -> None:  # fmt: skip
    """Norms (and largest |value|s) of the consecutive non-empty segments of `flat`
    with these sizes, into `out[index[j]]` (and `maxes`)."""
    if not index:
        return
    starts = _starts(tuple(sizes))
    with np.errstate(all="ignore"):
        squares = np.add.reduceat(np.square(flat), starts, dtype=np.float64)
        roots = np.sqrt(squares).tolist()
        peaks = np.maximum.reduceat(np.abs(flat), starts).tolist() if both else None
    for j, i in enumerate(index):
        # a float32 square past 3.4e38 overflows: that one in float64 (NaN and Inf stay as they are). One below
        # 1e-45 underflows, so changes under ~4e-23 an element read as 0 (a float64 look at every zero segment
        # would cost more than the norms: with a small learning rate most updates are exactly 0)
        out[i] = roots[j] if math.isfinite(roots[j]) else norm_of(flat[starts[j] : starts[j] + sizes[j]])
        if peaks is not None:
            maxes[i] = float(peaks[j])


@functools.lru_cache(maxsize=256)
def _starts(sizes: tuple[int, ...]) -> np.ndarray:
    """Segment starts for these sizes (a model's sizes repeat every sampled step)."""
    starts = np.cumsum((0, *sizes[:-1]))
    starts.flags.writeable = False
    return starts


def norm_of(a: np.ndarray) -> float:
    """The 2-norm of a flat array; in float64 where float32 squares overflow."""
    with np.errstate(over="ignore"):  # the overflow is handled here: no RuntimeWarning in the user's loop
        norm = math.sqrt(float(np.dot(a, a)))
    return norm if math.isfinite(norm) else float(np.linalg.norm(a.astype(np.float64)))


class Views:
    """Flat numpy views of CPU parameters, kept from one sampled step to the next: a
    parameter keeps its storage, so a view is made again only when the parameter's
    address or size changed (`p.data = ...`, a resize)."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[torch.Tensor, int, int, np.ndarray]] = {}

    def of(self, tensors: list[torch.Tensor]) -> list[np.ndarray] | None:
        """A flat view (or, for a non-contiguous tensor, a copy) of each tensor; None
        unless numpy can read every one."""
        out, kept = [], self._kept
        for t in tensors:
            hit = kept.get(id(t))
            if hit is None or hit[0] is not t or hit[1] != t.data_ptr() or hit[2] != t.numel():
                a = as_numpy(t)
                if a is None:
                    return None
                if not a.flags.c_contiguous:  # its reshape is a copy: made again each time
                    out.append(a.reshape(-1))
                    continue
                hit = kept[id(t)] = (t, t.data_ptr(), t.numel(), a.reshape(-1))
            out.append(hit[3])
        return out


class Snapshot:
    """Each parameter's values before the optimizer's step (one flat copy on the
    CPU, foreach copies elsewhere), to measure ||p_new - p_old|| after it."""

    def __init__(self, tensors: list[torch.Tensor], views: Views | None = None) -> None:
        self._copies: list[torch.Tensor] = []
        self._sizes: list[int] | None = None  # per parameter, when the copy is one flat CPU array
        self._flat = np.empty(0, np.float32)
        self._views = views or Views()
        arrays = self._views.of(tensors)
        if arrays is not None:
            self._sizes = [a.size for a in arrays]
            self._flat = np.concatenate(arrays) if arrays else self._flat
        else:
            self._copies = foreach(torch._foreach_mul, tensors, 1.0)  # one call copies them all

    def weight_norms(self) -> list[float] | torch.Tensor:
        if self._sizes is not None:
            return flat_norms(self._flat, self._sizes)
        return norms(self._copies)

    def update_norms(self, tensors: list[torch.Tensor]) -> list[float] | torch.Tensor:
        """||new - old|| per parameter (`tensors`: the same parameters, after the step)."""
        if self._sizes is None:
            diffs = foreach(torch._foreach_sub, tensors, self._copies)
            return global_norms(diffs) if any(is_distributed_tensor(t) for t in diffs) else norms(diffs)
        arrays = self._views.of(tensors)
        if arrays is None or [a.size for a in arrays] != self._sizes:  # moved or resized by step(): no ratio
            return [math.nan] * len(tensors)
        new = np.concatenate(arrays) if arrays else self._flat
        with np.errstate(all="ignore"):
            np.subtract(new, self._flat, out=new)
        return flat_norms(new, self._sizes)

    def release(self) -> None:
        self._copies, self._flat = [], np.empty(0, np.float32)


def foreach(op: Any, *args: Any) -> list[torch.Tensor]:
    """A `torch._foreach_*` op, or its loop where the tensors sit on several devices."""
    first = args[0]
    if len({(t.device, t.dtype) for t in first}) == 1:
        return list(op(*args))
    single = getattr(torch, op.__name__.removeprefix("_foreach_"))
    rest = args[1:]
    return [single(t, *(r[i] if isinstance(r, list) else r for r in rest)) for i, t in enumerate(first)]
