"""Linear maps and table lookups."""

from __future__ import annotations

import numpy as np


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """y = x W^T + b, for x of shape (..., in_features) and W of shape (out_features, in_features)."""
    y = x @ weight.T
    return y + bias if bias is not None else y


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
