"""`norm_statistics` on the CPU in numpy: the common cases, where torch's per-op
overhead (about 20 us a reduction over a dim) is most of the check's cost on
the few thousand elements it reads. `norm.norm_measures` falls back to its
torch path wherever these return None."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ..tensor_stats import as_numpy

STANDARD = "(x - mean)/sqrt(var + eps)*weight + bias"
RMS = "x/sqrt(mean(x^2) + eps)*weight"
# The reference is compared on the first rows of the batch only, up to this many
# elements (at least one row): an exact check of those rows, at a bounded cost.
SAMPLE = 8192

BATCH_NORM = nn.modules.batchnorm._BatchNorm
RMS_NORM: Any = getattr(nn, "RMSNorm", None)  # PyTorch >= 2.4


def layer_norm_like(module: Any) -> bool:
    """LayerNorm or RMSNorm: normalised over the trailing `normalized_shape` dims."""
    return isinstance(module, nn.LayerNorm) or (RMS_NORM is not None and isinstance(module, RMS_NORM))


def running_stats_on_cpu(module: Any, x: torch.Tensor, output: torch.Tensor, rows: int | None) -> dict[str, Any] | None:
    """A BatchNorm in eval mode on the CPU, normalised with its running statistics."""
    mean, var = getattr(module, "running_mean", None), getattr(module, "running_var", None)
    if not (isinstance(module, BATCH_NORM) and not module.training and mean is not None and var is not None and rows):
        return None
    if output.dtype != x.dtype or x.dim() < 2:
        return None
    xs, y = as_numpy(x), as_numpy(output)
    if xs is None or y is None:
        return None
    try:
        m, v, weight, bias = _vector(mean), _vector(var), _optional(module.weight), _optional(module.bias)
    except _Unreadable:
        return None
    scale = 1.0 / np.sqrt(v + module.eps)  # per channel, in float64; applied in the input's dtype
    if weight is not None:
        scale = scale * weight
    shift = -m * scale
    if bias is not None:
        shift = shift + bias
    xs, ys, positions = _first_positions(xs[:rows], y[:rows])
    shape = (-1,) + (1,) * (xs.ndim - 2)
    with np.errstate(all="ignore"):
        scaled = xs * scale.astype(xs.dtype).reshape(shape)
        ref = scaled + shift.astype(xs.dtype).reshape(shape)
        diff = float(np.maximum.reduce(np.abs(ys - ref), None))
        scale_max = float(np.maximum.reduce(np.abs(ref), None))
        spread = float(np.maximum.reduce(np.abs(scaled), None))
    stats = "with the running mean/var per channel"
    if rows < x.shape[0]:
        stats += f", checked on the first {rows} of {x.shape[0]} samples"
    if positions is not None:
        stats += f" and the first {positions[0]} of {positions[1]} positions per channel"
    return _measures(diff, scale_max, 1, stats, STANDARD, spread)


def _first_positions(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    """A per-channel check's input and output cut to the first positions of each channel,
    so that it reads about `SAMPLE` elements however large one sample is (a 224x224 image);
    with (kept, of) when it was cut. The running statistics apply to each position alike."""
    if x.ndim < 3 or x.size <= SAMPLE:
        return x, y, None
    n, c = x.shape[0], x.shape[1]
    flat_x, flat_y = x.reshape(n, c, -1), y.reshape(n, c, -1)
    keep = max(1, SAMPLE // (n * c))
    if keep >= flat_x.shape[2]:
        return x, y, None
    return flat_x[:, :, :keep], flat_y[:, :, :keep], (keep, flat_x.shape[2])


def layer_norm_on_cpu(module: Any, x: torch.Tensor, output: torch.Tensor) -> dict[str, Any] | None:
    """A LayerNorm or RMSNorm on the CPU, in float64, on the first positions (all
    leading dims are positions: each is normalised on its own) up to `SAMPLE`
    elements, so a long sequence costs no more than a short one."""
    if not layer_norm_like(module) or output.dtype != x.dtype:
        return None
    rms = not isinstance(module, nn.LayerNorm)
    trailing = tuple(module.normalized_shape)
    k = len(trailing)
    a, y = as_numpy(x), as_numpy(output)
    if a is None or y is None or x.dim() < k or tuple(x.shape[x.dim() - k :]) != trailing:
        return None
    try:
        weight, bias = _optional(module.weight), _optional(getattr(module, "bias", None))
    except _Unreadable:
        return None
    d = math.prod(trailing)
    positions = a.size // d if d else 0
    if positions == 0:
        return None
    take = max(1, SAMPLE // d)
    a = a.reshape(positions, d)[:take].astype(np.float64)
    with np.errstate(all="ignore"):  # ufunc reductions directly: np.mean's wrapper costs more than the work
        if rms:
            eps = module.eps if module.eps is not None else float(torch.finfo(x.dtype).eps)
            ref = a / np.sqrt(np.add.reduce(a * a, 1, keepdims=True) / d + eps)
        else:
            centred = a - np.add.reduce(a, 1, keepdims=True) / d
            sigma = np.sqrt(np.add.reduce(centred * centred, 1, keepdims=True) / d + module.eps)
            ref = centred / sigma
        if weight is not None:
            ref = ref * weight
        if bias is not None:
            ref = ref + bias
        diff = float(np.maximum.reduce(np.abs(y.reshape(positions, d)[:take] - ref), None))
        scale = float(np.maximum.reduce(np.abs(ref), None))
        spread = 0.0 if rms else float(np.maximum.reduce(np.abs(a) / sigma, None)) * _largest(weight)
    axes = tuple(range(x.dim() - k, x.dim()))
    stats = f"per sample over axes {axes}"
    if take < positions:
        stats += f", checked on the first {take} of {positions} positions"
    return _measures(diff, scale, d, stats, RMS if rms else STANDARD, spread)


class _Unreadable(Exception):
    """A tensor numpy cannot read (a subclass such as DTensor, another device):
    the torch path applies."""


def _vector(t: torch.Tensor) -> np.ndarray:
    """A per-channel or elementwise tensor flattened to float64 numpy."""
    a = as_numpy(t)
    if a is None:
        raise _Unreadable
    return a.reshape(-1).astype(np.float64)


def _optional(p: torch.Tensor | None) -> np.ndarray | None:
    """`_vector` of an affine parameter that may be absent."""
    return None if p is None else _vector(p)


def _largest(weight: np.ndarray | None) -> float:
    return float(np.abs(weight).max()) if weight is not None and weight.size else 1.0


def _measures(diff: float, scale: float, n: int, stats: str, formula: str, spread: float) -> dict[str, Any]:
    """`norm_statistics`' measures; `spread` is the largest term that the centring cancels
    (|x| scaled as the output is), which bounds the rounding of the layer's own output."""
    return {
        "norm_diff": diff,
        "norm_scale": scale,
        "norm_n": n,
        "norm_stats": stats,
        "norm_formula": formula,
        "norm_spread": spread,
    }
