"""Hugging Face Trainer integration:
`Trainer(..., callbacks=[layerlens.transformers.WatchCallback(every=10)])`.

The callback watches the Trainer's model with its optimizer from the start of
training to its end. A step is a training forward (with gradient accumulation,
each micro-batch), evaluation forwards are not steps, and the first training
batch is traced once; new alerts go to the `transformers` logger (main process
only). `.watch` is the running `Watch` (its `alerts`, `history`, `table()`).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback
from transformers.utils import logging

from .watching import Watch

__all__ = ["WatchCallback"]

logger = logging.get_logger("layerlens")


class WatchCallback(TrainerCallback):  # type: ignore[misc,unused-ignore]
    """Run `layerlens.watch` over `Trainer.train()`; takes `watch`'s options."""

    def __init__(self, every: int = 10, **watch_options: Any) -> None:
        if "optimizer" in watch_options:
            raise TypeError("WatchCallback takes the Trainer's optimizer itself; leave out optimizer=")
        self.every = every
        self.options = watch_options
        self.watch: Watch | None = None
        self._reported = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:  # fmt: skip
        if model is None:
            return
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
        self.watch = Watch(model, self.every, inner, **self.options).attach()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._report(state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.watch is not None:
            self.watch.detach()
            self._report(state)

    def _report(self, state: Any) -> None:
        if self.watch is None:
            return
        alerts = self.watch.alerts
        if getattr(state, "is_world_process_zero", True):
            for alert in alerts[self._reported :]:
                logger.warning(f"layerlens: {alert}")
        self._reported = len(alerts)
