"""Pools (max, average, power-average, adaptive; 1d/2d/3d): window geometry, the
output-length formula with `ceil_mode`, what a failing call expected, and numpy
references for the 1d and 2d max, average and adaptive pools."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch import nn

from ..formulas import POOL_CEIL_FORMULA, POOL_FORMULA, per_dim, pool_output_length, pool_working
from ..records import Check, LayerRecord
from ._helpers import copy_attrs, first_input, first_tensor, main_shapes, shape_text, spatial_names
from .registry import Expected, LayerFamily, Unverifiable


def spatial_dims(module: nn.Module) -> int:
    """1, 2 or 3, read off the class name (`MaxPool2d` -> 2)."""
    for cls in type(module).__mro__:
        if cls.__name__[-2:] in ("1d", "2d", "3d"):
            return int(cls.__name__[-2])
    return 1


def inspect_pool(module: nn.Module, record: LayerRecord) -> Iterator[Check]:
    """Window, stride, padding, dilation, ceil_mode; `pool_output_length` per dimension."""
    copy_attrs(record, module, "kernel_size", "stride", "padding", "dilation", "ceil_mode",
               "return_indices", "count_include_pad", "divisor_override", "norm_type")  # fmt: skip
    n = spatial_dims(module)
    shapes = main_shapes(record)
    if shapes is None or len(shapes[0]) not in (n + 1, n + 2) or len(shapes[1]) != len(shapes[0]):
        return
    k, s, p, d = _geometry(module, n)
    ceil = bool(getattr(module, "ceil_mode", False))
    formula = POOL_CEIL_FORMULA if ceil else POOL_FORMULA
    for i, dim in enumerate(spatial_names(n)):
        L_in, L_out = shapes[0][-n + i], shapes[1][-n + i]
        expected = pool_output_length(L_in, k[i], s[i], p[i], d[i], ceil)
        working = pool_working(L_in, k[i], s[i], p[i], d[i], ceil)
        message = f"{type(module).__name__} {dim}: {formula} = {working}, got {L_out}"
        yield Check("pool_output_length", expected == L_out, expected, L_out, message)


def inspect_adaptive_pool(module: Any, record: LayerRecord) -> Iterator[Check]:
    """output_size; `pool_output_length` compares each dimension with it."""
    copy_attrs(record, module, "output_size", "return_indices")
    n = spatial_dims(module)
    shapes = main_shapes(record)
    if shapes is None or len(shapes[0]) not in (n + 1, n + 2) or len(shapes[1]) != len(shapes[0]):
        return
    sizes = per_dim(module.output_size, n)
    for i, dim in enumerate(spatial_names(n)):
        L_in, L_out = shapes[0][-n + i], shapes[1][-n + i]
        size: Any = sizes[i]
        expected = L_in if size is None else int(size)
        source = f"L_in = {L_in} (output_size None)" if sizes[i] is None else f"output_size = {expected}"
        message = f"{type(module).__name__} {dim}: {source}, got {L_out}"
        yield Check("pool_output_length", expected == L_out, expected, L_out, message)


def _geometry(module: Any, n: int) -> tuple[Any, Any, Any, Any]:
    k = per_dim(module.kernel_size, n)
    stride = getattr(module, "stride", None)
    s = k if stride is None or stride == [] or stride == () else per_dim(stride, n)
    p = per_dim(getattr(module, "padding", 0), n)
    d = per_dim(getattr(module, "dilation", 1), n)
    return k, s, p, d


def expect_pool(module: nn.Module, args: tuple[Any, ...]) -> str | None:
    """Rank, padding at most half the window, and an input at least one window long."""
    x = first_tensor(args)
    if x is None:
        return None
    n = spatial_dims(module)
    name = type(module).__name__
    if x.dim() not in (n + 1, n + 2):
        layout = "(C, *spatial) or (N, C, *spatial)"
        return f"{name} expects a {n + 1}-d or {n + 2}-d input {layout}; got {shape_text(x.shape)}"
    k, s, p, d = _geometry(module, n)
    for i, dim in enumerate(spatial_names(n)):
        if 2 * int(p[i]) > int(k[i]):
            return f"{name}: padding ({p[i]}) must be at most half of kernel_size ({k[i]})"
        L = x.shape[-n + i]
        if pool_output_length(L, int(k[i]), int(s[i]), int(p[i]), int(d[i]), False) < 1:
            need = int(d[i]) * (int(k[i]) - 1) + 1 - 2 * int(p[i])
            return f"{name}(kernel_size={k[i]}) needs {dim} + 2*padding >= {need + 2 * int(p[i])}; got {dim} = {L}"
    return None


# -- the numpy reference ------------------------------------------------------------


def _out_len(L: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """floor (or ceil) of (L + 2p - d(k-1) - 1)/s + 1; with ceil_mode a last window
    that would start in the right padding is dropped."""
    span = L + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= L + p:
        out -= 1
    return out


def max_pool2d(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    ceil_mode: bool = False,
) -> np.ndarray:
    """y[..., i, j] = max over the window starting at (i*s_h - p_h, j*s_w - p_w), its
    k_h x k_w taps spaced by the dilation; padding counts as -inf (never the max)."""
    return _pool2d(x, kernel_size, stride, padding, dilation, ceil_mode, "max", True, None)


def avg_pool2d(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> np.ndarray:
    """y[..., i, j] = sum of the window / divisor, where the divisor is the window's
    size within the padded input (count_include_pad) or within the input itself
    (not counting padding), or `divisor_override`. Windows that hang past the
    padded input (ceil_mode) never count those positions."""
    return _pool2d(x, kernel_size, stride, padding, 1, ceil_mode, "avg", count_include_pad, divisor_override)


def max_pool1d(
    x: np.ndarray,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> np.ndarray:
    """max_pool2d along the last axis only."""
    y = max_pool2d(
        x[..., None, :], (1, kernel_size), (1, stride or kernel_size), (0, padding), (1, dilation), ceil_mode
    )
    return y[..., 0, :]


def avg_pool1d(
    x: np.ndarray,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> np.ndarray:
    """avg_pool2d along the last axis only."""
    y = avg_pool2d(
        x[..., None, :], (1, kernel_size), (1, stride or kernel_size), (0, padding), ceil_mode, count_include_pad
    )
    return y[..., 0, :]


def _pair(v: int | tuple[int, int] | None, default: tuple[int, int] | None = None) -> tuple[int, int]:
    if v is None:
        assert default is not None
        return default
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pool2d(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None,
    padding: int | tuple[int, int],
    dilation: int | tuple[int, int],
    ceil_mode: bool,
    kind: str,
    count_include_pad: bool,
    divisor_override: int | None,
) -> np.ndarray:
    k = _pair(kernel_size)
    s = _pair(stride, k)
    p, d = _pair(padding), _pair(dilation)
    h, w = x.shape[-2:]
    out = (_out_len(h, k[0], s[0], p[0], d[0], ceil_mode), _out_len(w, k[1], s[1], p[1], d[1], ceil_mode))
    y = np.empty((*x.shape[:-2], *out), dtype=np.result_type(x, np.float64) if kind == "avg" else x.dtype)
    for i in range(out[0]):
        for j in range(out[1]):
            rows = [i * s[0] - p[0] + a * d[0] for a in range(k[0])]
            cols = [j * s[1] - p[1] + b * d[1] for b in range(k[1])]
            inside_r = [r for r in rows if 0 <= r < h]
            inside_c = [c for c in cols if 0 <= c < w]
            window = x[..., inside_r, :][..., inside_c]
            if kind == "max":  # a window of padding only (possible with dilation) has max -inf
                y[..., i, j] = window.max(axis=(-2, -1)) if window.size else -np.inf
                continue
            if divisor_override:
                divisor = divisor_override
            elif count_include_pad:  # the window clipped to the padded input
                padded_r = [r for r in rows if -p[0] <= r < h + p[0]]
                padded_c = [c for c in cols if -p[1] <= c < w + p[1]]
                divisor = len(padded_r) * len(padded_c)
            else:
                divisor = len(inside_r) * len(inside_c)
            y[..., i, j] = window.sum(axis=(-2, -1)) / divisor
    return y


def _adaptive_windows(length: int, out: int) -> list[tuple[int, int]]:
    """Window i covers [floor(i*L/out), ceil((i+1)*L/out)): every input position is
    in at least one window, and the windows are as even as possible."""
    return [((i * length) // out, -((-(i + 1) * length) // out)) for i in range(out)]


def adaptive_avg_pool2d(x: np.ndarray, output_size: tuple[int | None, int | None]) -> np.ndarray:
    """y[..., i, j] = mean of x over rows [floor(i*H/oh), ceil((i+1)*H/oh)) and the
    same for columns; `None` in output_size keeps that dimension."""
    return _adaptive2d(x, output_size, np.mean)


def adaptive_max_pool2d(x: np.ndarray, output_size: tuple[int | None, int | None]) -> np.ndarray:
    """As `adaptive_avg_pool2d`, with the max of each window."""
    return _adaptive2d(x, output_size, np.max)


def adaptive_avg_pool1d(x: np.ndarray, output_size: int) -> np.ndarray:
    """`adaptive_avg_pool2d` along the last axis only."""
    return adaptive_avg_pool2d(x[..., None, :], (1, output_size))[..., 0, :]


def adaptive_max_pool1d(x: np.ndarray, output_size: int) -> np.ndarray:
    """`adaptive_max_pool2d` along the last axis only."""
    return adaptive_max_pool2d(x[..., None, :], (1, output_size))[..., 0, :]


def _adaptive2d(x: np.ndarray, output_size: tuple[int | None, int | None], reduce: Any) -> np.ndarray:
    h, w = x.shape[-2:]
    oh, ow = (output_size[0] or h), (output_size[1] or w)
    y = np.empty((*x.shape[:-2], oh, ow), dtype=np.result_type(x, np.float64))
    for i, (r0, r1) in enumerate(_adaptive_windows(h, oh)):
        for j, (c0, c1) in enumerate(_adaptive_windows(w, ow)):
            y[..., i, j] = reduce(x[..., r0:r1, c0:c1], axis=(-2, -1))
    return y


def reference_pool(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """The 1d and 2d max, average and adaptive pools; indices (`return_indices`) are not compared."""
    x, kind = first_input(inputs), type(m)  # issubclass: `m` stays Any for the attribute reads
    if issubclass(kind, (nn.MaxPool1d, nn.MaxPool2d)):
        pool = max_pool1d if issubclass(kind, nn.MaxPool1d) else max_pool2d
        y = pool(x, m.kernel_size, m.stride or m.kernel_size, m.padding, m.dilation, m.ceil_mode)
        return Expected((y, None) if m.return_indices else (y,), by=pool.__name__)
    if issubclass(kind, nn.AvgPool1d):
        y = avg_pool1d(x, m.kernel_size[0], m.stride[0], m.padding[0], m.ceil_mode, m.count_include_pad)
        return Expected(y, by="avg_pool1d")
    if issubclass(kind, nn.AvgPool2d):
        y = avg_pool2d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)
        return Expected(y, by="avg_pool2d")
    if issubclass(kind, (nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)):
        size = m.output_size if isinstance(m.output_size, int) else m.output_size[0]
        if issubclass(kind, nn.AdaptiveAvgPool1d):
            return Expected((adaptive_avg_pool1d(x, size),), by="adaptive_avg_pool1d")
        return Expected((adaptive_max_pool1d(x, size), None), by="adaptive_max_pool1d")
    if issubclass(kind, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        size2 = (m.output_size, m.output_size) if isinstance(m.output_size, int) else tuple(m.output_size)
        if issubclass(kind, nn.AdaptiveAvgPool2d):
            return Expected((adaptive_avg_pool2d(x, size2),), by="adaptive_avg_pool2d")
        return Expected((adaptive_max_pool2d(x, size2), None), by="adaptive_max_pool2d")
    raise Unverifiable(
        f"no numpy reference for {type(m).__name__} (1d and 2d max, average and adaptive pools have one)"
    )


_WINDOW_TYPES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.LPPool1d, nn.LPPool2d, *((nn.LPPool3d,) if hasattr(nn, "LPPool3d") else ()),
)  # fmt: skip
_ADAPTIVE_TYPES = (
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
FAMILIES = (
    LayerFamily("pool", _WINDOW_TYPES, inspect=inspect_pool, expect=expect_pool, reference=reference_pool,
                color="#c5ecec"),
    LayerFamily("adaptive_pool", _ADAPTIVE_TYPES, inspect=inspect_adaptive_pool, reference=reference_pool,
                color="#c5ecec"),
)  # fmt: skip
