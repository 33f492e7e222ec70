"""Losses: numpy references with PyTorch's reductions ("mean", "sum", "none")."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from ..records import LayerRecord
from ._helpers import array, first_input
from .registry import Expected, LayerFamily, Unverifiable


def _reduce(values: np.ndarray, reduction: str, weights: np.ndarray | None = None) -> np.ndarray:
    if reduction == "none":
        return values
    if reduction == "sum":
        return np.asarray(values.sum())
    if reduction == "mean":
        return np.asarray(values.sum() / (weights.sum() if weights is not None else values.size))
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def mse_loss(prediction: np.ndarray, target: np.ndarray, reduction: str = "mean") -> np.ndarray:
    """L = (prediction - target)^2, reduced."""
    return _reduce((prediction - target) ** 2, reduction)


def cross_entropy(
    logits: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.ndarray:
    """L_n = -w[y_n] * log softmax(logits_n)[y_n] for class indices y_n, with
    logits of shape (N, C) or (N, C, d1, ...); "mean" divides by the sum of
    the weights of the targets that are not `ignore_index`. With label
    smoothing eps, the target is (1 - eps) one-hot + eps / C uniform."""
    logits = np.moveaxis(logits, 1, -1) if logits.ndim > 2 else logits
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    classes = log_probs.shape[-1]
    w = np.ones(classes) if weight is None else weight
    keep = target != ignore_index
    safe = np.where(keep, target, 0)
    picked = np.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
    nll = -w[safe] * picked
    if label_smoothing:
        smooth = -(log_probs * w).sum(axis=-1) / classes
        nll = (1 - label_smoothing) * nll + label_smoothing * smooth
    nll = np.where(keep, nll, 0.0)
    return _reduce(nll, reduction, np.where(keep, w[safe], 0.0))


def reference_loss(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """MSELoss and CrossEntropyLoss (class-index targets) from the recorded prediction and target."""
    prediction, target = first_input(inputs, 0), first_input(inputs, 1)
    if isinstance(m, nn.MSELoss):
        return Expected(mse_loss(prediction, target, m.reduction), by="mse_loss")
    if not np.all(np.equal(np.mod(target, 1), 0)) or target.ndim == prediction.ndim:
        raise Unverifiable("class-probability targets are not recomputed")
    y = cross_entropy(prediction, target.astype(np.int64), array(m.weight), m.ignore_index, m.reduction,
                      m.label_smoothing)  # fmt: skip
    return Expected(y, by="cross_entropy")


FAMILIES = (LayerFamily("loss", (nn.MSELoss, nn.CrossEntropyLoss), reference=reference_loss),)
