"""Normalisation layers (BatchNorm, InstanceNorm, LayerNorm, GroupNorm, RMSNorm):
configuration, and `norm_statistics`: the output recomputed from the input with
the statistics the layer should use, over the axes it should use them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..records import Check, LayerRecord
from ._common import copy_attrs, first_tensor, machine_eps, shape_text
from .registry import expectation, probe, register

_BN = nn.modules.batchnorm._BatchNorm
_IN = nn.modules.instancenorm._InstanceNorm
_RMS_NORM: Any = getattr(nn, "RMSNorm", None)  # PyTorch >= 2.4
_RMS: tuple[type, ...] = (_RMS_NORM,) if _RMS_NORM is not None else ()
_NORMS = (_BN, _IN, nn.LayerNorm, nn.GroupNorm, *_RMS)


@register(_NORMS)
def inspect_norm(module: nn.Module, record: LayerRecord) -> Iterator[Check]:
    """Sizes, eps, momentum, affine and running-stat flags, the mode of the call;
    `norm_statistics` when values were captured."""
    copy_attrs(record, module, "num_features", "normalized_shape", "num_groups", "num_channels",
               "eps", "momentum", "affine", "elementwise_affine", "track_running_stats")  # fmt: skip
    record.details["training"] = record.training
    m = record.measures
    if "norm_diff" not in m:
        return
    diff, scale, n = float(m["norm_diff"]), float(m["norm_scale"]), int(m["norm_n"])
    tol = machine_eps(record.outputs[0].dtype) * (64 + 4 * math.sqrt(n)) * (1 + scale)
    mode = "training" if record.training else "eval"
    message = (
        f"{record.type_name} ({mode}): y = {m['norm_formula']}, {m['norm_stats']}: "
        f"max |y - reference| = {diff:.3g} (tolerance {tol:.2g})"
    )
    yield Check("norm_statistics", diff <= tol, 0.0, diff, message)


# The reference is compared on the first rows of the batch only, up to this many
# elements (at least one row): an exact check of those rows, at a bounded cost.
_SAMPLE = 8192


def _norm_reference(module: nn.Module, args: tuple[Any, ...], output: Any, state: Any) -> dict[str, Any]:
    """Recompute the output on device in (at least) float32 and measure the gap."""
    x = first_tensor(args)
    if x is None or not isinstance(output, torch.Tensor) or x.numel() == 0 or output.shape != x.shape:
        return {}
    dt = torch.promote_types(x.dtype, torch.float32)
    xf = x.detach().to(dt)
    rows = _rows(module, x)
    ref, n, stats, formula = _normalise(module, xf, rows)
    y = output.detach()[:rows].to(dt) if rows is not None else output.detach().to(dt)
    diff = (y - ref).abs().amax()
    if rows is not None and rows < x.shape[0]:
        stats += f", checked on the first {rows} of {x.shape[0]} samples"
    return {
        "norm_diff": diff,
        "norm_scale": ref.abs().amax(),
        "norm_n": n,
        "norm_stats": stats,
        "norm_formula": formula,
    }


probe(_NORMS)(_norm_reference)

_STANDARD = "(x - mean)/sqrt(var + eps)*weight + bias"


def _rows(module: Any, x: torch.Tensor) -> int | None:
    """How many leading samples to check, or None when the input has no batch dim."""
    if isinstance(module, _IN) and x.dim() == _unbatched_dims(module):
        return None
    if _layer_norm_like(module) and x.dim() <= len(module.normalized_shape):
        return None
    per_row = max(1, x.numel() // max(1, x.shape[0]))
    return max(1, _SAMPLE // per_row)


def _layer_norm_like(module: Any) -> bool:
    """LayerNorm or RMSNorm: normalised over the trailing `normalized_shape` dims."""
    return isinstance(module, nn.LayerNorm) or (_RMS_NORM is not None and isinstance(module, _RMS_NORM))


def _normalise(module: Any, x: torch.Tensor, rows: int | None) -> tuple[torch.Tensor, int, str, str]:
    """Reference output for the first `rows` samples, group size, and the statistics used."""
    if isinstance(module, (_BN, _IN)):
        return _channelwise(module, x, rows)
    x = x[:rows] if rows is not None else x  # per-sample statistics: the rows alone suffice
    if isinstance(module, nn.LayerNorm):
        axes = tuple(range(x.dim() - len(module.normalized_shape), x.dim()))
        y = _standardise(x, axes, module.eps)
        return _affine(y, module.weight, module.bias, None), _count(x, axes), f"per sample over axes {axes}", _STANDARD
    if _RMS_NORM is not None and isinstance(module, _RMS_NORM):
        axes = tuple(range(x.dim() - len(module.normalized_shape), x.dim()))
        eps = module.eps if module.eps is not None else torch.finfo(x.dtype).eps
        y = x * torch.rsqrt(x.pow(2).mean(dim=axes, keepdim=True) + eps)
        text = "x/sqrt(mean(x^2) + eps)*weight"
        return _affine(y, module.weight, None, None), _count(x, axes), f"per sample over axes {axes}", text
    groups = x.reshape(x.shape[0], module.num_groups, -1)  # GroupNorm
    y = _standardise(groups, (2,), module.eps).reshape(x.shape)
    stats = f"per sample and group of {module.num_channels // module.num_groups} channels"
    return _affine(y, module.weight, module.bias, 1), groups.shape[2], stats, _STANDARD


def _channelwise(module: Any, x: torch.Tensor, rows: int | None) -> tuple[torch.Tensor, int, str, str]:
    """BatchNorm and InstanceNorm: batch, instance or running statistics per channel,
    folded with the affine parameters into one scale and shift per channel."""
    instance = isinstance(module, _IN)
    channel = 0 if rows is None else 1
    if instance and rows is not None:
        x = x[:rows]  # per-sample statistics: the rows alone suffice
    shape = [1] * x.dim()
    shape[channel] = -1
    if module.running_mean is not None and not module.training:
        mean = module.running_mean.to(x.dtype).view(shape)
        var = module.running_var.to(x.dtype).view(shape)
        n, stats = 1, "with the running mean/var per channel"
    else:
        skip = {channel} | ({0} if instance and channel == 1 else set())
        axes = tuple(a for a in range(x.dim()) if a not in skip)
        mean, var = _moments(x, axes)  # BatchNorm: over the whole batch, before slicing
        n = _count(x, axes)
        who = "per sample and channel" if instance else "per channel, over the batch,"
        stats = f"mean/var {who} over axes {axes}"
    scale = torch.rsqrt(var + module.eps)
    if module.weight is not None:
        scale = scale * module.weight.detach().to(x.dtype).view(shape)
    shift = -mean * scale
    if module.bias is not None:
        shift = shift + module.bias.detach().to(x.dtype).view(shape)
    xs = x[:rows] if rows is not None else x
    return torch.addcmul(shift, xs, scale), n, stats, _STANDARD


def _moments(x: torch.Tensor, axes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance over `axes` (two passes: exact, and much faster on
    the CPU than `torch.var_mean`'s single-pass kernel)."""
    mean = x.mean(dim=axes, keepdim=True)
    d = x - mean
    return mean, (d * d).mean(dim=axes, keepdim=True)


def _unbatched_dims(module: Any) -> int:
    """An InstanceNorm's input rank without a batch dim (2 for InstanceNorm1d)."""
    return int(module._get_no_batch_dim())


def _standardise(x: torch.Tensor, axes: tuple[int, ...], eps: float) -> torch.Tensor:
    mean, var = _moments(x, axes)
    return (x - mean) / torch.sqrt(var + eps)


def _affine(y: torch.Tensor, weight: Any, bias: Any, channel: int | None) -> torch.Tensor:
    """Apply per-channel (`channel` given) or elementwise weight and bias."""

    def fit(p: torch.Tensor) -> torch.Tensor:
        p = p.detach().to(y.dtype)
        if channel is None:
            return p
        shape = [1] * y.dim()
        shape[channel] = -1
        return p.view(shape)

    if weight is not None:
        y = y * fit(weight)
    if bias is not None:
        y = y + fit(bias)
    return y


def _count(x: torch.Tensor, axes: tuple[int, ...]) -> int:
    return math.prod(x.shape[a] for a in axes)


@expectation(_NORMS)
def expect_norm(module: Any, args: tuple[Any, ...]) -> str | None:
    """Channel count, normalized_shape, group divisibility, batch size in training."""
    x = first_tensor(args)
    if x is None:
        return None
    name = type(module).__name__
    if _layer_norm_like(module):
        want = tuple(module.normalized_shape)
        if tuple(x.shape[-len(want) :]) != want:
            return f"{name}(normalized_shape={want}) expects input ending in {want}; got {shape_text(x.shape)}"
        return None
    if isinstance(module, nn.GroupNorm):
        if x.dim() < 2 or x.shape[1] != module.num_channels:
            c = module.num_channels
            got = shape_text(x.shape)
            return f"{name}(num_groups={module.num_groups}, num_channels={c}) expects (N, {c}, *); got {got}"
        return None
    return _expect_channels(module, x, name)


def _expect_channels(module: nn.Module, x: torch.Tensor, name: str) -> str | None:
    assert isinstance(module, (_BN, _IN))
    c = module.num_features
    unbatched = isinstance(module, _IN) and x.dim() == _unbatched_dims(module)
    channel = 0 if unbatched else 1
    if x.dim() < 2 or x.shape[channel] != c:
        return f"{name}(num_features={c}) expects {c} channels at dim {channel}; got {shape_text(x.shape)}"
    if isinstance(module, _BN) and module.training and x.numel() // c <= 1:
        return (
            f"{name} in training mode needs more than 1 value per channel (batch statistics); got {shape_text(x.shape)}"
        )
    return None
