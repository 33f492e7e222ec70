"""Our hooks run inside the user's training loop: an internal error there must
never break their step. `Guard.wrap` turns one into a single warning, after
which the watch does nothing more (its hooks stay installed but return at
once until `detach`, since torch iterates some hook tables while calling them)."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import LayerlensWarning

F = TypeVar("F", bound=Callable[..., Any])


class Guard:
    """Shared by a watch and its samplers: whether it has given up, and why."""

    def __init__(self, passthrough: tuple[type[BaseException], ...] = ()) -> None:
        self.broken: BaseException | None = None
        self.passthrough = passthrough  # exceptions that are ours to raise on purpose (WatchAlert)

    def wrap(self, hook: F) -> F:
        """`hook`, returning None without running once the guard has tripped."""

        @functools.wraps(hook)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.broken is not None:
                return None
            try:
                return hook(*args, **kwargs)
            except self.passthrough:
                raise
            except Exception as exc:  # the whole point: nothing of ours escapes into training
                self.trip(exc, getattr(hook, "__qualname__", "a hook"))
                return None

        return guarded  # type: ignore[return-value]

    def trip(self, exc: BaseException, where: str) -> None:
        if self.broken is not None:
            return
        self.broken = exc
        if isinstance(exc, OSError):  # the disk or the file, not a bug of ours
            why = f"{exc}. Training goes on unaffected"
        else:
            why = (f"an internal error in {where}: {type(exc).__name__}: {exc}. Training goes on unaffected; "
                   "please report this with the model's layer types")  # fmt: skip
        warnings.warn(f"layerlens.watch stopped watching: {why}.", LayerlensWarning, stacklevel=2)
