"""Max and average pooling over sliding windows, 1d and 2d."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


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
