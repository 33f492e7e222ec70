"""Activation functions: numpy references (ReLU, sigmoid, tanh, softmax) and the
health measures `watch` keeps: dead ReLU units, saturated sigmoid/tanh outputs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ..records import LayerRecord
from ..tensor_stats import as_numpy, strided, strided_np
from ._helpers import first_input
from .registry import Expected, LayerFamily, Unverifiable


def sigmoid(x: np.ndarray) -> np.ndarray:
    """sigmoid(x) = 1 / (1 + exp(-x)), computed without overflow for large |x|."""
    out = np.empty_like(x, dtype=np.result_type(x, np.float64))
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def tanh(x: np.ndarray) -> np.ndarray:
    """tanh(x) = (e^x - e^-x) / (e^x + e^-x)."""
    return np.tanh(x)


def relu(x: np.ndarray) -> np.ndarray:
    """relu(x) = max(x, 0)."""
    return np.maximum(x, 0)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x) along `axis`
    (subtracting the max changes nothing but keeps exp from overflowing)."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def silu(x: np.ndarray) -> np.ndarray:
    """silu(x) = x * sigmoid(x) (also called swish)."""
    return x * sigmoid(x)


_ERF = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """gelu(x) = x * Phi(x) = x/2 * (1 + erf(x/sqrt(2))); with `approximate="tanh"`,
    x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))."""
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + _ERF(x / math.sqrt(2.0)))


def hardsigmoid(x: np.ndarray) -> np.ndarray:
    """hardsigmoid(x) = min(max(x/6 + 1/2, 0), 1)."""
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def hardswish(x: np.ndarray) -> np.ndarray:
    """hardswish(x) = x * hardsigmoid(x)."""
    return x * hardsigmoid(x)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """leaky_relu(x) = x for x >= 0, negative_slope * x below."""
    return np.where(x >= 0, x, negative_slope * x)


def elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """elu(x) = x for x > 0, alpha * (exp(x) - 1) below."""
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def hardtanh(x: np.ndarray, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """hardtanh(x) = min(max(x, low), high); ReLU6 is hardtanh(x, 0, 6)."""
    return np.clip(x, low, high)


def numpy_activation(m: nn.Module) -> Any:
    """The numpy function computing activation module `m`, or None when there is none."""
    table: tuple[tuple[type[nn.Module], Any], ...] = (
        (nn.ReLU, relu), (nn.Sigmoid, sigmoid), (nn.Tanh, tanh), (nn.SiLU, silu), (nn.Hardswish, hardswish),
        (nn.Hardsigmoid, hardsigmoid), (nn.Identity, lambda x: x),
    )  # fmt: skip
    if isinstance(m, nn.GELU):
        return lambda x: gelu(x, m.approximate)
    if isinstance(m, nn.LeakyReLU):
        return lambda x: leaky_relu(x, m.negative_slope)
    if isinstance(m, nn.ELU):
        return lambda x: elu(x, m.alpha)
    if isinstance(m, nn.Hardtanh) and type(m).forward is nn.Hardtanh.forward:  # ReLU6 too
        return lambda x: hardtanh(x, m.min_val, m.max_val)
    for cls, fn in table:
        if type(m) is cls or (isinstance(m, cls) and getattr(type(m), "forward", None) is cls.forward):
            return fn
    return None


def reference_activation(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """The activation applied to the recorded input."""
    x = first_input(inputs)
    if isinstance(m, nn.Softmax):
        dim = m.dim if m.dim is not None else (0 if x.ndim in (0, 1, 3) else 1)  # PyTorch's legacy choice
        return Expected(softmax(x, axis=dim), by="softmax")
    fn = numpy_activation(m)
    if fn is None:
        raise Unverifiable(f"no numpy reference for {type(m).__name__}")
    return Expected(fn(x), by=type(m).__name__.lower())


def relu_health(module: nn.Module, x: torch.Tensor | None, y: torch.Tensor) -> dict[str, Any]:
    """`dead`: the fraction of units (every position but the batch's) whose output
    is 0 for every sample in the batch."""
    if y.dim() < 2:
        return {}
    a = as_numpy(y)
    if a is not None:
        peaks = np.maximum.reduce(a, axis=0)
        return {"dead": 1.0 - np.count_nonzero(peaks) / max(1, peaks.size)}
    return {"dead": (y.amax(dim=0) == 0).to(torch.float32).mean()}


def saturation_health(module: nn.Module, x: torch.Tensor | None, y: torch.Tensor) -> dict[str, Any]:
    """`saturated`: the fraction of outputs within 1% of the function's bounds
    (on a strided sample of a large output)."""
    lo, hi = (-0.99, 0.99) if isinstance(module, nn.Tanh) else (0.01, 0.99)
    a = as_numpy(y)
    if a is not None:
        s = strided_np(a)
        return {"saturated": float(np.count_nonzero((s <= lo) | (s >= hi)) / max(1, s.size))}
    ys = strided(y)
    return {"saturated": ((ys <= lo) | (ys >= hi)).to(torch.float32).mean()}


_COLOR = "#fdddc0"
FAMILIES = (
    LayerFamily("relu", (nn.ReLU,), reference=reference_activation, health=relu_health, color=_COLOR),
    LayerFamily("relu6", (nn.ReLU6,), reference=reference_activation, health=relu_health, color=_COLOR),
    LayerFamily("saturating", (nn.Sigmoid, nn.Tanh), reference=reference_activation, health=saturation_health,
                color=_COLOR),
    LayerFamily("softmax", (nn.Softmax,), reference=reference_activation, color=_COLOR),
    LayerFamily("activation", (nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh),
                reference=reference_activation, color=_COLOR),
    LayerFamily("other_activation", tuple(
        getattr(nn, n) for n in ("Mish", "SELU", "CELU", "PReLU", "Softplus", "Softsign",
                                 "LogSigmoid", "LogSoftmax", "Softmin", "Tanhshrink", "Threshold", "GLU", "RReLU")
        if hasattr(nn, n)
    ), color=_COLOR),
)  # fmt: skip
