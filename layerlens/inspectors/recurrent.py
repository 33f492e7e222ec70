"""Recurrent layers (RNN, LSTM, GRU): configuration, sequence layout, and the
final-state check that shows what `batch_first` and `h_n[-1]` mean."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ..records import Check, LayerRecord
from ._common import copy_attrs, machine_eps, shape_text
from .registry import expectation, probe, register


@register(nn.RNNBase)
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


def _final_state(module: nn.Module, args: tuple[Any, ...], output: Any, state: Any) -> dict[str, Any]:
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


probe(nn.RNNBase)(_final_state)


@expectation(nn.RNNBase)
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
