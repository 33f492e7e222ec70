"""A failed forward explained in the user's terms: the module path and type
where it failed, its input shapes, what the layer expected (from its family's
`expect` hook, e.g. `Linear(in_features=120) got last dim 126`), and the last
layer that did complete."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from .flatten import flatten
from .inputs import foreign_input
from .layers.registry import REGISTRY
from .records import LayerRecord


def expected_by(module: nn.Module, args: tuple[Any, ...]) -> str | None:
    """What the module expected of `args`, from its family's expectation, or the
    generic device/dtype one; None when nothing looks wrong or nothing is known."""
    seen = set()
    for fn in (REGISTRY.coverage(type(module)).hook("expect"), REGISTRY.coverage(nn.Module).hook("expect")):
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        try:
            text = fn(module, args)
        except Exception:  # an expectation must never hide the real error
            text = None
        if text:
            return str(text)
    return None


def input_hint(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """What looks wrong with the model's own inputs when its forward failed: a
    numpy array, a list where a tuple of positional inputs was meant, or no
    tensor at all."""
    foreign = foreign_input(args, kwargs)
    if foreign:
        return foreign
    lists = [i for i, a in enumerate(args) if isinstance(a, list)]
    if lists:
        i = lists[0]
        n = len(args[i])
        what = "tensor" if all(isinstance(a, torch.Tensor) for a in args[i]) else "item"
        return (
            f"input {i} is a list of {n} {what}{'s' if n != 1 else ''}, passed to forward as one argument: "
            "pass a tuple for several positional inputs (a tensor, or (x, y))"
        )
    tensors: list[tuple[str, torch.Tensor]] = []
    flatten((args, kwargs), tensors, [])
    if not tensors:
        kinds = ", ".join(type(a).__name__ for a in args) or "nothing"
        return (
            f"the inputs contain no tensor (got {kinds}); pass a torch.Tensor, a tuple of positional inputs, "
            "or input_size=... to make random ones"
        )
    return None


def failure_message(
    record: LayerRecord,
    error: BaseException,
    expected: str | None,
    last_done: LayerRecord | None,
    hint: str | None = None,
    culprit: LayerRecord | None = None,
    inputs_text: str | None = None,
) -> str:
    """The multi-line TraceError message: the exception's whole message (torch's
    list of the signatures it expected included), then what layerlens knows.
    `inputs_text` describes the model's own inputs, for a failure in its forward."""
    where = f"'{record.name}'" if record.name else "the model's own forward"
    lines = [f"forward failed in {where} ({record.type_name}): {type(error).__name__}: {_safe_repr_line(error)}"]
    lines += [f"    {line}" for line in _more_lines(error)]
    shapes = ", ".join(t.describe() for t in record.inputs) or "no tensors"
    lines.append(f"  inputs: {inputs_text if inputs_text is not None and record.parent is None else shapes}")
    if expected:
        lines.append(f"  expected: {expected}")
    if culprit is not None:
        changed = culprit.details.get("changed", "")
        lines.append(f"  the mismatch comes from: '{culprit.label}' ({culprit.type_name}) changed {changed}")
    if last_done is not None:
        outs = ", ".join(t.describe() for t in last_done.outputs) or "no tensors"
        lines.append(f"  last completed layer: '{last_done.label}' ({last_done.type_name}) -> {outs}")
    if hint:
        lines.append(f"  hint: {hint}")
    return "\n".join(lines)


_MISMATCH = re.compile(
    r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton dimension (\d+)"
)


def size_culprit(records: list[LayerRecord], k: int, error: BaseException) -> LayerRecord | None:
    """For "the size of tensor a (33) must match ... b (32) at dimension 2" raised by a
    container's own code (a residual `+`): the layer inside it that changed that
    dimension from one size to the other, with its own check saying why."""
    found = _MISMATCH.search(first_line(error))
    if found is None:
        return None
    a, b, dim = (int(g) for g in found.groups())
    inside = {k}
    culprit = None
    for i in range(k + 1, len(records)):
        r = records[i]
        if r.parent not in inside:
            continue
        inside.add(i)
        if not r.inputs or not r.outputs:
            continue
        src, out = r.inputs[0].shape, r.outputs[0].shape
        if len(src) == len(out) > dim and {src[dim], out[dim]} == {a, b}:
            culprit = r
    if culprit is not None:
        before, after = culprit.inputs[0].shape[dim], culprit.outputs[0].shape[dim]
        why = next((c.message for c in culprit.checks if c.ok), "")
        culprit.details["changed"] = f"dimension {dim} from {before} to {after}" + (f": {why}" if why else "")
    return culprit


def first_line(error: BaseException) -> str:
    """The first line of an exception's message; "" when it has none, or when
    its own `__str__` raises."""
    try:
        text = str(error).strip()
    except Exception:
        return ""
    return text.splitlines()[0] if text else ""


def describe_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The model's inputs as what they are: `[2, 3] float32`, `a list of 2 tensors ([2, 3], [2, 3])`."""
    parts = [_describe(a) for a in args] + [f"{k}={_describe(v)}" for k, v in kwargs.items()]
    return ", ".join(parts) or "no inputs"


def _describe(value: Any, depth: int = 0) -> str:
    if isinstance(value, torch.Tensor):
        dtype = "" if value.dtype == torch.float32 else f" {str(value.dtype).removeprefix('torch.')}"
        return f"{list(value.shape)}{dtype}"
    if isinstance(value, (list, tuple, dict)) and depth < 3:
        items = list(value.values() if isinstance(value, dict) else value)
        what = "tensor" if all(isinstance(v, torch.Tensor) for v in items) else "item"
        inner = ", ".join(_describe(v, depth + 1) for v in items[:4]) + (", ..." if len(items) > 4 else "")
        return f"a {type(value).__name__} of {len(items)} {what}{'s' if len(items) != 1 else ''} ({inner})"
    text = type(value).__name__
    return f"{text} {value!r}"[:60] if isinstance(value, (int, float, bool, str)) else text


def _more_lines(error: BaseException, limit: int = 30) -> list[str]:
    """The lines of the exception's message after its first, at most `limit`."""
    try:
        lines = [line.rstrip() for line in str(error).strip().splitlines()[1:]]
    except Exception:
        return []
    lines = [line for line in lines if line.strip()]
    if len(lines) > limit:
        lines = [*lines[:limit], f"... ({len(lines) - limit} more lines)"]
    return lines


def _safe_repr_line(error: BaseException) -> str:
    text = first_line(error)
    if text:
        return text
    try:
        return repr(error)
    except Exception:
        return type(error).__name__
