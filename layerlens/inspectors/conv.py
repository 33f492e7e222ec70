"""Convolutions (1d/2d/3d and transposed): geometry, and the output-length formula."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import nn

from ..formulas import (
    CONV_FORMULA,
    CONV_T_FORMULA,
    conv_output_length,
    conv_transpose_output_length,
    conv_transpose_working,
    conv_working,
    per_dim,
)
from ..records import Check, LayerRecord
from ._common import copy_attrs, first_tensor, main_shapes, shape_text, spatial_names
from .registry import expectation, register

_CONV_ATTRS = (
    "in_channels", "out_channels", "kernel_size", "stride", "padding",
    "dilation", "groups", "padding_mode",
)  # fmt: skip


@register(nn.modules.conv._ConvNd)
def inspect_conv(module: nn.modules.conv._ConvNd, record: LayerRecord) -> Iterator[Check]:
    """Channels, kernel, stride, padding, dilation, groups; `conv_output_length` per
    spatial dimension, for batched and unbatched inputs."""
    copy_attrs(record, module, *_CONV_ATTRS)
    record.details["bias"] = module.bias is not None
    if module.transposed:
        record.details["output_padding"] = module.output_padding
    shapes = main_shapes(record)
    n = len(module.kernel_size)
    if shapes is None or len(shapes[0]) not in (n + 1, n + 2) or len(shapes[1]) != len(shapes[0]):
        return
    if module.transposed and record.other_inputs:  # forward(x, output_size=...) was used
        record.details["output_size_given"] = True
        return
    x_shape, y_shape = shapes
    for i, dim in enumerate(spatial_names(n)):
        yield _length_check(module, i, dim, x_shape[-n + i], y_shape[-n + i])


def _length_check(module: nn.modules.conv._ConvNd, i: int, dim: str, L_in: int, L_out: int) -> Check:
    k, s, d = module.kernel_size[i], module.stride[i], module.dilation[i]
    pad = module.padding if isinstance(module.padding, str) else module.padding[i]
    if module.transposed:
        op = module.output_padding[i]
        assert isinstance(pad, int)
        expected = conv_transpose_output_length(L_in, k, s, pad, op, d)
        formula, working = CONV_T_FORMULA, conv_transpose_working(L_in, k, s, pad, op, d)
    else:
        expected = conv_output_length(L_in, k, s, pad, d)
        formula, working = CONV_FORMULA, conv_working(L_in, k, s, pad, d)
    message = f"{type(module).__name__} {dim}: {formula} = {working}, got {L_out}"
    return Check("conv_output_length", expected == L_out, expected, L_out, message)


@expectation(nn.modules.conv._ConvNd)
def expect_conv(module: nn.modules.conv._ConvNd, args: tuple[Any, ...]) -> str | None:
    """Rank, channel count and minimum spatial size the convolution needs."""
    x = first_tensor(args)
    if x is None:
        return None
    n = len(module.kernel_size)
    name = type(module).__name__
    dims = ", ".join(spatial_names(n))
    layout = f"(N, {module.in_channels}, {dims}) or ({module.in_channels}, {dims})"
    if x.dim() not in (n + 1, n + 2):
        return f"{name} expects a {n + 2}-d input {layout}; got {x.dim()}-d {shape_text(x.shape)}"
    if x.shape[-n - 1] != module.in_channels:
        return (
            f"{name}(in_channels={module.in_channels}) expects {layout}; got {x.shape[-n - 1]} "
            f"channels in {shape_text(x.shape)}"
        )
    return None if module.transposed else _too_short(module, x.shape[-n:], name)


def _too_short(module: nn.modules.conv._ConvNd, sizes: Any, name: str) -> str | None:
    pads = per_dim(module.padding, len(sizes))
    for i, (L, dim) in enumerate(zip(sizes, spatial_names(len(sizes)), strict=True)):
        k, d = module.kernel_size[i], module.dilation[i]
        pad = 0 if pads[i] in ("valid", "same") else int(pads[i] or 0)
        need = d * (k - 1) + 1 - 2 * pad
        if pads[i] != "same" and need > L:
            return (
                f"{name}(kernel_size={k}, dilation={d}, padding={pad}) needs {dim} >= "
                f"dilation*(kernel_size-1) + 1 - 2*padding = {need}; got {dim} = {L}"
            )
    return None
