"""How each built-in layer is recomputed by its numpy reference: read the
module's parameters and settings, call `layerlens.reference`, return the
expected outputs in the order of the record's outputs (None: not compared).

A reference raises `UnverifiableError` when a call cannot be recomputed (random
dropout between RNN layers, packed sequences, ...): the layer is then listed
as unchecked, with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from .. import reference as ref
from ..inspectors.registry import register_reference
from ..records import LayerRecord

Inputs = tuple[np.ndarray | None, ...]


class UnverifiableError(Exception):
    """This call cannot be recomputed by the reference; the message says why."""


def array(t: Any) -> np.ndarray | None:
    """A parameter or buffer as float64 numpy (None stays None)."""
    return None if t is None else t.detach().cpu().double().numpy()


def _x(inputs: Inputs, k: int = 0) -> np.ndarray:
    if len(inputs) <= k or inputs[k] is None:
        raise UnverifiableError(f"positional input {k} was not recorded")
    value = inputs[k]
    assert value is not None
    return value


@register_reference(nn.Linear)
def linear(m: nn.Linear, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    return ref.linear(_x(inputs), array(m.weight), array(m.bias))  # type: ignore[arg-type]


@register_reference(nn.Sigmoid)
def sigmoid(m: nn.Module, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    return ref.sigmoid(_x(inputs))


@register_reference(nn.Tanh)
def tanh(m: nn.Module, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    return ref.tanh(_x(inputs))


@register_reference(nn.ReLU)
def relu(m: nn.Module, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    return ref.relu(_x(inputs))


@register_reference(nn.Softmax)
def softmax(m: nn.Softmax, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    x = _x(inputs)
    dim = m.dim if m.dim is not None else (0 if x.ndim in (0, 1, 3) else 1)  # PyTorch's legacy choice
    return ref.softmax(x, axis=dim)


@register_reference(nn.Identity)
def identity(m: nn.Module, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    return _x(inputs)


@register_reference(nn.Flatten)
def flatten(m: nn.Flatten, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    x = _x(inputs)
    start, end = m.start_dim % x.ndim, m.end_dim % x.ndim
    return x.reshape(*x.shape[:start], -1, *x.shape[end + 1 :])


@register_reference(nn.Embedding)
def embedding(m: nn.Embedding, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    if m.max_norm is not None:
        raise UnverifiableError("max_norm renormalises the weights during the forward")
    return ref.embedding(_x(inputs).astype(np.int64), array(m.weight), m.padding_idx)  # type: ignore[arg-type]


@register_reference(nn.Conv1d)
def conv1d(m: nn.Conv1d, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    pad = m.padding if isinstance(m.padding, str) else m.padding[0]
    w, b = array(m.weight), array(m.bias)
    return ref.conv1d(_x(inputs), w, b, m.stride[0], pad, m.dilation[0], m.groups, m.padding_mode)  # type: ignore[arg-type]


@register_reference(nn.Conv2d)
def conv2d(m: nn.Conv2d, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    w, b = array(m.weight), array(m.bias)
    return ref.conv2d(_x(inputs), w, b, m.stride, m.padding, m.dilation, m.groups, m.padding_mode)  # type: ignore[arg-type]


@register_reference(nn.MaxPool1d)
def max_pool1d(m: Any, inputs: Inputs, r: LayerRecord) -> tuple[np.ndarray | None, ...]:
    y = ref.max_pool1d(_x(inputs), m.kernel_size, m.stride or m.kernel_size, m.padding, m.dilation, m.ceil_mode)
    return (y, None) if m.return_indices else (y,)  # indices are not compared


@register_reference(nn.MaxPool2d)
def max_pool2d(m: Any, inputs: Inputs, r: LayerRecord) -> tuple[np.ndarray | None, ...]:
    y = ref.max_pool2d(_x(inputs), m.kernel_size, m.stride or m.kernel_size, m.padding, m.dilation, m.ceil_mode)
    return (y, None) if m.return_indices else (y,)


@register_reference(nn.AvgPool1d)
def avg_pool1d(m: Any, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    return ref.avg_pool1d(_x(inputs), m.kernel_size[0], m.stride[0], m.padding[0], m.ceil_mode, m.count_include_pad)


@register_reference(nn.AvgPool2d)
def avg_pool2d(m: Any, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    x = _x(inputs)
    return ref.avg_pool2d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)


@register_reference((nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d))
def adaptive_pool1d(m: Any, inputs: Inputs, r: LayerRecord) -> tuple[np.ndarray | None, ...]:
    size = m.output_size if isinstance(m.output_size, int) else m.output_size[0]
    if isinstance(m, nn.AdaptiveAvgPool1d):
        return (ref.adaptive_avg_pool1d(_x(inputs), size),)
    return (ref.adaptive_max_pool1d(_x(inputs), size), None)


@register_reference((nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))
def adaptive_pool2d(m: Any, inputs: Inputs, r: LayerRecord) -> tuple[np.ndarray | None, ...]:
    size = (m.output_size, m.output_size) if isinstance(m.output_size, int) else tuple(m.output_size)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return (ref.adaptive_avg_pool2d(_x(inputs), size),)
    return (ref.adaptive_max_pool2d(_x(inputs), size), None)


@register_reference(nn.Sequential)
def empty_sequential(m: nn.Sequential, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    if len(m):
        raise UnverifiableError("a Sequential whose children did not run")
    return _x(inputs)  # an empty Sequential is the identity


def _recurrent_setup(m: nn.RNNBase, inputs: Inputs, r: LayerRecord) -> tuple[np.ndarray, dict[str, Any], Any]:
    if any(t.path == "0.batch_sizes" for t in r.inputs):
        raise UnverifiableError("packed sequences are not recomputed")
    if r.training and m.dropout and m.num_layers > 1:
        raise UnverifiableError("random dropout between layers in training mode")
    weights = {name: array(p) for name, p in m.named_parameters()}
    opts = {"num_layers": m.num_layers, "bidirectional": m.bidirectional, "batch_first": m.batch_first}
    return _x(inputs), {"weights": weights, **opts}, _hidden(inputs, r)


@register_reference(nn.RNN)
def rnn(m: nn.RNN, inputs: Inputs, r: LayerRecord) -> tuple[np.ndarray, ...]:
    x, opts, (h0, _) = _recurrent_setup(m, inputs, r)
    out, h = ref.rnn(x, nonlinearity=m.nonlinearity, h0=h0, **opts)
    return out, h


@register_reference(nn.LSTM)
def lstm(m: nn.LSTM, inputs: Inputs, r: LayerRecord) -> tuple[np.ndarray, ...]:
    x, opts, (h0, c0) = _recurrent_setup(m, inputs, r)
    out, (h, c) = ref.lstm(x, h0=h0, c0=c0, **opts)
    return out, h, c


@register_reference(nn.GRU)
def gru(m: nn.GRU, inputs: Inputs, r: LayerRecord) -> tuple[np.ndarray, ...]:
    x, opts, (h0, _) = _recurrent_setup(m, inputs, r)
    out, h = ref.gru(x, h0=h0, **opts)
    return out, h


def _hidden(inputs: Inputs, r: LayerRecord) -> tuple[np.ndarray | None, np.ndarray | None]:
    """h0 (and c0) from the call's second positional argument, when given."""
    by_path = {t.path: value for t, value in zip(r.inputs, inputs, strict=False)}
    h0 = by_path.get("1", by_path.get("1.0"))
    return h0, by_path.get("1.1")


@register_reference(nn.modules.batchnorm._BatchNorm)
def batch_norm(m: Any, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    y, _, _ = ref.batch_norm(
        _x(inputs), array(m.weight), array(m.bias), array(m.running_mean), array(m.running_var),
        training=r.training, momentum=m.momentum, eps=m.eps,
        num_batches_tracked=int(m.num_batches_tracked) if m.num_batches_tracked is not None else 0,
    )  # fmt: skip
    return y


@register_reference(nn.LayerNorm)
def layer_norm(m: nn.LayerNorm, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    return ref.layer_norm(_x(inputs), tuple(m.normalized_shape), array(m.weight), array(m.bias), m.eps)


@register_reference(nn.GroupNorm)
def group_norm(m: nn.GroupNorm, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    return ref.group_norm(_x(inputs), m.num_groups, array(m.weight), array(m.bias), m.eps)


@register_reference(nn.modules.instancenorm._InstanceNorm)
def instance_norm(m: Any, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    x = _x(inputs)
    unbatched = x.ndim == m._get_no_batch_dim()
    running = m.track_running_stats and not r.training
    y = ref.instance_norm(
        x[None] if unbatched else x, array(m.weight), array(m.bias), m.eps,
        array(m.running_mean) if running else None, array(m.running_var) if running else None,
    )  # fmt: skip
    return y[0] if unbatched else y


@register_reference(nn.modules.dropout._DropoutNd)
def dropout(m: Any, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    x = _x(inputs)
    if not r.training:
        return x
    if isinstance(m, (nn.AlphaDropout, nn.FeatureAlphaDropout)):
        raise UnverifiableError("alpha dropout's training transform is not recomputed")
    observed = r.outputs[0].value if r.outputs else None
    if observed is None:
        raise UnverifiableError("its output was not recorded, so its mask is unknown")
    mask = (observed != 0).astype(np.float64)  # the mask the layer drew, read off its output
    return ref.dropout(x, mask, m.p)


@register_reference(nn.MultiheadAttention)
def multi_head_attention(m: nn.MultiheadAttention, inputs: Inputs, r: LayerRecord) -> tuple[np.ndarray, ...]:
    if r.training and m.dropout > 0:
        raise UnverifiableError("random dropout of attention weights in training mode")
    if m.bias_k is not None or m.add_zero_attn:
        raise UnverifiableError("bias_k/bias_v and add_zero_attn are not recomputed")
    by_path = {t.path: (t, v) for t, v in zip(r.inputs, inputs, strict=False)}
    q, k, v = (_named(by_path, str(i), name) for i, name in enumerate(("query", "key", "value")))
    unbatched = q.ndim == 2
    q, k, v = (_batch_first(x, m.batch_first, unbatched) for x in (q, k, v))
    mask = _attention_mask(by_path, q.shape[0], m.num_heads)
    y, attn = ref.multi_head_attention(q, k, v, m.num_heads, *_attention_params(m), mask=mask)
    y = y[0] if unbatched else (y if m.batch_first else y.transpose(1, 0, 2))
    if len(r.outputs) < 2:  # need_weights=False
        return (y,)
    per_head = len(r.outputs[1].shape) == (3 if unbatched else 4)  # average_attn_weights=False
    weights = attn if per_head else attn.mean(axis=1)
    return y, weights[0] if unbatched else weights


def _named(by_path: dict[str, tuple[Any, np.ndarray | None]], position: str, name: str) -> np.ndarray:
    found = by_path.get(position) or by_path.get(name)
    if found is None or found[1] is None:
        raise UnverifiableError(f"its {name} was not recorded")
    return found[1]


def _batch_first(x: np.ndarray, batch_first: bool, unbatched: bool) -> np.ndarray:
    if unbatched:
        return x[None]
    return x if batch_first else x.transpose(1, 0, 2)


def _attention_mask(by_path: dict[str, Any], n: int, heads: int) -> np.ndarray | None:
    """attn_mask and key_padding_mask as one additive mask, broadcastable to (N, H, L, S):
    a boolean mask is -inf where True (not allowed to attend), a float mask is added."""
    total: np.ndarray | None = None
    for name in ("attn_mask", "key_padding_mask"):
        if name not in by_path or by_path[name][1] is None:
            continue
        info, value = by_path[name]
        mask = np.where(value != 0, -np.inf, 0.0) if info.dtype == "bool" else value
        if name == "key_padding_mask":
            mask = mask.reshape(n, 1, 1, -1)
        elif mask.ndim == 3:  # (N * H, L, S)
            mask = mask.reshape(n, heads, *mask.shape[1:])
        total = mask if total is None else total + mask
    return total


def _attention_params(m: nn.MultiheadAttention) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(Wq, Wk, Wv, Wo) and (bq, bk, bv, bo), from the packed or the separate projections."""
    e = m.embed_dim
    packed = array(m.in_proj_weight) if m._qkv_same_embed_dim else None
    if packed is not None:
        projections: tuple[np.ndarray | None, ...] = (packed[:e], packed[e : 2 * e], packed[2 * e :])
    else:
        projections = (array(m.q_proj_weight), array(m.k_proj_weight), array(m.v_proj_weight))
    b = array(m.in_proj_bias)
    bq, bk, bv = (None, None, None) if b is None else (b[:e], b[e : 2 * e], b[2 * e :])
    return (*projections, array(m.out_proj.weight)), (bq, bk, bv, array(m.out_proj.bias))


@register_reference(nn.MSELoss)
def mse_loss(m: nn.MSELoss, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    return ref.mse_loss(_x(inputs, 0), _x(inputs, 1), m.reduction)


@register_reference(nn.CrossEntropyLoss)
def cross_entropy(m: nn.CrossEntropyLoss, inputs: Inputs, r: LayerRecord) -> np.ndarray:
    target = _x(inputs, 1)
    if not np.all(np.equal(np.mod(target, 1), 0)) or target.ndim == _x(inputs, 0).ndim:
        raise UnverifiableError("class-probability targets are not recomputed")
    return ref.cross_entropy(
        _x(inputs, 0), target.astype(np.int64), array(m.weight), m.ignore_index, m.reduction, m.label_smoothing
    )
