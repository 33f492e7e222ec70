"""The exceptions and the warning class layerlens raises. This module imports
nothing from the rest of the package, so every part can use it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import LayerRecord
    from .trace_object import Trace


class TraceError(RuntimeError):
    """The traced forward raised. `.trace` is the partial Trace up to the failure,
    `.record` the failing layer's record, `__cause__` the original exception."""

    def __init__(self, message: str, trace: Trace, record: LayerRecord | None) -> None:
        super().__init__(message)
        self.trace = trace
        self.record = record


class RenderError(RuntimeError):
    """No layout program could draw the diagram; the message says how to get one."""


class LayerlensWarning(UserWarning):
    """Something about a trace the user should know (shown once per trace)."""
