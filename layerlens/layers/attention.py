"""Attention and Transformer layers: heads, widths and layout; what a failing
MultiheadAttention call expected; its numpy reference (scaled dot-product
attention per head, masks and layouts included). While a model with such
layers is traced, PyTorch's fused fast path is off, so their submodules are
called (and recorded)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..records import Check, LayerRecord
from ._helpers import array, batch_axis_check, copy_attrs, first_tensor, shape_text
from .activation import softmax
from .registry import Expected, LayerFamily, Probe, Unverifiable


def inspect_attention(module: nn.MultiheadAttention, record: LayerRecord) -> None:
    """embed_dim, num_heads, head_dim, batch_first, dropout, kdim/vdim."""
    copy_attrs(record, module, "embed_dim", "num_heads", "head_dim", "batch_first", "dropout",
               "kdim", "vdim", "add_zero_attn")  # fmt: skip
    record.details["bias"] = module.in_proj_bias is not None


def inspect_transformer_layer(module: Any, record: LayerRecord) -> None:
    """d_model, nhead, dim_feedforward, norm_first, batch_first."""
    attn = module.self_attn
    record.details.update(
        d_model=attn.embed_dim,
        nhead=attn.num_heads,
        dim_feedforward=module.linear1.out_features,
        norm_first=module.norm_first,
        batch_first=attn.batch_first,
    )


def inspect_transformer_stack(module: nn.Module, record: LayerRecord) -> None:
    """num_layers; and where an untraced call would give other numbers (see `_fused_difference`)."""
    copy_attrs(record, module, "num_layers")
    m = record.measures
    if m.get("fused_differs"):
        record.details["untraced_differs"] = (
            f"an untraced call takes the nested-tensor fast path, whose output is 0 at the "
            f"{int(m['fused_differs'])} positions src_key_padding_mask pads; this trace ran the unfused path, "
            f"which computes values there (elsewhere the two agree within {float(m['fused_elsewhere']):.2g})"
        )


def _fused_difference(
    module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, state: Any
) -> dict[str, Any]:
    """A TransformerEncoder given a key padding mask, in eval mode without
    autograd, runs PyTorch's nested-tensor fast path untraced: it returns 0 at
    the padded positions, where the unfused path a trace runs computes values.
    The call is run again the untraced way (only then) to say exactly where
    the numbers differ."""
    mask = kwargs.get("src_key_padding_mask", args[2] if len(args) > 2 else None)
    if (not isinstance(mask, torch.Tensor) or not isinstance(output, torch.Tensor) or module.training
            or torch.is_grad_enabled() or not getattr(module, "use_nested_tensor", False)
            or not bool(mask.any())):  # fmt: skip
        return {}
    mha = torch.backends.mha
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(True)
    try:
        untraced = module(*args, **kwargs)
    finally:
        mha.set_fastpath_enabled(before)
    if not isinstance(untraced, torch.Tensor) or untraced.shape != output.shape:
        return {}
    gap = (untraced - output).abs().amax(dim=-1)  # per position
    tol = 1e-3 * (1.0 + output.abs().amax())
    differs = gap > tol
    return {"fused_differs": differs.sum(), "fused_elsewhere": gap.masked_fill(differs, 0).amax()}


def attention_in_model(module: nn.MultiheadAttention, record: LayerRecord, root: LayerRecord) -> Iterator[Check]:
    """`attention_batch_axis`: a sequence-first attention (batch_first=False, as
    nn.MultiheadAttention and the Transformer layers default to) fed (B, T, E) data
    attends across the batch instead of along the sequence (see `batch_axis_check`)."""
    if module.batch_first:
        return
    found = batch_axis_check(record, root, "attention_batch_axis", "positions")
    if found is not None:
        yield found


def expect_attention(module: nn.MultiheadAttention, args: tuple[Any, ...]) -> str | None:
    """The query's last dim is embed_dim, and the layout batch_first says."""
    q = first_tensor(args)
    if q is None:
        return None
    layout = "(batch, seq, embed)" if module.batch_first else "(seq, batch, embed)"
    if q.dim() not in (2, 3) or q.shape[-1] != module.embed_dim:
        return (
            f"MultiheadAttention(embed_dim={module.embed_dim}, batch_first={module.batch_first}) "
            f"expects a query {layout} or (seq, embed); got {shape_text(q.shape)}"
        )
    return None


# -- the numpy reference ------------------------------------------------------------


def multi_head_attention(
    query: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    num_heads: int,
    weights: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    biases: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None] = (None,) * 4,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Batch-first attention: query (N, L, E), key (N, S, Ek), value (N, S, Ev).

    Each head h sees d = E / num_heads columns of Q = query Wq^T + bq,
    K = key Wk^T + bk and V = value Wv^T + bv, and computes
    A_h = softmax(Q_h K_h^T / sqrt(d) + mask) and A_h V_h; the heads'
    outputs are concatenated and projected: y = [A_1 V_1, ..., A_H V_H] Wo^T + bo.
    `weights` = (Wq, Wk, Wv, Wo), `biases` likewise; `mask` is additive
    (0 where attending is allowed, -inf where not), broadcast to (N, H, L, S).
    Returns y (N, L, E) and the attention weights (N, H, L, S).
    """
    (wq, wk, wv, wo), (bq, bk, bv, bo) = weights, biases
    n, length, e = query.shape
    d = e // num_heads

    def heads(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        y = x @ w.T + (b if b is not None else 0.0)
        return y.reshape(n, x.shape[1], num_heads, d).transpose(0, 2, 1, 3)  # (N, H, len, d)

    q, k, v = heads(query, wq, bq), heads(key, wk, bk), heads(value, wv, bv)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
    if mask is not None:
        scores = scores + mask
    with np.errstate(invalid="ignore"):  # a fully masked row is NaN, as in PyTorch
        attn = softmax(scores, axis=-1)
    out = (attn @ v).transpose(0, 2, 1, 3).reshape(n, length, e)
    y = out @ wo.T + (bo if bo is not None else 0.0)
    return y, attn


def reference_attention(m: nn.MultiheadAttention, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """MultiheadAttention through `multi_head_attention`, masks and layouts included."""
    if r.training and m.dropout > 0:
        raise Unverifiable("random dropout of attention weights in training mode")
    if m.bias_k is not None or m.add_zero_attn:
        raise Unverifiable("bias_k/bias_v and add_zero_attn are not recomputed")
    by_path = {t.path: (t, v) for t, v in zip(r.inputs, inputs, strict=False)}
    q, k, v = (_named(by_path, str(i), name) for i, name in enumerate(("query", "key", "value")))
    unbatched = q.ndim == 2
    q, k, v = (_batch_first(x, m.batch_first, unbatched) for x in (q, k, v))
    mask = _attention_mask(by_path, q.shape[0], m.num_heads)
    y, attn = multi_head_attention(q, k, v, m.num_heads, *_attention_params(m), mask=mask)
    y = y[0] if unbatched else (y if m.batch_first else y.transpose(1, 0, 2))
    if len(r.outputs) < 2:  # need_weights=False
        return Expected((y,), by="multi_head_attention")
    per_head = len(r.outputs[1].shape) == (3 if unbatched else 4)  # average_attn_weights=False
    weights = attn if per_head else attn.mean(axis=1)
    return Expected((y, weights[0] if unbatched else weights), by="multi_head_attention")


def _named(by_path: dict[str, tuple[Any, np.ndarray | None]], position: str, name: str) -> np.ndarray:
    found = by_path.get(position) or by_path.get(name)
    if found is None or found[1] is None:
        raise Unverifiable(f"its {name} was not recorded")
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


@contextlib.contextmanager
def unfused() -> Iterator[None]:
    """PyTorch's fused multi-head-attention fast path off for the duration: the
    fused kernel skips the submodules (`out_proj`, the Transformer layer's
    `linear1`, `norm1`, ...) a trace shows."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        yield
        return
    before = bool(mha.get_fastpath_enabled())
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


_COLOR = "#f7d4e6"
FAMILIES = (
    LayerFamily("attention", (nn.MultiheadAttention,), inspect=inspect_attention, expect=expect_attention,
                reference=reference_attention, in_model=attention_in_model, during_trace=unfused, color=_COLOR),
    LayerFamily("transformer_layer", (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer),
                inspect=inspect_transformer_layer, during_trace=unfused, color=_COLOR),
    LayerFamily("transformer_encoder", (nn.TransformerEncoder,), inspect=inspect_transformer_stack,
                probe=Probe(_fused_difference), during_trace=unfused, color=_COLOR),
    LayerFamily("transformer", (nn.TransformerDecoder, nn.Transformer), inspect=inspect_transformer_stack,
                during_trace=unfused, color=_COLOR),
)  # fmt: skip
