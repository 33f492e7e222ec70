"""Convolutions (1d/2d/3d and transposed): geometry, the output-length formula,
what a failing call expected, and a numpy reference for 1d and 2d."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
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
from ._helpers import (
    array,
    copy_attrs,
    first_input,
    first_tensor,
    main_shapes,
    shape_text,
    spatial_names,
    unit_weights,
)
from .registry import Expected, LayerFamily, Unverifiable

_CONV_ATTRS = (
    "in_channels", "out_channels", "kernel_size", "stride", "padding",
    "dilation", "groups", "padding_mode",
)  # fmt: skip
_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


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


# -- the numpy reference ------------------------------------------------------------

_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def conv1d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int = 1,
    padding: int | str = 0,
    dilation: int = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """y[n, o, l] = b[o] + sum_{c in o's group} sum_k W[o, c, k] * x_pad[n, c, l*stride + k*dilation]

    for x of shape (N, C_in, L) or (C_in, L) and W of shape (C_out, C_in/groups, K).
    Output length: floor((L + 2*padding - dilation*(K-1) - 1)/stride + 1).
    `padding="same"` pads (dilation*(K-1)) in total, the extra one on the right.
    """
    y = conv2d(
        x[..., None, :],
        weight[..., None, :],
        bias,
        (1, stride),
        (0, padding) if isinstance(padding, int) else padding,
        (1, dilation),
        groups,
        padding_mode,
    )
    return y[..., 0, :]


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | str | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """y[n, o, i, j] = b[o] + sum_{c, p, q} W[o, c, p, q] * x_pad[n, g*C_in/groups + c, i*s_h + p*d_h, j*s_w + q*d_w]

    where g is output channel o's group; x of shape (N, C_in, H, W) or (C_in, H, W).
    """
    batched = x.ndim == 4
    x = x if batched else x[None]
    s, d = _pair(stride), _pair(dilation)
    kh, kw = weight.shape[2:]
    x = _pad(x, padding, (kh, kw), d, padding_mode)
    n, c_in, h, w = x.shape
    out_h = (h - d[0] * (kh - 1) - 1) // s[0] + 1
    out_w = (w - d[1] * (kw - 1) - 1) // s[1] + 1
    c_out = weight.shape[0]
    per_in, per_out = c_in // groups, c_out // groups
    y = np.zeros((n, c_out, out_h, out_w), dtype=np.result_type(x, weight))
    for g in range(groups):
        xs = x[:, g * per_in : (g + 1) * per_in]
        ws = weight[g * per_out : (g + 1) * per_out]
        for p in range(kh):
            for q in range(kw):
                window = xs[
                    :,
                    :,
                    p * d[0] : p * d[0] + s[0] * (out_h - 1) + 1 : s[0],
                    q * d[1] : q * d[1] + s[1] * (out_w - 1) + 1 : s[1],
                ]
                y[:, g * per_out : (g + 1) * per_out] += np.einsum("nchw,oc->nohw", window, ws[:, :, p, q])
    if bias is not None:
        y += bias[None, :, None, None]
    return y if batched else y[0]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pad(
    x: np.ndarray, padding: int | str | tuple[int, int], kernel: tuple[int, int], d: tuple[int, int], mode: str
) -> np.ndarray:
    """Pad H and W: symmetric for numbers; for "same", total dilation*(k-1) with
    the odd one on the right (PyTorch's choice); nothing for "valid"."""
    if padding == "valid":
        return x
    if padding == "same":
        totals = [d[i] * (kernel[i] - 1) for i in range(2)]
        widths = [(t // 2, t - t // 2) for t in totals]
    else:
        ph, pw = _pair(padding)  # type: ignore[arg-type]
        widths = [(ph, ph), (pw, pw)]
    if not any(a or b for a, b in widths):
        return x
    return np.pad(x, [(0, 0), (0, 0), *widths], mode=_PAD_MODES[mode])  # type: ignore[call-overload]


def reference_conv(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """Conv1d and Conv2d through `conv1d`/`conv2d`; other convolutions are not recomputed."""
    x, w, b, kind = first_input(inputs), array(m.weight), array(m.bias), type(m)
    assert w is not None
    if issubclass(kind, nn.Conv1d):
        pad = m.padding if isinstance(m.padding, str) else m.padding[0]
        return Expected(conv1d(x, w, b, m.stride[0], pad, m.dilation[0], m.groups, m.padding_mode), by="conv1d")
    if issubclass(kind, nn.Conv2d):
        return Expected(conv2d(x, w, b, m.stride, m.padding, m.dilation, m.groups, m.padding_mode), by="conv2d")
    raise Unverifiable(f"no numpy reference for {type(m).__name__} (Conv1d and Conv2d have one)")


FAMILIES = (
    LayerFamily(
        "conv",
        _TYPES,
        inspect=inspect_conv,
        expect=expect_conv,
        reference=reference_conv,
        units=unit_weights,
        color="#c8e1ff",
    ),
)
