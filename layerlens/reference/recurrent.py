"""Recurrent layers, step by step over time: Elman RNN, LSTM and GRU, with
several layers, both directions, batch_first and initial states.

Weights follow PyTorch's layout: for layer l and direction suffix ("" or
"_reverse"), `weight_ih_l{l}`, `weight_hh_l{l}`, `bias_ih_l{l}`, `bias_hh_l{l}`
(and `weight_hr_l{l}` for an LSTM with projections), the gates stacked in
PyTorch's order: LSTM (i, f, g, o), GRU (r, z, n).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .activations import relu, sigmoid, tanh

Weights = Mapping[str, np.ndarray]
Step = Callable[[np.ndarray, tuple[np.ndarray, ...], Weights, str], tuple[np.ndarray, ...]]


def rnn(
    x: np.ndarray,
    weights: Weights,
    num_layers: int = 1,
    nonlinearity: str = "tanh",
    bidirectional: bool = False,
    batch_first: bool = False,
    h0: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act = tanh or relu.

    Returns (output, h_n): output of the top layer at every step, (T, N, D*H)
    (or (N, T, D*H) with batch_first), and the last state of every layer and
    direction, (num_layers*D, N, H), in the order layer 0 forward, layer 0
    backward, layer 1 forward, ...
    """
    act = tanh if nonlinearity == "tanh" else relu

    def step(x_t: np.ndarray, state: tuple[np.ndarray, ...], w: Weights, sfx: str) -> tuple[np.ndarray, ...]:
        (h,) = state
        return (act(_gates(x_t, h, w, sfx)),)

    out, states = _run(x, weights, num_layers, bidirectional, batch_first, (h0,), step)
    return out, states[0]


def lstm(
    x: np.ndarray,
    weights: Weights,
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),
    c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t)  (then h_t = W_hr h_t with projections).

    Returns (output, (h_n, c_n)) shaped as for `rnn`.
    """

    def step(x_t: np.ndarray, state: tuple[np.ndarray, ...], w: Weights, sfx: str) -> tuple[np.ndarray, ...]:
        h, c = state
        i, f, g, o = np.split(_gates(x_t, h, w, sfx), 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h = sigmoid(o) * tanh(c)
        if f"weight_hr{sfx}" in w:
            h = h @ w[f"weight_hr{sfx}"].T
        return h, c

    out, (h_n, c_n) = _run(x, weights, num_layers, bidirectional, batch_first, (h0, c0), step)
    return out, (h_n, c_n)


def gru(
    x: np.ndarray,
    weights: Weights,
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    h0: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z = sigmoid(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h_t = (1 - z) * n + z * h_{t-1}.

    Returns (output, h_n) shaped as for `rnn`.
    """

    def step(x_t: np.ndarray, state: tuple[np.ndarray, ...], w: Weights, sfx: str) -> tuple[np.ndarray, ...]:
        (h,) = state
        xi = x_t @ w[f"weight_ih{sfx}"].T + w.get(f"bias_ih{sfx}", 0)
        hh = h @ w[f"weight_hh{sfx}"].T + w.get(f"bias_hh{sfx}", 0)
        xr, xz, xn = np.split(xi, 3, axis=-1)
        hr, hz, hn = np.split(hh, 3, axis=-1)
        r, z = sigmoid(xr + hr), sigmoid(xz + hz)
        n = tanh(xn + r * hn)
        return ((1 - z) * n + z * h,)

    out, states = _run(x, weights, num_layers, bidirectional, batch_first, (h0,), step)
    return out, states[0]


def _gates(x_t: np.ndarray, h: np.ndarray, w: Weights, sfx: str) -> np.ndarray:
    """W_ih x_t + b_ih + W_hh h + b_hh (biases absent when bias=False)."""
    return (
        x_t @ w[f"weight_ih{sfx}"].T
        + w.get(f"bias_ih{sfx}", 0)
        + h @ w[f"weight_hh{sfx}"].T
        + w.get(f"bias_hh{sfx}", 0)
    )


def _run(
    x: np.ndarray,
    weights: Weights,
    num_layers: int,
    bidirectional: bool,
    batch_first: bool,
    initial: tuple[np.ndarray | None, ...],
    step: Step,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Run `step` over time, layer by layer and direction by direction."""
    unbatched = x.ndim == 2
    seq = x[:, None] if unbatched else (x.transpose(1, 0, 2) if batch_first else x)  # (T, N, F)
    dirs = 2 if bidirectional else 1
    finals: list[list[np.ndarray]] = [[] for _ in initial]
    for layer in range(num_layers):
        outputs = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            state = tuple(
                _initial(init, layer * dirs + d, seq, weights, sfx, unbatched, k) for k, init in enumerate(initial)
            )
            steps = range(seq.shape[0] - 1, -1, -1) if d else range(seq.shape[0])
            hs: list[np.ndarray] = [np.empty(0)] * seq.shape[0]
            for t in steps:
                state = step(seq[t], state, weights, sfx)
                hs[t] = state[0]
            outputs.append(np.stack(hs))
            for k, s in enumerate(state):
                finals[k].append(s)
        seq = np.concatenate(outputs, axis=-1)
    out = seq[:, 0] if unbatched else (seq.transpose(1, 0, 2) if batch_first else seq)
    stacked = tuple(np.stack(f)[:, 0] if unbatched else np.stack(f) for f in finals)
    return out, stacked


def _initial(
    given: np.ndarray | None, index: int, seq: np.ndarray, w: Weights, sfx: str, unbatched: bool, which: int
) -> np.ndarray:
    """The initial state of one layer and direction: given, or zeros. An LSTM's
    hidden state has the projection's width, its cell state the hidden size."""
    if given is not None:
        return given[index][None] if unbatched else given[index]
    hidden = w[f"weight_hh{sfx}"].shape[1] if which == 0 else w[f"weight_hh{sfx}"].shape[0] // 4
    return np.zeros((seq.shape[1], hidden), dtype=seq.dtype)
