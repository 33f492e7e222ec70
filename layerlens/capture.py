"""Turn live tensors into `TensorInfo`: shapes always, statistics and copies on request.

Statistics are launched on the tensor's own device when the tensor is seen
and kept there; `finalize` moves everything to the host in one transfer per
device, so a trace on a GPU does not synchronise once per layer. Each distinct
tensor (same object, same version counter) is summarised once, however many
layers it passes through.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Literal

import numpy as np
import torch

from .records import TensorInfo, TensorStats

ValuesMode = Literal["stats", "full"] | None

DEFAULT_MAX_BYTES = 256 * 2**20

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


class _Seen:
    """What was already captured for one tensor, to reuse while it is unchanged."""

    __slots__ = ("ref", "stats", "value", "version")

    def __init__(self, ref: Any, version: int, stats: int, value: np.ndarray | None) -> None:
        self.ref = ref
        self.version = version
        self.stats = stats
        self.value = value


class _PendingStats:
    """Handles of one tensor's deferred reductions, resolved by `finalize`."""

    __slots__ = ("counts", "nan_inf", "numel", "vec")

    def __init__(self, vec: Deferred, counts: Deferred, numel: int, nan_inf: tuple[int, int] | None) -> None:
        self.vec = vec.index  # [min, max, mean, std]
        self.counts = counts.index  # [nonzero] or, where nan_inf is None, [nonzero, nan, inf]
        self.numel = numel
        self.nan_inf = nan_inf


class Capture:
    """Captures tensors for one trace; call `finalize` once the forward is over."""

    def __init__(self, values: ValuesMode, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.values = values
        self.max_bytes = max_bytes
        self.bytes_kept = 0
        self.warnings: list[str] = []
        self._deferred: list[torch.Tensor] = []
        self._resolved: list[np.ndarray] = []
        self._stats: list[_PendingStats] = []
        self._pending: list[tuple[TensorInfo, int]] = []
        self._seen: dict[int, _Seen] = {}

    # -- hot path -------------------------------------------------------------

    def tensor(self, path: str, t: torch.Tensor, where: str) -> TensorInfo:
        """Record one tensor seen at `where` (a layer name, for warnings)."""
        info = TensorInfo(path, _shape(t), dtype_name(t.dtype), str(t.device), t.requires_grad)
        if self.values is None:
            return info
        seen = self._lookup(t)
        if seen is None:
            value = self._copy(t, where) if self.values == "full" else None
            seen = self._remember(t, self._launch_stats(t), value)
        if seen.stats >= 0:
            self._pending.append((info, seen.stats))
        info.value = seen.value
        return info

    def defer(self, t: torch.Tensor) -> Deferred:
        """Keep a small device tensor for the single transfer; returns its handle."""
        self._deferred.append(t.detach())
        return Deferred(len(self._deferred) - 1)

    # -- after the forward ----------------------------------------------------

    def finalize(self) -> None:
        """Move every deferred result to the host at once and fill in the stats."""
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
        for info, slot in self._pending:
            info.stats = self._host_stats(self._stats[slot])
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

    def _lookup(self, t: torch.Tensor) -> _Seen | None:
        seen = self._seen.get(id(t))
        if seen is None or seen.ref() is not t or seen.version != _version(t):
            return None
        return seen

    def _remember(self, t: torch.Tensor, stats: int, value: np.ndarray | None) -> _Seen:
        seen = _Seen(weakref.ref(t), _version(t), stats, value)
        if seen.version >= 0:
            self._seen[id(t)] = seen
        return seen

    def _launch_stats(self, t: torch.Tensor) -> int:
        """Start the reductions for `t` on its device; -1 when stats do not apply."""
        if not _has_values(t) or t.numel() == 0 or t.is_complex():
            return -1
        x = t.detach()
        if not x.is_floating_point():
            x = x.to(torch.float64)
        try:
            vec, nonzero = _reductions(x)
        except (RuntimeError, TypeError):  # dtypes without reduction kernels (float8, ...)
            x = x.to(torch.float32)
            vec, nonzero = _reductions(x)
        nan_inf: tuple[int, int] | None = (0, 0)
        if t.is_floating_point():
            if x.device.type == "cpu":  # reading a CPU scalar costs no device sync
                if not math.isfinite(float(vec[2])):
                    nan_inf = (int(torch.isnan(x).sum()), int(torch.isinf(x).sum()))
            else:
                nan_inf = None
                nonzero = torch.stack((nonzero, torch.isnan(x).sum(), torch.isinf(x).sum()))
        self._stats.append(_PendingStats(self.defer(vec), self.defer(nonzero), x.numel(), nan_inf))
        return len(self._stats) - 1

    def _host_stats(self, p: _PendingStats) -> TensorStats:
        mn, mx, mean, std = (float(v) for v in self._resolved[p.vec])
        counts = self._resolved[p.counts]
        nan, inf = p.nan_inf if p.nan_inf is not None else (int(counts[1]), int(counts[2]))
        return TensorStats(mn, mx, mean, std, nan, inf, 1.0 - float(counts[0]) / p.numel)

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
        if wide:
            x = x.to(torch.float32)
        x = x.to("cpu") if x.device.type != "cpu" else x.clone()
        self.bytes_kept += nbytes
        return x.numpy()


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    try:
        return tuple(t.shape)
    except RuntimeError:  # nested tensors with ragged dimensions
        return ()


def _has_values(t: torch.Tensor) -> bool:
    """Whether the tensor has ordinary dense values that can be read."""
    return not (t.layout != torch.strided or t.is_meta or t.is_quantized or t.is_nested)


def _numpy_dtype_ok(dtype: torch.dtype) -> bool:
    return dtype in _NUMPY_DTYPES


_NUMPY_DTYPES = {
    torch.float16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool,
}  # fmt: skip


def _version(t: torch.Tensor) -> int:
    try:
        return int(t._version)
    except RuntimeError:  # inference tensors have no version counter
        return -1


def _reductions(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """min, max, mean, std as one vector, and the nonzero count."""
    mn, mx = torch.aminmax(x)
    if x.numel() > 1:
        std, mean = torch.std_mean(x)
    else:
        mean = x.reshape(())
        std = torch.zeros_like(mean)
    return torch.stack((mn, mx, mean, std)), torch.count_nonzero(x)
