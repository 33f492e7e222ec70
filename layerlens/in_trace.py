"""Whether this thread is inside a layerlens trace's forward: watch does not count
the forward of a trace run in a watched training loop as a training step."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_state = threading.local()


def tracing_now() -> bool:
    """True while this thread runs the forward of a `layerlens.trace`."""
    return bool(getattr(_state, "depth", 0))


@contextlib.contextmanager
def running_trace() -> Iterator[None]:
    """Mark this thread as running a trace's forward (nests)."""
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1
