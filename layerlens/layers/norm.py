"""Normalisation layers (BatchNorm, InstanceNorm, LayerNorm, GroupNorm, RMSNorm):
configuration; `norm_statistics`, the output recomputed from the input with the
statistics the layer should use, over the axes it should use them; what a
failing call expected; numpy references (BatchNorm's running-statistics update
included); and watch's alert for a BatchNorm left in eval mode while training."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..records import Check, LayerRecord
from ._helpers import array, copy_attrs, first_input, first_tensor, machine_eps, shape_text
from .norm_numpy import (
    BATCH_NORM,
    RMS,
    RMS_NORM,
    SAMPLE,
    STANDARD,
    layer_norm_like,
    layer_norm_on_cpu,
    running_stats_on_cpu,
)
from .registry import Expected, LayerFamily, Probe, Unverifiable

_BN = BATCH_NORM
_IN = nn.modules.instancenorm._InstanceNorm
_RMS_NORM: Any = RMS_NORM
_RMS: tuple[type, ...] = (_RMS_NORM,) if _RMS_NORM is not None else ()


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
    # the layer's own rounding grows with what the centring cancels: |x| scaled as y is (a channel of two
    # near-equal values far from 0 in a batch of 2 has |x|/sigma in the thousands while |y| is 1)
    # (observed: up to 1.5 eps * spread, in float32 and float64, for n from 2 to 32k)
    spread = float(m.get("norm_spread", 0.0))
    spread = spread if math.isfinite(spread) else 0.0  # an input with Inf/NaN is judged as before
    rounding = (64 + 4 * math.sqrt(n)) * (1 + scale) + (16 + 2 * math.log2(max(n, 1))) * spread
    tol = machine_eps(record.outputs[0].dtype) * rounding
    mode = "training" if record.training else "eval"
    message = (
        f"{record.type_name} ({mode}): y = {m['norm_formula']}, {m['norm_stats']}: "
        f"max |y - reference| = {diff:.3g} (tolerance {tol:.2g})"
    )
    yield Check("norm_statistics", diff <= tol, 0.0, diff, message)


def _norm_reference(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, state: Any
) -> dict[str, Any]:
    """Recompute the output on device in (at least) float32 and measure the gap."""
    return norm_measures(module, first_tensor(args), output)


def norm_measures(
    module: nn.Module, x: torch.Tensor | None, output: Any, then: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> dict[str, Any]:
    """`norm_statistics`' measures for `module` on input `x`: the output
    recomputed with the statistics the layer should use (followed by `then`, for
    a norm fused with an activation) and its largest gap to the real output."""
    if x is None or not isinstance(output, torch.Tensor) or x.numel() == 0 or output.shape != x.shape:
        return {}
    if then is None and (fast := layer_norm_on_cpu(module, x, output)) is not None:
        return fast
    rows = _rows(module, x)
    if then is None and (fast := running_stats_on_cpu(module, x, output, rows)) is not None:
        return fast
    dt = torch.promote_types(x.dtype, torch.float32)
    xf = x.detach().to(dt)
    ref, n, stats, formula, spread = _normalise(module, xf, rows)
    if then is not None:
        ref = then(ref).to(dt)
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
        "norm_spread": spread,
    }


def _rows(module: Any, x: torch.Tensor) -> int | None:
    """How many leading samples to check, or None when the input has no batch dim."""
    if isinstance(module, _IN) and x.dim() == _unbatched_dims(module):
        return None
    if layer_norm_like(module) and x.dim() <= len(module.normalized_shape):
        return None
    per_row = max(1, x.numel() // max(1, x.shape[0]))
    return max(1, SAMPLE // per_row)


def _normalise(module: Any, x: torch.Tensor, rows: int | None) -> tuple[torch.Tensor, int, str, str, Any]:
    """Reference output for the first `rows` samples, group size, the statistics used,
    and the spread (the largest |x| scaled as the output is: see `inspect_norm`)."""
    if isinstance(module, (_BN, _IN)):
        return _channelwise(module, x, rows)
    x = x[:rows] if rows is not None else x  # per-sample statistics: the rows alone suffice
    if isinstance(module, nn.LayerNorm):
        axes = tuple(range(x.dim() - len(module.normalized_shape), x.dim()))
        y, spread = _standardise(x, axes, module.eps)
        ref = _affine(y, module.weight, module.bias, None)
        return ref, _count(x, axes), f"per sample over axes {axes}", STANDARD, spread * _largest(module.weight)
    if _RMS_NORM is not None and isinstance(module, _RMS_NORM):
        axes = tuple(range(x.dim() - len(module.normalized_shape), x.dim()))
        eps = module.eps if module.eps is not None else torch.finfo(x.dtype).eps
        y = x * torch.rsqrt(x.pow(2).mean(dim=axes, keepdim=True) + eps)
        return _affine(y, module.weight, None, None), _count(x, axes), f"per sample over axes {axes}", RMS, 0.0
    groups = x.reshape(x.shape[0], module.num_groups, -1)  # GroupNorm
    y, spread = _standardise(groups, (2,), module.eps)
    stats = f"per sample and group of {module.num_channels // module.num_groups} channels"
    ref = _affine(y.reshape(x.shape), module.weight, module.bias, 1)
    return ref, groups.shape[2], stats, STANDARD, spread * _largest(module.weight)


def _channelwise(module: Any, x: torch.Tensor, rows: int | None) -> tuple[torch.Tensor, int, str, str, Any]:
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
    return torch.addcmul(shift, xs, scale), n, stats, STANDARD, (xs * scale).abs().amax()


def _moments(x: torch.Tensor, axes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance over `axes` (two passes: exact, and much faster on
    the CPU than `torch.var_mean`'s single-pass kernel)."""
    mean = x.mean(dim=axes, keepdim=True)
    d = x - mean
    return mean, (d * d).mean(dim=axes, keepdim=True)


def _unbatched_dims(module: Any) -> int:
    """An InstanceNorm's input rank without a batch dim (2 for InstanceNorm1d)."""
    return int(module._get_no_batch_dim())


def _standardise(x: torch.Tensor, axes: tuple[int, ...], eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x - mean) / sigma over `axes`, and the largest |x| / sigma (the spread)."""
    mean, var = _moments(x, axes)
    sigma = torch.sqrt(var + eps)
    return (x - mean) / sigma, (x.abs() / sigma).amax()


def _largest(weight: torch.Tensor | None) -> float:
    """The largest |weight| (1 without one): how far the affine scales the spread."""
    return float(weight.detach().abs().amax()) if weight is not None and weight.numel() else 1.0


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


def expect_norm(module: Any, args: tuple[Any, ...]) -> str | None:
    """Channel count, normalized_shape, group divisibility, batch size in training."""
    x = first_tensor(args)
    if x is None:
        return None
    name = type(module).__name__
    if layer_norm_like(module):
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


# -- the numpy reference ------------------------------------------------------------


def _np_standardise(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
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
    y = _np_affine(y, weight, bias, shape)
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
        y = _np_standardise(x, tuple(range(2, x.ndim)), eps)
    return _np_affine(y, weight, bias, shape)


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
    y = _np_standardise(x, axes, eps)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def rms_norm(
    x: np.ndarray, normalized_shape: tuple[int, ...], weight: np.ndarray | None = None, eps: float | None = None
) -> np.ndarray:
    """y = x / sqrt(mean(x^2) + eps) * w, the mean over the trailing
    `normalized_shape` axes; no centring and no bias (eps None: float32's
    machine epsilon)."""
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    e = float(np.finfo(np.float32).eps) if eps is None else eps
    y = x / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + e)
    return y * weight if weight is not None else y


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
    y = _np_standardise(grouped, (2,), eps).reshape(x.shape)
    return _np_affine(y, weight, bias, _channel_shape(x, 1))


def _np_affine(y: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, shape: list[int]) -> np.ndarray:
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def rounding_scale(x: np.ndarray, axes: tuple[int, ...], eps: float, weight: np.ndarray | None) -> float:
    """What a standardisation's float rounding is relative to: its mean is rounded
    relative to max |x| of the group, and dividing by sqrt(var + eps) scales that
    up, by up to 1/sqrt(eps) for a group with no spread (one element, a constant
    channel), whose exact output is the bias alone."""
    if not x.size:
        return 0.0
    with np.errstate(all="ignore"):
        peak = np.max(np.abs(x), axis=axes, keepdims=True)
        worst = float(np.max(peak / np.sqrt(x.var(axis=axes, keepdims=True) + eps)))
    gain = float(np.max(np.abs(weight))) if weight is not None and weight.size else 1.0
    return worst * gain if np.isfinite(worst) else 0.0


def reference_norm(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """Each norm through its numpy reference; a BatchNorm in training also has its
    running-statistics update compared (the call run again on a copy of the layer).
    Each says what its rounding is relative to (`rounding_scale`)."""
    x = first_input(inputs)
    if isinstance(m, _BN):
        return _reference_batch_norm(m, x, r)
    if isinstance(m, nn.LayerNorm):
        w, shape = array(m.weight), tuple(m.normalized_shape)
        scale = rounding_scale(x, tuple(range(x.ndim - len(shape), x.ndim)), m.eps, w)
        return Expected(layer_norm(x, shape, w, array(m.bias), m.eps), by="layer_norm", scale=scale)
    if isinstance(m, nn.GroupNorm):
        w = array(m.weight)
        scale = rounding_scale(x.reshape(x.shape[0], m.num_groups, -1), (2,), m.eps, w)
        return Expected(group_norm(x, m.num_groups, w, array(m.bias), m.eps), by="group_norm", scale=scale)
    if _RMS_NORM is not None and isinstance(m, _RMS_NORM):
        eps = m.eps if m.eps is not None else machine_eps(r.inputs[0].dtype)  # PyTorch's default: the input's
        return Expected(rms_norm(x, tuple(m.normalized_shape), array(m.weight), eps), by="rms_norm")
    if isinstance(m, _IN):
        unbatched = x.ndim == _unbatched_dims(m)
        running = m.track_running_stats and not r.training
        batched = x[None] if unbatched else x
        y = instance_norm(
            batched, array(m.weight), array(m.bias), m.eps,
            array(m.running_mean) if running else None, array(m.running_var) if running else None,
        )  # fmt: skip
        scale = 0.0 if running else rounding_scale(batched, tuple(range(2, batched.ndim)), m.eps, array(m.weight))
        return Expected(y[0] if unbatched else y, by="instance_norm", scale=scale)
    raise Unverifiable(f"no numpy reference for {type(m).__name__}")


def _reference_batch_norm(m: Any, x: np.ndarray, r: LayerRecord) -> Expected:
    tracked = int(m.num_batches_tracked) if m.num_batches_tracked is not None else 0
    y, mean, var = batch_norm(x, array(m.weight), array(m.bias), array(m.running_mean), array(m.running_var),
                              r.training, m.momentum, m.eps, tracked)  # fmt: skip
    also: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    if r.training and m.running_mean is not None and mean is not None and var is not None:
        sandbox = copy.deepcopy(m).train()
        with torch.no_grad():
            sandbox(torch.from_numpy(x).to(m.running_mean.dtype))
        got_mean, got_var = array(sandbox.running_mean), array(sandbox.running_var)
        assert got_mean is not None and got_var is not None
        also = ((got_mean, mean), (got_var, var))
    batch = r.training or m.running_mean is None
    scale = rounding_scale(x, tuple(a for a in range(x.ndim) if a != 1), m.eps, array(m.weight)) if batch else 0.0
    return Expected(y, by="batch_norm", also=also, scale=scale)


def channels_last_measures(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any,
                            state: Any) -> Any:  # fmt: skip
    """`norm_statistics` of a LayerNorm over the channels of (N, C, H, W): the
    plain LayerNorm check on the channels-last view."""
    x = first_tensor(args)
    if x is None or x.dim() != 4 or not isinstance(output, torch.Tensor) or output.dim() != 4:
        return {}
    return norm_measures(module, x.permute(0, 2, 3, 1), output.permute(0, 2, 3, 1))


def reference_channels_first_norm(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """numpy LayerNorm over axis 1 of (N, C, H, W)."""
    x = np.moveaxis(first_input(inputs), 1, -1)
    y = layer_norm(x, tuple(m.normalized_shape), array(m.weight), array(m.bias), m.eps)
    return Expected(np.moveaxis(y, -1, 1), by="layer_norm")


def batchnorm_mode_alert(module: nn.Module, model_training: bool) -> tuple[str, str] | None:
    """A BatchNorm in eval mode while the model trains: its statistics are frozen."""
    if model_training and not module.training:
        return "batchnorm_eval_in_training", "is in eval mode while the model trains: its running statistics are frozen"
    return None


_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
             nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)  # fmt: skip
_IN_TYPES = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
             nn.LazyInstanceNorm1d, nn.LazyInstanceNorm2d, nn.LazyInstanceNorm3d)  # fmt: skip
_PROBE = Probe(_norm_reference)
_COLOR = "#fbeaa5"
FAMILIES = (
    LayerFamily("batch_norm", _BN_TYPES, inspect=inspect_norm, probe=_PROBE, expect=expect_norm,
                reference=reference_norm, mode_alert=batchnorm_mode_alert,
                modal=lambda m: bool(m.track_running_stats), color=_COLOR),
    LayerFamily("instance_norm", _IN_TYPES, inspect=inspect_norm, probe=_PROBE, expect=expect_norm,
                reference=reference_norm, color=_COLOR),
    LayerFamily("norm", (nn.LayerNorm, nn.GroupNorm, *_RMS), inspect=inspect_norm, probe=_PROBE,
                expect=expect_norm, reference=reference_norm, color=_COLOR),
)  # fmt: skip
