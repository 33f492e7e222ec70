"""Recurrent layers (RNN, LSTM, GRU): configuration, sequence layout, the
final-state check that shows what `batch_first` and `h_n[-1]` mean, what a
failing call expected, and numpy references that run step by step over time.

The references follow PyTorch's weight layout: for layer l and direction suffix
("" or "_reverse"), `weight_ih_l{l}`, `weight_hh_l{l}`, `bias_ih_l{l}`,
`bias_hh_l{l}` (and `weight_hr_l{l}` for an LSTM with projections), the gates
stacked in PyTorch's order: LSTM (i, f, g, o), GRU (r, z, n).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ..records import Check, LayerRecord
from ._helpers import array, batch_axis_check, copy_attrs, first_input, machine_eps, shape_text
from .activation import relu, sigmoid, tanh
from .registry import Expected, LayerFamily, Probe, Unverifiable


def inspect_rnn(module: nn.RNNBase, record: LayerRecord) -> Iterator[Check]:
    """Sizes and flags; `seq_len`/`batch` as the layer reads its input;
    `rnn_final_state` (the top layer's last output equals `h_n`)."""
    copy_attrs(record, module, "mode", "input_size", "hidden_size", "num_layers", "batch_first",
               "bidirectional", "dropout", "bias", "nonlinearity")  # fmt: skip
    if getattr(module, "proj_size", 0):
        record.details["proj_size"] = module.proj_size
    if any(t.path == "0.batch_sizes" for t in record.inputs):
        record.details["packed"] = True
    elif record.inputs:
        shape = record.inputs[0].shape
        if len(shape) == 3:
            batch, seq = (shape[0], shape[1]) if module.batch_first else (shape[1], shape[0])
            record.details.update(seq_len=seq, batch=batch)
        elif len(shape) == 2:
            record.details.update(seq_len=shape[0], batch=None)
    if "final_diff" in record.measures:
        yield _final_state_check(module, record)


def recurrent_in_model(module: nn.RNNBase, record: LayerRecord, root: LayerRecord) -> Iterator[Check]:
    """`rnn_batch_axis`: a time-major layer (batch_first=False) fed (B, T, F) data (see
    `batch_axis_check`); a packed sequence has no such question."""
    if module.batch_first or any(t.path == "0.batch_sizes" for t in record.inputs):
        return
    found = batch_axis_check(record, root, "rnn_batch_axis", "time steps")
    if found is not None:
        yield found


def _final_state_check(module: nn.RNNBase, record: LayerRecord) -> Check:
    m = record.measures
    diff, scale = float(m["final_diff"]), float(m["final_scale"])
    tol = 8 * machine_eps(record.outputs[0].dtype) * max(1.0, scale)
    ok = diff <= tol
    where = m["where"]
    both = " and the backward direction's first step equals h_n[-1]" if module.bidirectional else ""
    message = (
        f"the top layer's last time step {where} equals h_n[{-2 if module.bidirectional else -1}]{both}: "
        f"max |diff| = {diff:.3g} (tolerance {tol:.2g})"
    )
    return Check("rnn_final_state", ok, 0.0, diff, message)


def _final_state(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, state: Any
) -> dict[str, Any]:
    """Compare the output sequence's ends with the final hidden state, on device."""
    assert isinstance(module, nn.RNNBase)
    out, hidden = output
    h_n = hidden[0] if isinstance(hidden, tuple) else hidden
    dirs = 2 if module.bidirectional else 1
    if isinstance(out, PackedSequence):
        padded, lengths = pad_packed_sequence(out, batch_first=True)
        rows = torch.arange(padded.shape[0], device=padded.device)
        last = padded[rows, (lengths - 1).to(padded.device)]
        first = padded[:, 0]
        where = "(per sequence, at its own length)"
    else:
        time = 0 if out.dim() == 2 or not module.batch_first else 1
        last, first = out.select(time, -1), out.select(time, 0)
        where = f"(output[{':, ' if time else ''}-1], batch_first={module.batch_first})"
    width = last.shape[-1] // dirs
    diffs = [(last[..., :width] - h_n[-dirs]).abs().amax()]
    if dirs == 2:
        diffs.append((first[..., width:] - h_n[-1]).abs().amax())
    return {
        "final_diff": torch.stack(diffs).amax(),
        "final_scale": h_n.detach().abs().amax(),
        "where": where,
    }


def expect_rnn(module: nn.RNNBase, args: tuple[Any, ...]) -> str | None:
    """Input rank and feature size (with a `batch_first` hint when dims look
    swapped) and the initial hidden state's shape."""
    x = args[0] if args else None
    if isinstance(x, PackedSequence):
        x = x.data
    if not isinstance(x, torch.Tensor):
        return None
    name = f"{type(module).__name__}(input_size={module.input_size}, batch_first={module.batch_first})"
    layout = "(batch, seq, feature)" if module.batch_first else "(seq, batch, feature)"
    if x.dim() not in (2, 3):
        return f"{name} expects a 3-d input {layout} or 2-d (seq, feature); got {shape_text(x.shape)}"
    if x.shape[-1] != module.input_size:
        hint = ""
        if module.input_size in tuple(x.shape[:-1]):
            hint = f"; the input_size appears in another dim, so the dims look swapped ({layout} expected)"
        return f"{name} expects last dim {module.input_size} in {layout}; got {shape_text(x.shape)}{hint}"
    if len(args) > 1 and args[1] is not None:
        return _expect_hidden(module, x, args[1])
    return None


def _expect_hidden(module: nn.RNNBase, x: torch.Tensor, hx: Any) -> str | None:
    h0 = hx[0] if isinstance(hx, tuple) else hx
    if not isinstance(h0, torch.Tensor):
        return None
    dirs_layers = module.num_layers * (2 if module.bidirectional else 1)
    width = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
    if x.dim() == 3:
        batch = x.shape[0] if module.batch_first else x.shape[1]
        want: tuple[int, ...] = (dirs_layers, batch, width)
    else:
        want = (dirs_layers, width)
    if tuple(h0.shape) != want:
        return (
            f"{type(module).__name__} expects h_0 of shape (num_layers*num_directions, batch, hidden) "
            f"= {shape_text(want)}, even with batch_first; got {shape_text(h0.shape)}"
        )
    return None


# -- the numpy reference ------------------------------------------------------------

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


def reference_rnn(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """RNN, LSTM and GRU from their weights, the input and the initial states given."""
    if any(t.path == "0.batch_sizes" for t in r.inputs):
        raise Unverifiable("packed sequences are not recomputed")
    if r.training and m.dropout and m.num_layers > 1:
        raise Unverifiable("random dropout between layers in training mode")
    x = first_input(inputs)
    weights = {name: array(p) for name, p in m.named_parameters()}
    opts: dict[str, Any] = {"weights": weights, "num_layers": m.num_layers, "bidirectional": m.bidirectional,
                            "batch_first": m.batch_first}  # fmt: skip
    h0, c0 = _hidden(inputs, r)
    if isinstance(m, nn.LSTM):
        out, (h, c) = lstm(x, h0=h0, c0=c0, **opts)
        return Expected((out, h, c), by="lstm")
    if isinstance(m, nn.GRU):
        out, h = gru(x, h0=h0, **opts)
        return Expected((out, h), by="gru")
    out, h = rnn(x, nonlinearity=m.nonlinearity, h0=h0, **opts)
    return Expected((out, h), by="rnn")


def _hidden(inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> tuple[np.ndarray | None, np.ndarray | None]:
    """h0 (and c0) from the call's second positional argument, when given."""
    by_path = {t.path: value for t, value in zip(r.inputs, inputs, strict=False)}
    h0 = by_path.get("1", by_path.get("1.0"))
    return h0, by_path.get("1.1")


FAMILIES = (
    LayerFamily("recurrent", (nn.RNN, nn.LSTM, nn.GRU), inspect=inspect_rnn, probe=Probe(_final_state),
                expect=expect_rnn, reference=reference_rnn, in_model=recurrent_in_model, color="#e0d4f7"),
)  # fmt: skip
