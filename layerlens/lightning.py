"""Lightning integration: `Trainer(callbacks=[layerlens.lightning.WatchCallback(every=10)])`.

The callback watches the LightningModule with the trainer's optimizers for the
whole fit: a step is a training batch; because Lightning runs the forward and
backward inside `optimizer.step(closure)`, updates are marked from Lightning's
own hooks. The first training batch is traced once (shapes and layerlens's
checks, like `ModelSummary` with checks); sampled steps go to the trainer's
loggers as `layerlens/...` metrics, and each new alert is a warning on rank 0.
`.watch` is the running `Watch` (its `alerts`, `history`, `table()`).

Works with `lightning` (`lightning.pytorch`) or the older `pytorch_lightning`.
"""

from __future__ import annotations

from typing import Any

from .watching import Watch

try:
    from lightning.pytorch import Callback
    from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
except ImportError:  # pragma: no cover - the older package name
    from pytorch_lightning import Callback  # type: ignore[no-redef,assignment,unused-ignore]
    from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn  # type: ignore[no-redef,assignment,unused-ignore]

__all__ = ["WatchCallback"]


class WatchCallback(Callback):  # type: ignore[misc,unused-ignore]
    """Run `layerlens.watch` over a Lightning fit; takes `watch`'s options."""

    def __init__(self, every: int = 10, trace_first: bool = True, log: bool = True, **watch_options: Any) -> None:
        super().__init__()
        if "optimizer" in watch_options or "hook_optimizer" in watch_options:
            raise TypeError("WatchCallback takes the trainer's optimizer itself; leave out optimizer=")
        self.every = every
        self.trace_first = trace_first
        self.log = log
        self.options = watch_options
        self.watch: Watch | None = None
        self.first_trace: Any = None
        self._reported = 0
        self._logged = 0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        optimizers = list(trainer.optimizers) or None  # all of them: a GAN's two train one module between them
        self.watch = Watch(pl_module, self.every, optimizers, trace_first=False, hook_optimizer=False, **self.options)
        self.watch.attach()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.watch is None:
            return
        if self.trace_first and self.first_trace is None:
            self.trace_first = False
            self.first_trace = self._trace(pl_module, batch)
        self.watch.step()

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.watch is not None:
            self.watch.before_update()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.watch is None:
            return
        self.watch.after_update()
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and getattr(loss, "numel", lambda: 0)() == 1 and self.watch.sampling:
            self.watch.log(loss=float(loss))
        self._report(trainer)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.watch is not None:
            self.watch.detach()
            self._report(trainer)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.watch is not None:
            self.watch.detach()

    def _trace(self, pl_module: Any, batch: Any) -> Any:
        """The first batch traced: the module's `example_input_array` shape aside, the
        batch's first element is the input (`(x, y)` batches); a dict is keyword inputs."""
        assert self.watch is not None
        if isinstance(batch, dict):
            found = self.watch.check_batch(**batch)
        else:
            x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
            found = self.watch.check_batch(x)
        if found is not None:
            rank_zero_info(f"layerlens: the first training batch\n{found.table()}")
        return found

    def _report(self, trainer: Any) -> None:
        assert self.watch is not None
        alerts = self.watch.alerts
        for alert in alerts[self._reported :]:
            rank_zero_warn(f"layerlens: {alert}")
        self._reported = len(alerts)
        if not self.log or not trainer.loggers:
            return
        for record in self.watch.history:
            if record.step <= self._logged:
                continue
            self._logged = record.step
            metrics = _metrics(record)
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)


def _metrics(record: Any) -> dict[str, float]:
    """A sampled step as flat metrics: per parameter the gradient norm and update
    ratio, per layer the output's std and the output gradient's norm."""
    out: dict[str, float] = {}
    for p in record.params:
        if p.grad_norm is not None:
            out[f"layerlens/grad_norm/{p.name}"] = p.grad_norm
        if p.update_ratio is not None:
            out[f"layerlens/update_ratio/{p.name}"] = p.update_ratio
    for h in record.layers:
        name = h.name or "root"
        if h.output is not None:
            out.setdefault(f"layerlens/activation_std/{name}", h.output.std)
        if h.grad_norm is not None:
            out.setdefault(f"layerlens/output_grad_norm/{name}", h.grad_norm)
    out["layerlens/alerts"] = float(len(record.alerts))
    return out
