"""Turn live tensors into `TensorInfo`: shapes always, statistics and copies on request.

Statistics (see `stats`) are computed on the tensor's own device when the
tensor is seen; off the CPU they stay there and `finalize` moves everything to
the host in one transfer per device, so a trace on a GPU does not synchronise
once per layer. Each distinct tensor (same object, same version counter) is
summarised once, however many layers it passes through.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Literal

import numpy as np
import torch

from .records import TensorInfo, TensorStats
from .tensor_stats import StatsBatch, array_stats, as_numpy, cpu_stats, device_reductions, host_stats, summarisable
from .value_arena import ValueArena

ValuesMode = Literal["stats", "full"] | None
DEFAULT_MAX_BYTES = 256 * 2**20  # the default of TraceOptions.max_bytes

_DTYPE_NAMES: dict[torch.dtype, str] = {}


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.float32` -> `"float32"`."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


class Deferred:
    """Handle of a device tensor waiting for the single host transfer."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class Staged:
    """Statistics still to come (a batch not yet reduced, reductions still on a
    device); setting `stats` fills in the infos made meanwhile (see `Capture.tensor`).
    A batch also sets `squares`, the sum of squares (a gradient's norm, squared)."""

    __slots__ = ("_stats", "squares", "waiting")

    def __init__(self) -> None:
        self._stats: TensorStats | None = None
        self.squares = math.nan
        self.waiting: list[TensorInfo] = []

    @property
    def stats(self) -> TensorStats | None:
        return self._stats

    @stats.setter
    def stats(self, value: TensorStats | None) -> None:
        self._stats = value
        for info in self.waiting:
            info.stats = value
        self.waiting = []


class _Pending(Staged):
    """Handles of one tensor's on-device reductions, resolved by `finalize` into `stats`."""

    __slots__ = ("counts", "numel", "vec")

    def __init__(self, vec: Deferred, counts: Deferred, numel: int) -> None:
        super().__init__()
        self.vec = vec
        self.counts = counts
        self.numel = numel


Stats = TensorStats | Staged | None


def resolved(stats: Stats) -> TensorStats | None:
    """The numbers behind a `Stats` handle (after `finalize`)."""
    return stats.stats if isinstance(stats, Staged) else stats


class Capture:
    """Captures tensors for one trace; call `finalize` once the forward is over."""

    def __init__(
        self,
        values: ValuesMode,
        max_bytes: int = DEFAULT_MAX_BYTES,
        sample: int | None = None,
        batch: bool | StatsBatch = False,
    ) -> None:
        self.values = values
        self.sample = sample  # see tensor_stats.cpu_stats: sampled mean/std/zeros for large tensors
        self.max_bytes = max_bytes
        self.bytes_kept = 0
        self._arena = ValueArena()
        self.warnings: list[str] = []
        self._deferred: list[torch.Tensor] = []
        self._resolved: list[np.ndarray] = []
        self._pending: list[_Pending] = []
        self._seen: dict[int, tuple[Any, ...]] = {}  # id -> (weakref, version, stats, value)
        self._names: dict[tuple[Any, ...], tuple[tuple[int, ...], str, str]] = {}  # see `info`
        # small tensors' stats in batches, resolved at `finalize` (or when the staging buffer is full);
        # a StatsBatch of the caller's keeps its grown buffer from one capture to the next (watch's sampled steps)
        self._batch = batch if isinstance(batch, StatsBatch) else StatsBatch() if batch else None

    # -- hot path -------------------------------------------------------------

    def take(self, path: str, t: torch.Tensor, where: str) -> tuple[Any, ...]:
        """One tensor seen at `where` (a layer name, for warnings), as the tuple
        `(path, shape, dtype, device, requires_grad, stats, value)`; `info` turns it
        into a `TensorInfo` once the trace is over."""
        try:  # a plain tuple: the collector stops tracking an entry of plain values (never one holding a Size)
            shape: Any = tuple(t.shape)
        except RuntimeError:  # nested tensors with ragged dimensions
            shape = ()
        if self.values is None:
            return (path, shape, t.dtype, t.device, t.requires_grad, None, None)
        seen = self._seen.get(id(t))
        if seen is None or seen[0]() is not t or seen[1] != t._version:
            value = self._copy(t, where) if self.values == "full" else None
            seen = self._remember(t, self._launch_stats(t), value)
        return (path, shape, t.dtype, t.device, t.requires_grad, seen[2], seen[3])

    def stats(self, t: torch.Tensor) -> Stats:
        """Only `t`'s statistics (a `Staged` handle until `finalize`), deduplicated
        as in `take`: for watch, which keeps numbers, not tensor descriptions."""
        seen = self._seen.get(id(t))
        if seen is None or seen[0]() is not t or seen[1] != t._version:
            seen = self._remember(t, self._launch_stats(t), None)
        return seen[2]  # type: ignore[no-any-return]

    def tensor(self, path: str, t: torch.Tensor, where: str) -> TensorInfo:
        """One tensor as a `TensorInfo` at once (statistics still pending on a device
        until `finalize`)."""
        entry = self.take(path, t, where)
        info = TensorInfo(path, plain_shape(entry[1]), dtype_name(entry[2]), _device_name(entry[3]), entry[4])
        stats = entry[5]
        if isinstance(stats, Staged):
            if stats.stats is not None:  # already resolved (a batch flushed when full)
                info.stats = stats.stats
            else:
                stats.waiting.append(info)
        else:
            info.stats = stats
        info.value = entry[6]
        return info

    def info(self, entry: tuple[Any, ...]) -> TensorInfo:
        """The `TensorInfo` of a `take` tuple, after `finalize` (shape, dtype and
        device names made once per distinct triple: a model repeats a few)."""
        stats = entry[5]
        if isinstance(stats, Staged):
            stats = stats.stats
        key = entry[1:4]
        try:
            names = self._names.get(key)
            hashable = True
        except TypeError:  # a symbolic (jagged) size does not hash
            names, hashable = None, False
        if names is None:
            names = (plain_shape(entry[1]), dtype_name(entry[2]), _device_name(entry[3]))
            if hashable:
                self._names[key] = names
        return TensorInfo(entry[0], names[0], names[1], names[2], entry[4], stats, entry[6])

    def defer(self, t: torch.Tensor) -> Deferred | float | list[float] | None:
        """A small tensor's host value: at once for a CPU tensor (reading it costs
        no sync); otherwise a handle, resolved by `finalize` in a single transfer."""
        if t.is_meta:
            return None
        if self._reads_are_free(t.device):
            values = t.detach().reshape(-1).tolist()
            return float(values[0]) if len(values) == 1 else [float(v) for v in values]
        return self._enqueue(t)

    @staticmethod
    def _reads_are_free(device: torch.device) -> bool:
        """Whether reading a value on `device` costs no synchronisation (the CPU)."""
        return device.type == "cpu"

    def _enqueue(self, t: torch.Tensor) -> Deferred:
        self._deferred.append(t.detach())
        return Deferred(len(self._deferred) - 1)

    # -- after the forward ----------------------------------------------------

    def flush_batch(self) -> None:
        """Reduce the small tensors staged so far (their handles' `stats` are set)."""
        if self._batch is not None:
            self._batch.flush()

    def staged_finite(self) -> bool:
        """Whether the small tensors staged and not yet reduced are all free of NaN/Inf."""
        return self._batch is None or self._batch.finite()

    def finalize(self) -> None:
        """Move every deferred result to the host at once and fill in the stats."""
        if self._batch is not None:
            self._batch.flush()
        by_device: dict[torch.device, list[int]] = {}
        for i, t in enumerate(self._deferred):
            by_device.setdefault(t.device, []).append(i)
        resolved: list[np.ndarray] = [np.empty(0)] * len(self._deferred)
        for indices in by_device.values():
            parts = [self._deferred[i].reshape(-1).to(torch.float64) for i in indices]
            host = torch.cat(parts).cpu().numpy()
            offset = 0
            for i, part in zip(indices, parts, strict=True):
                resolved[i] = host[offset : offset + part.numel()]
                offset += part.numel()
        self._resolved = resolved
        for p in self._pending:
            vec, counts = self._resolved[p.vec.index].tolist(), self._resolved[p.counts.index].tolist()
            p.stats = host_stats(vec, counts, p.numel)
        self._deferred.clear()
        self._pending.clear()
        self._seen.clear()

    def resolve(self, value: Any) -> Any:
        """The host value of a `Deferred` (a float, or a list for vectors);
        anything else is returned as it is."""
        if not isinstance(value, Deferred):
            return value
        arr = self._resolved[value.index]
        return float(arr[0]) if arr.size == 1 else [float(v) for v in arr]

    # -- internals ------------------------------------------------------------

    def _remember(self, t: torch.Tensor, stats: Stats, value: np.ndarray | None) -> tuple[Any, ...]:
        """Keep what was captured for `t` while it is alive and unchanged (its version)."""
        seen = (weakref.ref(t), tensor_version(t), stats, value)
        if seen[1] >= 0:
            self._seen[id(t)] = seen
        return seen

    def _launch_stats(self, t: torch.Tensor) -> Stats:
        """Stats of `t`: computed now on the CPU, launched on other devices."""
        a = as_numpy(t)  # the common case first: a plain float32/float64 CPU tensor
        if a is not None and a.size:
            return self.stage(a) or array_stats(a, self.sample) or cpu_stats(t.detach(), self.sample)
        x = summarisable(t)
        if x is None:
            return None
        if self._reads_are_free(x.device):
            staged = self.stage(x.numpy()) if x.dtype == torch.float32 and not x.is_neg() else None
            return staged or cpu_stats(x, self.sample)
        vec, counts = device_reductions(x)
        pending = _Pending(self._enqueue(vec), self._enqueue(counts), x.numel())
        self._pending.append(pending)
        return pending

    def stage(self, a: np.ndarray) -> Staged | None:
        """A small float32 array's statistics (and `squares`), staged in the batch
        (None: not batched, too large or not float32)."""
        batch = self._batch
        if batch is None or a.dtype != np.float32 or not 0 < a.size <= batch.LARGEST:
            return None
        staged = Staged()
        batch.add(a, staged)
        return staged

    def _copy(self, t: torch.Tensor, where: str) -> np.ndarray | None:
        """A CPU numpy copy of `t`, unless that would pass the `max_bytes` budget."""
        if not _has_values(t):
            return None
        wide = t.dtype in (torch.bfloat16,) or not _numpy_dtype_ok(t.dtype)
        nbytes = t.numel() * (4 if wide else t.element_size())
        if self.bytes_kept + nbytes > self.max_bytes:
            if not any(w.startswith("values='full'") for w in self.warnings):
                self.warnings.append(
                    f"values='full': keeping a copy of a {nbytes}-byte tensor at '{where}' would pass "
                    f"max_bytes={self.max_bytes}; values from there on were dropped (stats kept)"
                )
            return None
        x = t.detach().resolve_conj().resolve_neg()
        dtype = torch.float32 if wide else x.dtype  # the copy converts: one pass, not a cast and a copy
        kept = self._carve(x, dtype)
        if kept is None:  # a tensor subclass, or a copy the arena could not make
            kept = x.to("cpu", dtype, copy=True)
        self.bytes_kept += nbytes
        return kept.numpy()

    def _carve(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
        """`x` copied as `dtype` into the trace's value arena; None where that cannot be
        done exactly (subclasses such as DTensor, an inference-mode block used outside it)."""
        if type(x) is not torch.Tensor:
            return None
        try:
            return self._arena.copy(x, dtype)
        except RuntimeError:
            return None


_DEVICE_NAMES: dict[torch.device, str] = {}


def _device_name(device: torch.device) -> str:
    name = _DEVICE_NAMES.get(device)
    if name is None:
        name = _DEVICE_NAMES[device] = str(device)
    return name


def plain_shape(shape: Any) -> tuple[int, ...]:
    """A recorded `torch.Size` as plain ints (symbolic sizes of jagged tensors as -1)."""
    try:
        return tuple(map(int, shape))
    except Exception:  # a jagged dimension is a symbolic int that refuses int() in several ways
        return tuple(d if isinstance(d, int) else -1 for d in shape)


def _has_values(t: torch.Tensor) -> bool:
    """Whether the tensor has ordinary dense values that can be read."""
    return not (t.layout != torch.strided or t.is_meta or t.is_quantized or t.is_nested)


def _numpy_dtype_ok(dtype: torch.dtype) -> bool:
    return dtype in _NUMPY_DTYPES


_NUMPY_DTYPES = {
    torch.float16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool,
}  # fmt: skip


def tensor_version(t: torch.Tensor) -> int:
    """`t._version`, or -1 for inference tensors (they have no version counter)."""
    try:
        return int(t._version)
    except RuntimeError:  # inference tensors have no version counter
        return -1
