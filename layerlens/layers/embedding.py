"""Embedding tables: index range and the padding row, what a failing call
expected, the numpy reference (a table lookup), and the index bound used for
random inputs made from shapes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..records import Check, LayerRecord
from ..tensor_stats import as_numpy
from ._helpers import array, copy_attrs, first_input, first_tensor
from .registry import Expected, LayerFamily, Unverifiable

_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


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
    table = as_numpy(module.weight)
    if table is not None:  # a CPU table: numpy reads the row at a fraction of torch's per-op cost
        row = table[idx]
        largest = float(np.maximum.reduce(np.abs(row), None)) if row.size else 0.0
    elif module.weight.is_meta:
        largest = 0.0
    else:
        with torch.no_grad():
            largest = float(module.weight[idx].abs().max())
    ok = largest == 0.0
    message = f"weight[padding_idx={idx}] is {'all zero' if ok else f'not zero (max |w| = {largest:.3g})'}"
    return Check("embedding_padding_row", ok, 0.0, largest, message)


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


def embedding(indices: np.ndarray, weight: np.ndarray, padding_idx: int | None = None) -> np.ndarray:
    """y[..., :] = W[index]: row `index` of the table, for every index.

    `padding_idx` does not change the forward pass: its row is whatever the
    table holds (zero when initialised by PyTorch, and it receives no
    gradient). Indices must lie in [0, num_embeddings).
    """
    idx = np.asarray(indices)
    if idx.size and (idx.min() < 0 or idx.max() >= weight.shape[0]):
        raise IndexError(f"indices span [{idx.min()}, {idx.max()}], outside [0, {weight.shape[0]})")
    del padding_idx
    return weight[idx]


def reference_embedding(m: nn.Embedding, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """`embedding` with the layer's table (not with `max_norm`, which renormalises it)."""
    if m.max_norm is not None:
        raise Unverifiable("max_norm renormalises the weights during the forward")
    weight = array(m.weight)
    assert weight is not None
    return Expected(embedding(first_input(inputs).astype(np.int64), weight, m.padding_idx), by="embedding")


def index_limit(module: nn.Embedding | nn.EmbeddingBag) -> int:
    """Random integer inputs must be valid rows of the table."""
    return int(module.num_embeddings)


FAMILIES = (
    LayerFamily("embedding", (nn.Embedding,), inspect=inspect_embedding, expect=expect_embedding,
                reference=reference_embedding, index_limit=index_limit, color="#c9ecd1"),
    LayerFamily("embedding_bag", (nn.EmbeddingBag,), inspect=inspect_embedding, expect=expect_embedding,
                index_limit=index_limit, color="#c9ecd1"),
)  # fmt: skip
