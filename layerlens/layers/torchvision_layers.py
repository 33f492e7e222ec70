"""torchvision's own layers, judged by what they compute (active once torchvision
is imported): ConvNeXt's `LayerNorm2d` (a LayerNorm over the channels of
NCHW) and the detection models' `FrozenBatchNorm2d` (BatchNorm with fixed
statistics, y = (x - mean) / sqrt(var + eps) * w + b per channel)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..records import LayerRecord
from ._helpers import array, first_input, first_tensor
from .norm import batch_norm, channels_last_measures, inspect_norm, reference_channels_first_norm
from .registry import Expected, LayerFamily, Probe

_COLOR = "#fbeaa5"


def _frozen_measures(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, state: Any) -> Any:
    """`norm_statistics` with the fixed statistics, per channel (axis 1)."""
    x = first_tensor(args)
    if x is None or x.dim() < 2 or not isinstance(output, torch.Tensor) or output.shape != x.shape:
        return {}
    shape = [1, -1] + [1] * (x.dim() - 2)
    xf = x.detach()[:1].float()
    scale = (module.weight * torch.rsqrt(module.running_var + module.eps)).float().view(shape)
    ref = (xf - module.running_mean.float().view(shape)) * scale + module.bias.float().view(shape)
    y = output.detach()[:1].float()
    return {"norm_diff": (y - ref).abs().amax(), "norm_scale": ref.abs().amax(), "norm_n": 1,
            "norm_spread": (xf * scale).abs().amax(),
            "norm_stats": "with its fixed mean/var per channel, checked on the first sample",
            "norm_formula": "(x - mean)/sqrt(var + eps)*weight + bias"}  # fmt: skip


def reference_frozen(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """numpy BatchNorm in eval mode with the fixed statistics."""
    y, _, _ = batch_norm(first_input(inputs), array(m.weight), array(m.bias), array(m.running_mean),
                         array(m.running_var), training=False, eps=m.eps)  # fmt: skip
    return Expected(y, by="batch_norm")


FAMILIES = (
    LayerFamily("torchvision.layer_norm_2d", ("torchvision.models.convnext:LayerNorm2d",), inspect=inspect_norm,
                probe=Probe(channels_last_measures), reference=reference_channels_first_norm, color=_COLOR),
    LayerFamily("torchvision.frozen_batch_norm", ("torchvision.ops.misc:FrozenBatchNorm2d",), inspect=inspect_norm,
                probe=Probe(_frozen_measures), reference=reference_frozen, color=_COLOR),
)  # fmt: skip
