"""Normalisation layers: subtract a mean, divide by sqrt(variance + eps), then
scale and shift — they differ in which axes the statistics are taken over."""

from __future__ import annotations

import numpy as np


def _standardise(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)  # biased: divides by the count
    return (x - mean) / np.sqrt(var + eps)


def _channel_shape(x: np.ndarray, channel_axis: int) -> list[int]:
    shape = [1] * x.ndim
    shape[channel_axis] = -1
    return shape


def batch_norm(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    training: bool,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: int = 0,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """y = (x - mean_c) / sqrt(var_c + eps) * w_c + b_c per channel c (axis 1).

    Training (or no running statistics): mean_c and the biased var_c over
    (N, *spatial) of this batch; the running statistics move towards them,
    running = (1 - momentum) * running + momentum * batch, using the *unbiased*
    batch variance (n / (n - 1) times the biased one); momentum None means a
    cumulative average, 1 / (num_batches_tracked + 1). Eval: the running
    statistics. Returns (y, new running_mean, new running_var).
    """
    axes = tuple(a for a in range(x.ndim) if a != 1)
    shape = _channel_shape(x, 1)
    use_batch = training or running_mean is None
    if use_batch:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    else:
        assert running_mean is not None and running_var is not None
        mean, var = running_mean, running_var
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    y = _affine(y, weight, bias, shape)
    new_mean, new_var = running_mean, running_var
    if training and running_mean is not None and running_var is not None:
        n = x.size // x.shape[1]
        factor = momentum if momentum is not None else 1.0 / (num_batches_tracked + 1)
        new_mean = (1 - factor) * running_mean + factor * mean
        new_var = (1 - factor) * running_var + factor * var * n / (n - 1)
    return y, new_mean, new_var


def instance_norm(
    x: np.ndarray,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    eps: float = 1e-5,
    running_mean: np.ndarray | None = None,
    running_var: np.ndarray | None = None,
) -> np.ndarray:
    """y = (x - mean_{n,c}) / sqrt(var_{n,c} + eps) * w_c + b_c: statistics per
    sample and channel, over the spatial axes of x (N, C, *spatial). Given
    running statistics (eval mode with `track_running_stats`), those are used
    per channel instead."""
    shape = _channel_shape(x, 1)
    if running_mean is not None and running_var is not None:
        y = (x - running_mean.reshape(shape)) / np.sqrt(running_var.reshape(shape) + eps)
    else:
        y = _standardise(x, tuple(range(2, x.ndim)), eps)
    return _affine(y, weight, bias, shape)


def layer_norm(
    x: np.ndarray,
    normalized_shape: tuple[int, ...],
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    eps: float = 1e-5,
) -> np.ndarray:
    """y = (x - mean) / sqrt(var + eps) * w + b, statistics per sample over the
    trailing `normalized_shape` axes; w and b elementwise, of that shape."""
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    y = _standardise(x, axes, eps)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def group_norm(
    x: np.ndarray,
    num_groups: int,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    eps: float = 1e-5,
) -> np.ndarray:
    """y = (x - mean_{n,g}) / sqrt(var_{n,g} + eps) * w_c + b_c: channels split into
    `num_groups` groups; statistics per sample and group, over the group's
    channels and all spatial positions; the affine is per channel."""
    n = x.shape[0]
    grouped = x.reshape(n, num_groups, -1)
    y = _standardise(grouped, (2,), eps).reshape(x.shape)
    return _affine(y, weight, bias, _channel_shape(x, 1))


def _affine(y: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, shape: list[int]) -> np.ndarray:
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y
