"""Convolutions (cross-correlation, as in PyTorch), 1d and 2d, written as a sum
over kernel offsets."""

from __future__ import annotations

import numpy as np

_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def conv1d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int = 1,
    padding: int | str = 0,
    dilation: int = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """y[n, o, l] = b[o] + sum_{c in o's group} sum_k W[o, c, k] * x_pad[n, c, l*stride + k*dilation]

    for x of shape (N, C_in, L) or (C_in, L) and W of shape (C_out, C_in/groups, K).
    Output length: floor((L + 2*padding - dilation*(K-1) - 1)/stride + 1).
    `padding="same"` pads (dilation*(K-1)) in total, the extra one on the right.
    """
    y = conv2d(
        x[..., None, :],
        weight[..., None, :],
        bias,
        (1, stride),
        (0, padding) if isinstance(padding, int) else padding,
        (1, dilation),
        groups,
        padding_mode,
    )
    return y[..., 0, :]


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | str | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """y[n, o, i, j] = b[o] + sum_{c, p, q} W[o, c, p, q] * x_pad[n, g*C_in/groups + c, i*s_h + p*d_h, j*s_w + q*d_w]

    where g is output channel o's group; x of shape (N, C_in, H, W) or (C_in, H, W).
    """
    batched = x.ndim == 4
    x = x if batched else x[None]
    s, d = _pair(stride), _pair(dilation)
    kh, kw = weight.shape[2:]
    x = _pad(x, padding, (kh, kw), d, padding_mode)
    n, c_in, h, w = x.shape
    out_h = (h - d[0] * (kh - 1) - 1) // s[0] + 1
    out_w = (w - d[1] * (kw - 1) - 1) // s[1] + 1
    c_out = weight.shape[0]
    per_in, per_out = c_in // groups, c_out // groups
    y = np.zeros((n, c_out, out_h, out_w), dtype=np.result_type(x, weight))
    for g in range(groups):
        xs = x[:, g * per_in : (g + 1) * per_in]
        ws = weight[g * per_out : (g + 1) * per_out]
        for p in range(kh):
            for q in range(kw):
                window = xs[
                    :,
                    :,
                    p * d[0] : p * d[0] + s[0] * (out_h - 1) + 1 : s[0],
                    q * d[1] : q * d[1] + s[1] * (out_w - 1) + 1 : s[1],
                ]
                y[:, g * per_out : (g + 1) * per_out] += np.einsum("nchw,oc->nohw", window, ws[:, :, p, q])
    if bias is not None:
        y += bias[None, :, None, None]
    return y if batched else y[0]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pad(
    x: np.ndarray, padding: int | str | tuple[int, int], kernel: tuple[int, int], d: tuple[int, int], mode: str
) -> np.ndarray:
    """Pad H and W: symmetric for numbers; for "same", total dilation*(k-1) with
    the odd one on the right (PyTorch's choice); nothing for "valid"."""
    if padding == "valid":
        return x
    if padding == "same":
        totals = [d[i] * (kernel[i] - 1) for i in range(2)]
        widths = [(t // 2, t - t // 2) for t in totals]
    else:
        ph, pw = _pair(padding)  # type: ignore[arg-type]
        widths = [(ph, ph), (pw, pw)]
    if not any(a or b for a, b in widths):
        return x
    return np.pad(x, [(0, 0), (0, 0), *widths], mode=_PAD_MODES[mode])  # type: ignore[call-overload]
