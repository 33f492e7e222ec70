"""timm's own layers, judged by what they compute (active once timm is imported):

- `Conv2dSame`, `StdConv2dSame`, `ScaledStdConv2dSame`, `MaxPool2dSame`,
  `AvgPool2dSame`: TensorFlow's dynamic "same" padding, so each spatial size
  is `ceil(L_in / stride)` whatever the kernel (the module's own `padding` is 0);
- `BatchNormAct2d`: BatchNorm with the layer's statistics, then its `drop` and
  `act` submodules;
- `LayerNorm2d`: LayerNorm over the channels of an NCHW tensor; `LayerNorm`:
  `nn.LayerNorm`'s computation;
- `StdConv2d`, `ScaledStdConv2d`: a Conv2d's geometry (their weights are
  standardised in forward, so the numpy reference does not apply).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch import nn

from ..records import Check, LayerRecord
from ._helpers import array, copy_attrs, first_input, first_tensor, main_shapes, spatial_names
from .activation import numpy_activation
from .conv import FAMILIES as CONV_FAMILIES
from .conv import conv2d, expect_conv
from .norm import FAMILIES as NORM_FAMILIES
from .norm import batch_norm, channels_last_measures, inspect_norm, norm_measures, reference_channels_first_norm
from .pool import avg_pool2d, max_pool2d
from .registry import Expected, LayerFamily, Probe, Unverifiable

SAME_FORMULA = "ceil(L_in/stride)"


def _timm(*names: str) -> tuple[str, ...]:
    """A class of timm's, wherever this timm version keeps it."""
    return tuple(f"{module}:{name}" for name in names for module in ("timm.layers", "timm.models.layers"))


# -- dynamic "same" padding ---------------------------------------------------------


def same_padding(L: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's "same" padding of one dimension: the total that makes the
    output ceil(L / stride) long, the odd one on the right."""
    total = max((math.ceil(L / stride) - 1) * stride + (kernel - 1) * dilation + 1 - L, 0)
    return total // 2, total - total // 2


def inspect_same(module: Any, record: LayerRecord) -> Iterator[Check]:
    """The layer's geometry, and `conv_output_length` / `pool_output_length` by the
    "same" rule: every spatial size is ceil(L_in / stride)."""
    copy_attrs(record, module, "in_channels", "out_channels", "kernel_size", "stride", "dilation", "groups",
               "ceil_mode", "count_include_pad")  # fmt: skip
    record.details["padding"] = "same (dynamic)"
    shapes = main_shapes(record)
    stride = _stride(module)
    if shapes is None or len(shapes[0]) not in (3, 4) or len(shapes[1]) != len(shapes[0]):
        return
    name = "pool_output_length" if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)) else "conv_output_length"
    for i, dim in enumerate(spatial_names(2)):
        L_in, L_out = shapes[0][-2 + i], shapes[1][-2 + i]
        expected = math.ceil(L_in / stride[i])
        message = (
            f"{type(module).__name__} {dim}: TensorFlow 'same' padding gives {SAME_FORMULA} = "
            f"ceil({L_in}/{stride[i]}) = {expected}, got {L_out}"
        )
        yield Check(name, expected == L_out, expected, L_out, message)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[-1]))


def _stride(module: Any) -> tuple[int, int]:
    """The stride per dimension (a pool's default is its kernel size)."""
    kernel = _pair(module.kernel_size)
    stride = module.stride if module.stride is not None else kernel
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    return tuple(k if s is None else int(s) for s, k in zip(stride, kernel, strict=False))  # type: ignore[return-value]


def _pad_same(x: np.ndarray, kernel: Any, stride: Any, dilation: Any, value: float) -> np.ndarray:
    k, s, d = _pair(kernel), stride, _pair(dilation)
    widths = [same_padding(x.shape[-2 + i], k[i], s[i], d[i]) for i in range(2)]
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + widths, constant_values=value)


def reference_same(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """Pad as TensorFlow does, then the plain numpy conv or pool."""
    x = first_input(inputs)
    if isinstance(m, nn.MaxPool2d):
        s = _stride(m)
        y = max_pool2d(_pad_same(x, m.kernel_size, s, m.dilation, -np.inf), _pair(m.kernel_size), s, 0,
                       _pair(m.dilation), m.ceil_mode)  # fmt: skip
        return Expected(y, by="max_pool2d")
    if isinstance(m, nn.AvgPool2d):
        s = _stride(m)
        y = avg_pool2d(_pad_same(x, m.kernel_size, s, 1, 0.0), _pair(m.kernel_size), s, 0, m.ceil_mode,
                       m.count_include_pad)  # fmt: skip
        return Expected(y, by="avg_pool2d")
    if "Std" in type(m).__name__:
        raise Unverifiable("its weights are standardised in forward; the plain convolution does not apply")
    w = array(m.weight)
    assert w is not None
    y = conv2d(_pad_same(x, w.shape[-2:], _pair(m.stride), m.dilation, 0.0), w, array(m.bias), m.stride, 0,
               m.dilation, m.groups)  # fmt: skip
    return Expected(y, by="conv2d")


# -- normalisation --------------------------------------------------------------------


def _bn_act_measures(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, state: Any) -> Any:
    """`norm_statistics` of BatchNorm followed by the layer's own drop and act."""
    return norm_measures(module, first_tensor(args), output, then=lambda y: module.act(module.drop(y)))


def reference_bn_act(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """numpy BatchNorm, then the activation's numpy reference (in eval mode, drop is the identity)."""
    act = numpy_activation(m.act)
    if act is None:
        raise Unverifiable(f"no numpy reference for its activation {type(m.act).__name__}")
    if r.training and not isinstance(m.drop, nn.Identity):
        raise Unverifiable("random drop between the norm and the activation in training mode")
    tracked = int(m.num_batches_tracked) if m.num_batches_tracked is not None else 0
    y, _, _ = batch_norm(first_input(inputs), array(m.weight), array(m.bias), array(m.running_mean),
                         array(m.running_var), r.training, m.momentum, m.eps, tracked)  # fmt: skip
    return Expected(act(y), by="batch_norm")


def _judged_like(base: LayerFamily, name: str, types: tuple[str, ...], **hooks: Any) -> LayerFamily:
    return dataclasses.replace(base, name=name, types=types, **hooks)


_CONV, _NORM = CONV_FAMILIES[0], next(f for f in NORM_FAMILIES if f.name == "norm")
_SAME = ("Conv2dSame", "StdConv2dSame", "ScaledStdConv2dSame", "MaxPool2dSame", "AvgPool2dSame")
FAMILIES = (
    LayerFamily("timm.same_padding", _timm(*_SAME), inspect=inspect_same, reference=reference_same,
                color=_CONV.color),
    LayerFamily("timm.batch_norm_act", _timm("BatchNormAct2d"), inspect=inspect_norm,
                probe=Probe(_bn_act_measures), reference=reference_bn_act, color=_NORM.color),
    LayerFamily("timm.layer_norm_2d", _timm("LayerNorm2d"), inspect=inspect_norm,
                probe=Probe(channels_last_measures), reference=reference_channels_first_norm, color=_NORM.color),
    _judged_like(_NORM, "timm.layer_norm", _timm("LayerNorm")),
    _judged_like(_CONV, "timm.std_conv", _timm("StdConv2d", "ScaledStdConv2d"), expect=expect_conv,
                 reference=reference_same),
)  # fmt: skip
