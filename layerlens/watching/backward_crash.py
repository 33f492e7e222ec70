"""A backward that raised, explained in the model's terms. Two of autograd's errors
point at a tensor, not at the code that made the mistake:

- "Trying to backward through the graph a second time": an input of the model
  still carries an earlier step's graph (a recurrent hidden state passed on
  without `.detach()`), so this backward runs into the freed one;
- "modified by an inplace operation": a tensor the backward needs was changed
  in place after it was made; a trace of the same batch (which changes nothing)
  finds the in-place operations on a tensor of that shape, and whose code ran them;
- "does not require grad and does not have a grad_fn": the forward ran under
  `torch.no_grad()`, or every parameter is frozen.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..flatten import flatten
from ..inputs import positional_names

Found = tuple[str, str, str]  # layer, type name, message
_INPLACE = re.compile(r"modified by an inplace operation: \[\S+ \[([\d, ]*)\]\], which is output \d+ of (\w+)")


def explain(error: BaseException, model: nn.Module, call: tuple[tuple[Any, ...], dict[str, Any]] | None,
            trace: Callable[..., Any], grad_off: bool = False) -> Found | None:  # fmt: skip
    """What the model did to make this backward error, or None when it is not one we know.
    `grad_off`: the model's latest training forward ran with gradients off."""
    text = str(error)
    if "does not require grad and does not have a grad_fn" in text:
        return _no_graph(model, grad_off)
    if call is None:
        return None
    if "backward through the graph a second time" in text:
        return _stale_input(model, call)
    found = _INPLACE.search(text)
    if found is not None:
        shape = tuple(int(d) for d in found.group(1).split(",") if d.strip())
        return _inplace(model, call, shape, re.sub(r"Backward\d*$", "", found.group(2)), trace)
    return None


def _no_graph(model: nn.Module, grad_off: bool) -> Found | None:
    """A loss with no graph behind it: the forward ran with gradients off, or nothing trains."""
    if grad_off:
        why = (
            "the model's latest training forward ran with gradients off (under torch.no_grad() or "
            "torch.inference_mode()), so the loss has no graph to run backward through: take the training "
            "forward out of it"
        )
    elif not any(p.requires_grad for p in model.parameters()):
        why = "no parameter of the model requires grad (all frozen), so the loss has no graph: unfreeze what trains"
    else:
        return None
    return "", type(model).__name__, why


def _stale_input(model: nn.Module, call: tuple[tuple[Any, ...], dict[str, Any]]) -> Found | None:
    """The model's inputs that are outputs of an autograd graph made before this call."""
    args, kwargs = call
    names = positional_names(model)
    stale: list[str] = []
    for i, a in enumerate(args):
        stale += [_named(names[i] if i < len(names) else f"argument {i}", path, t) for path, t in _graph_tensors(a)]
    for key, value in kwargs.items():
        stale += [_named(key, path, t) for path, t in _graph_tensors(value)]
    if not stale:
        return None
    message = (
        f"the backward ran into a graph an earlier backward had freed: the model's input {', '.join(stale)} "
        "still carries the graph it was computed in (a recurrent state passed on from the previous step?). "
        "Detach it before passing it in (h = h.detach()), or it keeps every earlier step in the graph"
    )
    return "", type(model).__name__, message


def _graph_tensors(value: Any) -> list[tuple[str, torch.Tensor]]:
    found: list[tuple[str, torch.Tensor]] = []
    flatten(value, found, [])
    return [(path, t) for path, t in found if t.grad_fn is not None]


def _named(name: str, path: str, t: torch.Tensor) -> str:
    return f"{name}{f'[{path}]' if path else ''} (shape {list(t.shape)})"


def _inplace(
    model: nn.Module,
    call: tuple[tuple[Any, ...], dict[str, Any]],
    shape: tuple[int, ...],
    op: str,
    trace: Callable[..., Any],
) -> Found | None:
    """The in-place operations, in the model's code or as `inplace=True` layers, on a
    tensor of `shape`, from a trace of the same batch; named at the first of them."""
    try:
        t = trace(model, call[0], kwargs=call[1], values=None)
    except Exception:  # a forward that fails now says nothing about the backward
        return None
    made_by = _producers(t)
    found: list[tuple[bool, str, str, str]] = []  # (made by `op`, layer, type name, how)
    for o in t.ops:
        if (o.name.endswith("_") or o.label.endswith("=")) and o.inputs and o.inputs[0].shape == shape:
            owner = t.records[o.parent] if o.parent is not None else None
            if owner is not None:
                found.append((made_by.get(("op", str(o.index)), "") == op.lower(), owner.name, owner.type_name,
                              f"`{o.label}` in its forward"))  # fmt: skip
    for k, r in enumerate(t.records):
        inplace = r.details.get("inplace") is True or "inplace=True" in str(r.details.get("config", ""))
        if inplace and r.inputs and r.inputs[0].shape == shape:
            found.append((made_by.get(("call", str(k)), "") == op.lower(), r.name, r.type_name, "inplace=True"))
    found.sort(key=lambda f: not f[0])  # the ones changing what `op` made first (a stable sort: then call order)
    if not found:
        return None
    matched, layer, type_name, how = found[0]
    others = [f"{n or '(root)'} ({k}, {h})" for m, n, k, h in found[1:] if m or not matched][:3]
    also = f" (also in place on that shape: {', '.join(others)})" if others else ""
    message = (
        f"changes a tensor of shape {list(shape)} in place ({how}) that the backward of {op} still needs, so "
        f"the backward cannot run{also}. Compute it out of place (h = h + 1, not h += 1; inplace=False), or "
        "clone the tensor first"
    )
    return layer, type_name, message


def _producers(t: Any) -> dict[tuple[str, str], str]:
    """For each op and call of a trace, what made its first input (a layer's type or
    an op's name, lower case), from the trace's data flow."""
    names: dict[tuple[str, str], str] = {}
    for e in t.edges:
        dst = (e.dst.kind, str(e.dst.key))
        if dst in names:
            continue
        if e.src.kind == "call":
            names[dst] = t.records[int(e.src.key)].type_name.lower()
        elif e.src.kind == "op":
            names[dst] = t.ops[int(e.src.key)].name.lower()
    return names
