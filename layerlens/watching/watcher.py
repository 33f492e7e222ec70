"""`layerlens.watch`: stay attached to a model while it trains, sample every
`every`-th step, and say which layer went bad first.

Between samples only two small hooks run per step (on the root module, and on
the optimizer when one is given); on a sampled step a `StepSampler` collects
outputs, gradients and updates, and the step's numbers reach the host in one
transfer when the step ends: at the optimizer's step, at the next step, at
`w.step()`, or when results are read.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import sys
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .. import html_blocks
from ..errors import TraceError
from ..in_trace import tracing_now
from ..layers.registry import REGISTRY
from ..options import TraceOptions
from ..tensor_stats import StatsBatch
from . import gradient_flow, loss_checks, mode_checks, nan_origin, roots, setup_checks, symmetry, training_checks
from .alerts import KINDS, NOTES, Thresholds, exploding, step_alerts
from .diagnoses import Diagnoses
from .guard import Guard
from .health import Alert, StepRecord
from .optimizers import Optimizers
from .output import JsonlWriter, render_html, render_table, to_board
from .param_numbers import Views
from .rotation import Rotation
from .step_sampler import StepSampler


class WatchAlert(RuntimeError):
    """Raised for an alert whose kind is in `raise_on`; `.alert` has the details."""

    def __init__(self, alert: Alert) -> None:
        super().__init__(str(alert))
        self.alert = alert


HISTORY = 1000  # sampled steps kept in memory (~3 KB each for a small model)
LAYERS_PER_STEP = 256  # modules one sampled step measures at most (see rotation)


class Watch(Diagnoses):
    """Watches one model (see `watch`)."""

    def __init__(
        self,
        model: nn.Module,
        every: int = 10,
        optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None = None,
        raise_on: Iterable[str] = (),
        allow_inf: Iterable[str] = (),
        thresholds: Thresholds | None = None,
        jsonl: str | Path | None = None,
        options: TraceOptions | None = None,
        trace_first: bool = True,
        hook_optimizer: bool = True,
        sentinel: bool = True,
        layers_per_step: int | None = LAYERS_PER_STEP,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"watch() expects an nn.Module, got {type(model).__name__}")
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        unknown = set(raise_on) - set(KINDS)
        if unknown:
            raise ValueError(f"raise_on: unknown alert kinds {sorted(unknown)}; kinds are {', '.join(KINDS)}")
        if layers_per_step is not None and (not isinstance(layers_per_step, int) or layers_per_step < 1):
            raise ValueError(f"layers_per_step must be an int >= 1 or None (all), got {layers_per_step!r}")
        self.every = every
        self.layers_per_step = layers_per_step
        self._rotation: Rotation | None = None
        self._samples = 0  # sampled steps so far
        self._first_grads: dict[str, float] = {}  # each parameter's gradient norm when first sampled
        self.raise_on = frozenset(raise_on)
        self.allow_inf = frozenset(allow_inf)
        self.thresholds = thresholds or Thresholds()
        # the latest sampled steps in memory (the whole run goes to the JSONL file, when set)
        self._history: collections.deque[StepRecord] = collections.deque(maxlen=HISTORY)
        self._alerts: list[Alert] = []
        self._notes: list[Alert] = []
        self._pending_logs: dict[str, float] = {}
        self.logs: list[tuple[int, dict[str, float]]] = []
        self.step_count = 0
        self._model = weakref.ref(model)
        self._optimizer = Optimizers.of(optimizer)  # called as a weakref: the optimizers, or None once gone
        self._rank = _rank()
        self._sampler: StepSampler | None = None
        self._handles: list[RemovableHandle] = []
        self._seen: set[tuple[str, str, str]] = set()
        self._manual = False
        # under torch.distributed, rank 0 writes the file (`gather()` brings every rank's steps)
        self._writer = JsonlWriter(Path(jsonl)) if jsonl is not None and self._rank == 0 else None
        self._boards: list[Any] = []
        self._names: dict[int, str] = {}
        self._params: list[tuple[str, str, nn.Parameter]] = []
        self._views = Views()  # numpy views of the parameters, kept across sampled steps
        self._staging = StatsBatch()  # the sampled steps' staging buffer for small tensors' statistics
        self._mode_rules: list[tuple[str, nn.Module, Any]] = []
        if options is not None and not isinstance(options, TraceOptions):
            raise TypeError(f"options must be a layerlens.TraceOptions, got {type(options).__name__}")
        self.options = options or TraceOptions()  # for the first step's trace and the one that explains a crash
        self.trace_first = bool(trace_first)
        self._hook_optimizer = bool(hook_optimizer)  # False: the caller says when updates happen (a framework)
        self._sentinel = bool(sentinel)  # check every step's gradients for NaN/Inf before the update
        self._last_call: tuple[tuple[Any, ...], dict[str, Any]] | None = None  # the latest training batch
        self._origin: Alert | None = None  # the first NaN/Inf alert: what later ones are effects of
        self._effects: list[Alert] = []
        self._watched: nn.Parameter | None = None  # the parameter whose gradient the every-step check reads
        self._bad_output = False  # an unsampled training forward returned NaN/Inf
        self._order: list[str] = []  # the modules in call order, from the first sampled step that measured all
        self.first_trace: Any = None  # the Trace of the first training step's batch
        self._guard = Guard((WatchAlert, TraceError))
        self._mode_dependent: list[str] = []
        self._probe: training_checks.GradResetProbe | None = None
        self._spy: mode_checks.EvalModeSpy | None = None
        self._eval_checked = False
        self._call: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self._crash: tuple[BaseException, TraceError] | None = None
        self._setup_flagged: set[str] = set()  # parameters already named by an attach-time alert
        self._compiled = False  # a torch.compile'd model: its sampled forwards run eagerly (see roots)
        self._eager = roots.Eager()
        self._loss_looks = 0  # sampled steps whose loss input was looked at (see loss_checks)
        self._cuts: dict[str, float] = {}  # layers seen without a gradient (see gradient_flow)
        self._loop_seen: dict[str, int] = {}  # sampled steps that showed each of gradient_flow.WHOLE_STEP
        self._zero_lr_steps: list[int] = []  # the latest sampled steps in a row whose update had lr 0
        self._grad_off = False  # the latest training forward ran with gradients off
        self._cuts_traced: gradient_flow.Severed | None = None  # the first trace's data flow (see gradient_flow)
        self._step_lrs: dict[str, float] | None = None  # the learning rates of the sampled step's update
        self._symmetric: dict[str, tuple[nn.Parameter, float]] = {}  # weights with equal rows (see symmetry)

    # -- attaching ----------------------------------------------------------------

    def attach(self) -> Watch:
        """Install the root and optimizer hooks (idempotent)."""
        if self._handles:
            return self
        outer = self._require_model()
        model = roots.inner(outer)  # a compiled model: the module it wraps, as its user names it
        self._compiled = model is not outer
        self._names = {id(m): name for name, m in model.named_modules()}
        self._params = [(n, n.rpartition(".")[0], p) for n, p in model.named_parameters()]
        self._mode_rules = [(n, m, rule) for n, m in model.named_modules()
                            if (rule := REGISTRY.coverage(type(m)).hook("mode_alert")) is not None]  # fmt: skip
        self._mode_dependent = mode_checks.mode_dependent(model)
        self._watched = nan_origin.sentinel_param(self._params, self._order)
        self._rotation = Rotation(self._names, self._params, self.layers_per_step)
        guard = self._guard.wrap
        self._handles = roots.hook_root(outer, guard(self._on_forward_start), guard(self._on_forward_end))
        self._report_setup(setup_checks.unregistered_tensors(model))
        optimizer = self._live_optimizers()
        if optimizer is not None and self._hook_optimizer:
            self._handles += optimizer.hook(guard(self._on_optimizer_start), guard(self._on_optimizer_end))
        if optimizer is not None:
            self._symmetric = symmetry.candidates(model)
            self._report_setup(setup_checks.optimizer_gaps(model, optimizer))
            probe = training_checks.pick_probe(model, optimizer)
            if probe is not None:
                report = guard(self._probe_found)
                self._probe = training_checks.GradResetProbe(*probe, lambda: self._sampler is not None, report)
        return self

    def detach(self) -> None:
        """Finish a pending sampled step and remove every hook."""
        try:
            self._flush()
        finally:
            for h in self._handles:
                h.remove()
            self._handles = []
            if self._probe is not None:
                self._probe.remove()
                self._probe = None
            self._last_call = None
            self._eager.exit()
            if self._spy is not None:
                self._spy.stop()
                self._spy = None
            if self._sampler is not None:
                self._sampler.resolve()
                self._sampler = None
            self._mode_rules, self._params, self._names, self._watched, self._rotation = [], [], {}, None, None
            self._views, self._staging = Views(), StatsBatch()

    def __enter__(self) -> Watch:
        return self.attach()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.detach()
            return
        if isinstance(exc, Exception) and (self._crash is None or self._crash[0] is not exc):
            with contextlib.suppress(Exception):  # a backward that raised: say what the model did to it
                self._explain_backward(exc)
        with contextlib.suppress(Exception):  # the loop raised: detach, and let its exception through
            self.detach()
        if self._crash is not None and self._crash[0] is exc:  # a watched forward raised: say where, as trace does
            raise self._crash[1] from exc

    # -- the user's side ------------------------------------------------------------

    def step(self) -> None:
        """Count a step explicitly (then forward calls no longer count)."""
        if not self._handles:
            raise RuntimeError(
                "this watch is not attached: use `with layerlens.watch(model) as w:` or call w.attach() first"
            )
        self._manual = True
        self._guard.wrap(self._manual_step)()

    def _manual_step(self) -> None:
        self._begin_step()
        if self._sampler is not None:  # collect every watched module's calls, whoever calls them
            self._sampler.start_forward()

    def before_update(self) -> None:
        """For frameworks that run the forward inside `optimizer.step(closure)`
        (Lightning): call after backward, before the update (`hook_optimizer=False`)."""
        self._guard.wrap(self._on_optimizer_start)(None, (), {})

    def after_update(self) -> None:
        """... and after the update."""
        self._guard.wrap(self._on_optimizer_end)(None, (), {})

    def check_batch(self, *args: Any, **kwargs: Any) -> Any:
        """Trace the model once on this batch (nothing about the model changes): its
        failed checks become `check` alerts; returns the Trace (None if it could not run)."""
        model = self._require_model()
        self.first_trace = None
        self._guard.wrap(self._trace_first)(model, args, kwargs)
        return self.first_trace

    @property
    def sampling(self) -> bool:
        """Whether the current step is a sampled one (worth a `log` that costs a device sync)."""
        return self._sampler is not None

    def log(self, **values: float) -> None:
        """Attach numbers (loss, accuracy, ...) to the current step, for tables and plots."""
        entry = {k: float(v) for k, v in values.items()}
        self.logs.append((self.step_count, entry))
        if self._sampler is not None:
            self._pending_logs.update(entry)

    def table(self, step: int | None = None, fmt: str = "simple") -> str:
        """The latest sampled step (or `step`) as a table."""
        history = self.history
        if not history:
            return "(no sampled step yet)"
        record = history[-1] if step is None else next((r for r in history if r.step == step), None)
        if record is None:
            raise KeyError(f"step {step} was not sampled (sampled: {[r.step for r in history][-10:]})")
        return render_table(record, fmt)

    def _repr_html_(self) -> str:
        """The alerts so far and the latest sampled step, for notebooks."""
        history = self.history
        if not history:
            return html_blocks.notes([f"watch: no sampled step yet ({self.step_count} steps)"])
        return render_html(history[-1], self.alerts)

    @property
    def history(self) -> list[StepRecord]:
        """The latest sampled steps (up to `HISTORY`), as plain records (a pending
        step is finished first); every step is in the JSONL file when one is set."""
        self._flush()
        return list(self._history)

    @property
    def alerts(self) -> list[Alert]:
        """Each kind of trouble, at its first occurrence per layer."""
        self._flush()
        return list(self._alerts)

    @property
    def effects(self) -> list[Alert]:
        """Alerts that an earlier one caused (NaN reaching later layers, the backward,
        later steps), each with `caused_by`; `alerts` keeps the origins."""
        self._flush()
        return list(self._effects)

    @property
    def notes(self) -> list[Alert]:
        """Things worth knowing that are not trouble (a gradient zero by
        construction), once each."""
        self._flush()
        return list(self._notes)

    def to_jsonl(self, path: str | Path) -> Path:
        """Write the sampled steps in memory to `path` and keep appending new ones."""
        history = self.history
        if self._rank != 0:
            return Path(path)
        self._writer = JsonlWriter(Path(path))
        for record in history:
            self._writer.write(record)
        return Path(path)

    def to_tensorboard(self, writer: Any) -> None:
        """Write per-layer numbers to a `torch.utils.tensorboard.SummaryWriter` (or
        anything with `add_scalar`), now and for every later sampled step."""
        history = self.history
        self._boards.append(writer)
        for record in history:
            to_board(writer, record)

    def plot(self, path: str | Path) -> Path | None:
        """Logged values, per-layer gradient norms and activation std over steps, as
        an image; None without matplotlib (`pip install torch-layerlens[plot]`)."""
        from .output import plot

        return plot(self.history, self.logs, Path(path))

    def gather(self) -> list[list[StepRecord]] | None:
        """Under torch.distributed: every rank's history, on rank 0 (None elsewhere).
        A collective: call it on every rank."""
        import torch.distributed as dist

        history = self.history
        if not (dist.is_available() and dist.is_initialized()):
            return [history]
        everything: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(everything, history)
        return everything if dist.get_rank() == 0 else None

    # -- hooks --------------------------------------------------------------------

    def _on_forward_start(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if tracing_now():  # a layerlens trace of the model inside the loop: not a training step
            return None
        self._call = (args, kwargs)
        if not module.training:
            self._check_modes(False)
            if not self._eval_checked:  # the first evaluation forward of each evaluation phase
                self._spy = mode_checks.EvalModeSpy(self._names)
                self._spy.start()
            return None
        self._grad_off = not torch.is_grad_enabled()  # the latest training forward's (see backward_crash)
        if self._mode_dependent and self._grad_off:
            self._keep(Alert("eval_forgotten", self.step_count, "", type(module).__name__,
                             mode_checks.eval_forgotten_message(self._mode_dependent), self._rank))  # fmt: skip
            return None
        self._eval_checked = False
        self._last_call = (args, kwargs)
        if self.trace_first and self.first_trace is None:
            self._trace_first(module, args, kwargs)
        if not self._manual:
            self._begin_step()
        self._check_modes(True)
        if self._sampler is not None and not self._manual:
            self._sampler.start_forward()
            if self._compiled:  # dynamo must not compile the sampled step's hooks in: this forward runs eagerly
                self._eager.enter()
        return None

    def _on_forward_end(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if tracing_now():
            return None
        call, self._call = self._call, None
        if self._spy is not None:
            spy, self._spy = self._spy, None
            spy.stop()
            self._eval_checked = True
            for name, (type_name, p) in spy.found.items():
                message = f"{name} ({type_name}) {mode_checks.functional_dropout_message(p)}"
                self._keep(Alert("functional_dropout_in_eval", self.step_count, name, type_name, message, self._rank))
        raised = sys.exc_info()[1]
        if output is None and raised is not None and call is not None and not isinstance(raised, WatchAlert):
            self._explain_crash(module, raised, *call)
        if self._sentinel and self._sampler is None and module.training and output is not None:
            self._bad_output = self._bad_output or not nan_origin.output_finite(output)
        self._eager.exit()
        if self._sampler is not None and module.training and raised is None and self._loss_looks < loss_checks.LOOKS:
            self._probe_loss(module, output)
        if self._sampler is not None and not self._manual:
            self._sampler.end_forward()
        return None

    def _on_optimizer_start(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """Before the update: snapshot the weights and judge the step's forward and
        backward, so a `raise_on` alert stops training before a bad update."""
        model = self._model()
        if model is not None and not model.training and self._mode_dependent:
            self._keep(Alert("train_forgotten", self.step_count, "", type(model).__name__,
                             mode_checks.train_forgotten_message(self._mode_dependent), self._rank))  # fmt: skip
        if self._probe is not None:
            self._probe.starting()
        if self._sampler is not None and self._sampler.record is None:
            # a closure runs the forward and backward inside the step; the loop's structure shows on the first
            # samples, and a change to it (a layer replaced) on every tenth after (as the optimizer's groups)
            if not _has_closure(args, kwargs) and (self._samples <= 4 or self._samples % 10 == 0):
                self._check_flow(self._sampler.calls(), self._sampler.params)
            self._step_lrs = self._learning_rates(self._sampler.params)  # as this update uses them (not the next)
            self._sampler.before_update()
            if self._optimizer is not None:
                self._optimizer.updating()
            self._judge(self._sampler.resolve())
        elif self._sentinel and self._sampler is None and self._origin is None and self._watched is not None:
            self._check_finite()
        return None

    def _on_optimizer_end(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        # several optimizers: the update is measured once the last of them has stepped (or at the next step)
        if self._sampler is not None and (self._optimizer is None or self._optimizer.stepped(optimizer)):
            self._sampler.after_update()
        return None

    # -- steps ----------------------------------------------------------------------

    def _begin_step(self) -> None:
        self._flush()
        self.step_count += 1
        if (self.step_count - 1) % self.every == 0 and self._rotation is not None:
            hook_grads = self._optimizer is None
            names, params = self._rotation.pick(self._samples)
            self._sampler = StepSampler(self.step_count, self._rank, names, params, hook_grads, self._guard,
                                        self._views, self._staging)  # fmt: skip
            self._samples += 1
            self._pending_logs = {}
            model, optimizer = self._model(), self._live_optimizers()
            model = roots.inner(model) if model is not None else None
            # layers may be replaced after the optimizer is built: looked for again now and then (it walks the model)
            if model is not None and optimizer is not None and (self._samples <= 3 or self._samples % 10 == 0):
                self._report_setup(setup_checks.optimizer_gaps(model, optimizer))

    def _judge(self, record: StepRecord) -> None:
        """Alerts for a resolved step; it joins the history now (its update ratios
        and logs are filled in when the step is over)."""
        found = list(step_alerts(record, self.thresholds, self.allow_inf))
        partial = self._rotation is not None and self._rotation.stride > 1
        if partial and any(a.kind in nan_origin.FAMILY for a in found):  # the producer may be outside the share
            found = [a for a in found if a.kind not in nan_origin.FAMILY]
            self._look_for_origin(sampled=True)
        record.alerts = [a for a in found if a.kind not in NOTES]
        self._history.append(record)
        if not self._order and not partial:  # the call order is known: the every-step check reads the first layer
            self._order = [h.name for h in record.layers]
            self._watched = nan_origin.sentinel_param(self._params, self._order)
        for alert in found:
            self._keep(alert)

    def _flush(self) -> None:
        """Close the pending sampled step: numbers to the host, alerts, outputs."""
        sampler, self._sampler = self._sampler, None
        if sampler is None:
            return
        judged = sampler.record is not None
        # an optimizer that did not step in this step: the others' updates are measured now, its parameters have none
        sampler.after_update(self._optimizer.unstepped() if self._optimizer is not None else set())
        record = sampler.complete()
        record.logs = dict(self._pending_logs)
        if not judged:
            self._judge(record)
        self._check_updates(record)
        self._check_symmetry()
        late = list(exploding(record, self.thresholds, self._first_grads))  # needs the update ratios
        record.alerts += late
        if self._writer is not None:
            self._writer.write(record)
        for board in self._boards:
            to_board(board, record)
        for alert in late:
            self._keep(alert)

    def _keep(self, alert: Alert) -> None:
        """Keep an alert once per (kind, layer, parameter): a note, an effect of an earlier
        NaN, or an alert, raised at once if its kind is in `raise_on`."""
        key = (alert.kind, alert.layer, alert.param)
        if key in self._seen:
            return
        self._seen.add(key)
        if alert.kind in NOTES:
            self._notes.append(alert)
            return
        if alert.kind in nan_origin.FAMILY:
            if self._origin is not None:  # NaN spreads: downstream layers, the backward, later steps
                self._effects.append(dataclasses.replace(alert, caused_by=str(self._origin)))
                return
            self._origin = alert
        self._alerts.append(alert)
        if alert.kind in self.raise_on:
            raise WatchAlert(alert)

    def _require_model(self) -> nn.Module:
        model = self._model()
        if model is None:
            raise RuntimeError("the watched model no longer exists")
        return model


def watch(
    model: nn.Module,
    every: int | torch.optim.Optimizer | Sequence[torch.optim.Optimizer] = 10,
    optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None = None,
    raise_on: Iterable[str] = (),
    allow_inf: Iterable[str] = (),
    thresholds: Thresholds | None = None,
    jsonl: str | Path | None = None,
    options: TraceOptions | None = None,
    trace_first: bool = True,
    hook_optimizer: bool = True,
    sentinel: bool = True,
    layers_per_step: int | None = LAYERS_PER_STEP,
) -> Watch:
    """Watch `model` while it trains: `with layerlens.watch(model, every=10, optimizer=opt) as w:`
    (`watch(model, opt)` is read as `optimizer=opt`, every 10 steps; a list of
    optimizers for a model that several train, an encoder's and a decoder's).

    Every `every`-th step (a step is a forward call of the model in training
    mode, or `w.step()`) records per layer the output statistics, dead-unit,
    saturation and drop rates, the output-gradient norm, per parameter the
    gradient norm and, with an optimizer, the update-to-weight ratio. `w.alerts`
    names the first layer that produced NaN/Inf (forward and backward),
    exploding or vanishing gradients, dead ReLU and saturated sigmoid/tanh
    layers, and mode mistakes; kinds in `raise_on` raise `WatchAlert`.
    `allow_inf` names layers whose -inf is on purpose (attention masks).
    `jsonl` streams one line per sampled step. With `trace_first` (default) the
    first training batch is traced once (`w.first_trace`): its failed checks
    become `check` alerts. `options` (a `TraceOptions`) are used for that trace
    and for the one that explains a forward that raised. A model of more than
    `layers_per_step` modules has an interleaved share of them measured per
    sampled step, a different one each time (None: all, whatever it costs).
    """
    interval: Any = every  # an int, or what Watch refuses with a clear error
    if isinstance(every, (torch.optim.Optimizer, list, tuple)):  # `watch(model, opt)`, as one writes it
        if optimizer is not None:
            raise TypeError("watch(model, every, optimizer=...): every is the sampling interval, got an optimizer")
        optimizer, interval = every, 10
    return Watch(model, interval, optimizer, raise_on, allow_inf, thresholds, jsonl, options, trace_first,
                 hook_optimizer, sentinel, layers_per_step)  # fmt: skip


def _has_closure(args: Any, kwargs: Any) -> bool:
    """Whether `optimizer.step` was given a closure (LBFGS, SAM): its gradients come later."""
    return any(callable(a) for a in args) or callable((kwargs or {}).get("closure"))


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
