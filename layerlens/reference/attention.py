"""Multi-head scaled dot-product attention, as in "Attention Is All You Need"."""

from __future__ import annotations

import numpy as np

from .activations import softmax


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
