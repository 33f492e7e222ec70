"""Linear layers: sizes, and what a shape mismatch means."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..records import LayerRecord
from ._common import copy_attrs, first_tensor, shape_text
from .registry import expectation, register


@register(nn.Linear)
def inspect_linear(module: nn.Linear, record: LayerRecord) -> None:
    """in_features, out_features, bias."""
    copy_attrs(record, module, "in_features", "out_features")
    record.details["bias"] = module.bias is not None


@expectation(nn.Linear)
def expect_linear(module: nn.Linear, args: tuple[Any, ...]) -> str | None:
    """`Linear(in_features=120)` got last dim 126."""
    x = first_tensor(args)
    if x is None or x.dim() == 0:
        return None
    if x.shape[-1] != module.in_features:
        return (
            f"Linear(in_features={module.in_features}) got last dim {x.shape[-1]} (input shape {shape_text(x.shape)})"
        )
    return None
