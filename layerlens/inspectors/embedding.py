"""Embedding tables: index range and the padding row."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..records import Check, LayerRecord
from ._common import copy_attrs, first_tensor
from .registry import expectation, register

_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


@register(_EMBEDDINGS)
def inspect_embedding(module: nn.Embedding | nn.EmbeddingBag, record: LayerRecord) -> Iterator[Check]:
    """num_embeddings, embedding_dim, padding_idx; `embedding_index_range` (from the
    input's statistics) and `embedding_padding_row` (the padding row is zero)."""
    copy_attrs(record, module, "num_embeddings", "embedding_dim", "padding_idx", "max_norm",
               "scale_grad_by_freq", "sparse", "mode")  # fmt: skip
    if record.inputs and record.inputs[0].stats is not None:
        yield _index_range(module.num_embeddings, record.inputs[0].stats.min, record.inputs[0].stats.max)
    if module.padding_idx is not None:
        yield _padding_row(module)


def _index_range(n: int, lo: float, hi: float) -> Check:
    ok = lo >= 0 and hi < n
    actual = (int(lo), int(hi))
    verdict = "inside" if ok else "outside"
    message = f"indices span [{int(lo)}, {int(hi)}], {verdict} [0, num_embeddings) = [0, {n})"
    return Check("embedding_index_range", ok, (0, n - 1), actual, message)


def _padding_row(module: nn.Embedding | nn.EmbeddingBag) -> Check:
    idx = module.padding_idx
    assert idx is not None
    with torch.no_grad():
        largest = float(module.weight[idx].abs().max()) if not module.weight.is_meta else 0.0
    ok = largest == 0.0
    message = f"weight[padding_idx={idx}] is {'all zero' if ok else f'not zero (max |w| = {largest:.3g})'}"
    return Check("embedding_padding_row", ok, 0.0, largest, message)


@expectation(_EMBEDDINGS)
def expect_embedding(module: nn.Embedding | nn.EmbeddingBag, args: tuple[Any, ...]) -> str | None:
    """Integer indices inside [0, num_embeddings)."""
    x = first_tensor(args)
    if x is None:
        return None
    name = type(module).__name__
    if x.is_floating_point() or x.is_complex():
        return f"{name} expects integer indices (torch.long or torch.int), got {x.dtype}"
    if x.numel() == 0:
        return None
    lo, hi = int(x.min()), int(x.max())
    n = module.num_embeddings
    if lo < 0 or hi >= n:
        return f"{name}(num_embeddings={n}) expects indices in [0, {n}); got indices in [{lo}, {hi}]"
    return None
