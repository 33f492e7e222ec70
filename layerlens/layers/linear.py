"""Linear layers: sizes, what a shape mismatch means, and the numpy reference."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from ..records import LayerRecord
from ._helpers import array, copy_attrs, first_input, first_tensor, shape_text, unit_weights
from .registry import Expected, LayerFamily


def inspect_linear(module: nn.Linear, record: LayerRecord) -> None:
    """in_features, out_features, bias."""
    copy_attrs(record, module, "in_features", "out_features")
    record.details["bias"] = module.bias is not None


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


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """y = x W^T + b, for x of shape (..., in_features) and W of shape (out_features, in_features)."""
    y = x @ weight.T
    return y + bias if bias is not None else y


def reference_linear(m: nn.Linear, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """`linear` with the layer's weight and bias."""
    weight = array(m.weight)
    assert weight is not None
    return Expected(linear(first_input(inputs), weight, array(m.bias)), by="linear")


FAMILIES = (
    LayerFamily("linear", (nn.Linear, nn.LazyLinear), inspect=inspect_linear, expect=expect_linear,
                reference=reference_linear, units=unit_weights, color="#c9ecd1"),
)  # fmt: skip
