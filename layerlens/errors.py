"""`TraceError`: a failed forward explained in the user's terms.

The message names the module path and type where the forward failed, its
input shapes, what the layer expected where its inspector knows (e.g.
`Linear(in_features=120) got last dim 126`), and the last layer that did
complete. The partial trace and the failing record travel with the error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from .inspectors.registry import expectation_for

if TYPE_CHECKING:
    from .records import LayerRecord
    from .result import Trace


class TraceError(RuntimeError):
    """The traced forward raised. `.trace` is the partial Trace up to the failure,
    `.record` the failing layer's record, `__cause__` the original exception."""

    def __init__(self, message: str, trace: Trace, record: LayerRecord | None) -> None:
        super().__init__(message)
        self.trace = trace
        self.record = record


class LayerlensWarning(UserWarning):
    """Something about a trace the user should know (shown once per trace)."""


def expected_by(module: nn.Module, args: tuple[Any, ...]) -> str | None:
    """What the module expected of `args`, from its family's expectation, or the
    generic device/dtype one; None when nothing looks wrong or nothing is known."""
    seen = set()
    for fn in (expectation_for(type(module)), expectation_for(nn.Module)):
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        try:
            text = fn(module, args)
        except Exception:  # an expectation must never hide the real error
            text = None
        if text:
            return text
    return None


def failure_message(
    record: LayerRecord, error: BaseException, expected: str | None, last_done: LayerRecord | None
) -> str:
    """The multi-line TraceError message."""
    where = f"'{record.name}'" if record.name else "the model's own forward"
    lines = [f"forward failed in {where} ({record.type_name}): {type(error).__name__}: {_first_line(error)}"]
    shapes = ", ".join(t.describe() for t in record.inputs) or "no tensors"
    lines.append(f"  inputs: {shapes}")
    if expected:
        lines.append(f"  expected: {expected}")
    if last_done is not None:
        outs = ", ".join(t.describe() for t in last_done.outputs) or "no tensors"
        lines.append(f"  last completed layer: '{last_done.label}' ({last_done.type_name}) -> {outs}")
    return "\n".join(lines)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else repr(error)
