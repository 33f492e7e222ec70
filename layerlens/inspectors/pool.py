"""Pools (max, average, power-average, adaptive; 1d/2d/3d): window geometry and
the output-length formula, `ceil_mode` included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import nn

from ..formulas import POOL_CEIL_FORMULA, POOL_FORMULA, per_dim, pool_output_length, pool_working
from ..records import Check, LayerRecord
from ._common import copy_attrs, first_tensor, main_shapes, shape_text, spatial_names
from .registry import expectation, register

_WINDOW_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._LPPoolNd)
_ADAPTIVE_POOLS = (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)


def spatial_dims(module: nn.Module) -> int:
    """1, 2 or 3, read off the class name (`MaxPool2d` -> 2)."""
    for cls in type(module).__mro__:
        if cls.__name__[-2:] in ("1d", "2d", "3d"):
            return int(cls.__name__[-2])
    return 1


@register(_WINDOW_POOLS)
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


@register(_ADAPTIVE_POOLS)
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


@expectation(_WINDOW_POOLS)
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
