"""Attention and Transformer layers: heads, widths, layout."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..records import LayerRecord
from ._common import copy_attrs, first_tensor, shape_text
from .registry import expectation, register


@register(nn.MultiheadAttention)
def inspect_attention(module: nn.MultiheadAttention, record: LayerRecord) -> None:
    """embed_dim, num_heads, head_dim, batch_first, dropout, kdim/vdim."""
    copy_attrs(record, module, "embed_dim", "num_heads", "head_dim", "batch_first", "dropout",
               "kdim", "vdim", "add_zero_attn")  # fmt: skip
    record.details["bias"] = module.in_proj_bias is not None


@register((nn.TransformerEncoderLayer, nn.TransformerDecoderLayer))
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


@register((nn.TransformerEncoder, nn.TransformerDecoder))
def inspect_transformer_stack(module: nn.Module, record: LayerRecord) -> None:
    """num_layers."""
    copy_attrs(record, module, "num_layers")


@expectation(nn.MultiheadAttention)
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
