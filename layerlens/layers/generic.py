"""The fallback for every module: what it says about itself in `repr`, and the
device and dtype mistakes any layer with weights can meet."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..records import LayerRecord
from .registry import LayerFamily


def inspect_module(module: nn.Module, record: LayerRecord) -> None:
    """Keep the module's own `extra_repr` (e.g. `inplace=True`, `dim=1`) as `config`."""
    text = module.extra_repr()
    if text:
        record.details["config"] = text


def expect_module(module: nn.Module, args: tuple[Any, ...]) -> str | None:
    """Inputs on another device, or of another floating dtype, than the module's
    own parameters."""
    param = next(module.parameters(recurse=False), None)
    if param is None:
        return None
    for i, x in enumerate(a for a in args if isinstance(a, torch.Tensor)):
        if x.device != param.device:
            return f"input {i} is on {x.device} but the layer's parameters are on {param.device}"
        if x.dtype != param.dtype and (x.is_floating_point() or param.dim() > 1):
            kind = " (indices)" if not x.is_floating_point() else ""
            return f"input {i} has dtype {x.dtype}{kind} but the layer's parameters are {param.dtype}"
    return None


FAMILIES = (LayerFamily("generic", (nn.Module,), inspect=inspect_module, expect=expect_module, covers_overrides=True),)
