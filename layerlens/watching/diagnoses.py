"""What `Watch` concludes outside a sampled step's numbers: the first batch's
trace, a crash explained, NaN found between samples, updates that did not
happen, setup mistakes and mode mistakes. A base of `Watch`, kept apart so that
the watcher holds the hooks and steps and this holds the diagnoses."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..errors import TraceError
from ..flatten import flatten
from ..options import TraceOptions
from . import backward_crash, gradient_flow, loss_checks, nan_origin, roots, setup_checks, symmetry, training_checks
from .health import Alert, StepRecord


class Diagnoses:
    """The diagnosing half of `Watch` (see there for the attributes)."""

    options: TraceOptions
    allow_inf: frozenset[str]
    trace_first: bool
    first_trace: Any
    step_count: int
    _rank: int
    _model: Callable[[], nn.Module | None]
    _optimizer: Any
    _params: list[tuple[str, str, nn.Parameter]]
    _names: dict[int, str]
    _mode_rules: list[tuple[str, nn.Module, Any]]
    _last_call: tuple[tuple[Any, ...], dict[str, Any]] | None
    _crash: tuple[BaseException, TraceError] | None
    _alerts: list[Alert]
    _setup_flagged: set[str]
    _watched: nn.Parameter | None
    _bad_output: bool
    _step_lrs: dict[str, float] | None
    _loss_looks: int
    _cuts: dict[str, float]
    _loop_seen: dict[str, int]
    _zero_lr_steps: list[int]
    _cuts_traced: gradient_flow.Severed | None
    _grad_off: bool
    _symmetric: dict[str, tuple[nn.Parameter, float]]
    _sampler: Any
    _guard: Any

    def _keep(self, alert: Alert) -> None:
        raise NotImplementedError

    def _live_optimizers(self) -> Any:
        """The watched optimizers (see `Optimizers`), or None: none given, or one is gone."""
        return self._optimizer() if self._optimizer is not None else None

    def _check_finite(self) -> None:
        bad, self._bad_output = self._bad_output, False
        if bad or not nan_origin.grad_finite(self._watched):
            self._look_for_origin()

    def _look_for_origin(self, sampled: bool = False) -> None:
        """An unsampled step's gradients are not finite: before the update lands, trace
        its batch again (same weights) for the layer whose forward made NaN/Inf, else
        name the layer nearest the output whose gradient did."""
        from ..tracing import trace

        model, call = self._model(), self._last_call
        found = None
        if model is not None and call is not None:
            try:
                found = nan_origin.forward_origin(trace(model, call[0], kwargs=call[1], values="stats"), self.allow_inf)
            except Exception:  # a forward that raises now says nothing about where the NaN came from
                found = None
        note = (
            f"found by tracing step {self.step_count}'s batch again: this sampled step measured only a share of "
            "the layers"
            if sampled
            else f"found by the every-step check before step {self.step_count}'s update (the step was not sampled)"
        )
        if found is not None:
            layer, type_name, why = found
            where = f"{layer or '(root)'} ({type_name})"
            self._keep(Alert("nan", self.step_count, layer, type_name, f"{where}: {why}; {note}", self._rank))
            return
        back = nan_origin.backward_origin(self._params, list(self._names.values()))
        if back is not None:
            layer, param = back
            owners = {module for _, module, _ in self._params}
            last = next((m for m in reversed(list(self._names.values())) if m in owners), None)
            message = (f"{layer}: the gradient of {param} is not finite while the layers after it have finite ones"
                       if layer != last else f"{layer}: the gradients are not finite from the last layer on, while its "
                       "forward was finite: the loss (or its gradient) was NaN/Inf")  # fmt: skip
            self._keep(Alert("nan_grad", self.step_count, layer, "", f"{message}; {note}", self._rank, param))

    def _probe_found(self, kind: str, param: str) -> None:
        """What the gradient-reset probe saw: gradients never reset, or never used."""
        if kind == "no_step":
            model = self._model()
            type_name = type(model).__name__ if model is not None else ""
            message = f"(root) ({type_name}): {training_checks.no_step_message(param)}"
            self._keep(Alert(kind, self.step_count, "", type_name, message, self._rank, param))
            return
        module = param.rpartition(".")[0]
        self._keep(Alert(kind, self.step_count, module, "", training_checks.grad_reset_message(param),
                         self._rank, param))  # fmt: skip

    def _trace_first(self, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Trace the first training batch once (the model as it is, nothing changed):
        its failed checks become alerts, as `trace` would report them."""
        from ..tracing import trace

        self.trace_first = False
        try:
            self.first_trace = trace(model, args, kwargs=kwargs, options=self.options)
        except Exception:  # a forward that fails is explained when the real one fails
            return
        for r in self.first_trace:
            for c in r.failures:
                where = f"{r.label} ({r.type_name})"
                self._keep(Alert("check", self.step_count + 1, r.name, r.type_name, f"{where}: {c.message}",
                                 self._rank, c.name))  # fmt: skip

    def _explain_crash(self, model: nn.Module, raised: BaseException, args: tuple[Any, ...], kwargs: Any) -> None:
        """The watched forward raised: trace the same call for layerlens's message (the
        layer, its input shapes, what it expected), as a note on the exception and an
        alert; leaving `with watch(...)` raises it as a TraceError from the original."""
        from ..tracing import trace

        try:
            trace(model, args, kwargs=kwargs, options=self.options)
        except TraceError as err:
            self._crash = (raised, err)
            if hasattr(raised, "add_note"):
                raised.add_note(f"layerlens: {err}")
            record = err.record
            where = record.name if record is not None else ""
            kind = record.type_name if record is not None else type(model).__name__
            message = str(err).splitlines()[0]
            named = record.details.get("culprit") if record is not None else None
            culprit = err.trace[named] if named is not None else None
            if culprit is not None:  # a size mismatch in a block's own code: the layer that changed the size
                where, kind = culprit.name, culprit.type_name
                message = f"{culprit.label} ({kind}) changed {culprit.details.get('changed', '')}; so {message}"
            self._alerts.append(Alert("crash", self.step_count, where, kind, message, self._rank))
        except Exception:  # not reproducible by a trace: the user's own exception says it all
            return

    def _learning_rates(self, params: list[tuple[str, str, nn.Parameter]]) -> dict[str, float] | None:
        """Each of `params`' learning rate now (read before the update: a scheduler
        changes it right after `step()`, and warm-up starts from 0)."""
        optimizer = self._live_optimizers()
        if optimizer is None:
            return None
        return training_checks.learning_rates(((n, p) for n, _, p in params), optimizer)

    def _explain_backward(self, error: Exception) -> None:
        """An error out of the training loop that autograd raised about a tensor: the
        model's input or the layer behind it, as a note on the error and a `crash` alert."""
        from ..tracing import trace

        model = self._model()
        if model is None:
            return
        found = backward_crash.explain(error, roots.inner(model), self._last_call, trace, self._grad_off)
        if found is None:
            return
        layer, type_name, message = found
        where = _where(layer, type_name)
        if hasattr(error, "add_note"):
            error.add_note(f"layerlens: {where}: {message}")
        self._alerts.append(Alert("crash", self.step_count, layer, type_name, f"{where}: {message}", self._rank))

    def _check_updates(self, record: StepRecord) -> None:
        lrs, self._step_lrs = self._step_lrs, None
        if lrs is None or self._model() is None:
            return
        optimizers = self._live_optimizers()
        named = ((n, p) for n, _, p in self._params)
        still = training_checks.standing_still(named, optimizers.all if optimizers is not None else ())
        for module, param, message in training_checks.not_updated(record, lrs, self._setup_flagged | still):
            self._keep(Alert("not_updated", record.step, module, "", message, self._rank, param))
        if not training_checks.zero_learning_rate(record, lrs):
            self._zero_lr_steps = []
            return
        self._zero_lr_steps.append(record.step)
        if len(self._zero_lr_steps) >= training_checks.ZERO_LR_STEPS:
            message = training_checks.zero_lr_message(self._zero_lr_steps)
            self._keep(Alert("zero_lr", record.step, "", "", message, self._rank))

    def _check_symmetry(self) -> None:
        """Layers whose units the updates keep identical (see symmetry)."""
        found = list(symmetry.judge(self._symmetric)) if self._symmetric else []
        model = self._model()
        if not found or model is None:
            return
        modules = dict(roots.inner(model).named_modules())
        for param, message in found:
            module = param.rpartition(".")[0]
            type_name = type(modules[module]).__name__ if module in modules else ""
            where = _where(module, type_name)
            self._keep(Alert("symmetric_weights", self.step_count, module, type_name, f"{where}: {message}",
                             self._rank, param))  # fmt: skip

    def _check_flow(self, calls: list[gradient_flow.Ran], params: list[tuple[str, str, nn.Parameter]]) -> None:
        """Gradients that did not reach a layer, or were gone before the update (with an optimizer)."""
        optimizer = self._live_optimizers()
        if optimizer is None:
            return
        in_groups = {id(p) for group in optimizer.param_groups for p in group["params"]}
        severed = gradient_flow.severed_in(self.first_trace) if self._cuts_traced is None else self._cuts_traced
        self._cuts_traced = severed
        for kind, layer, type_name, param, message in gradient_flow.judge(
            calls, params, in_groups, self._cuts, severed
        ):
            if kind in gradient_flow.WHOLE_STEP:  # a loop's mistake shows on every sampled step: said at the second
                self._loop_seen[kind] = self._loop_seen.get(kind, 0) + 1
                if self._loop_seen[kind] < 2:
                    continue
            where = _where(layer, type_name)
            self._keep(Alert(kind, self.step_count, layer, type_name, f"{where}: {message}", self._rank, param))

    def _probe_loss(self, module: nn.Module, output: Any) -> None:
        """Have the backward tell what the loss did with the model's output (see loss_checks)."""
        found: list[tuple[str, torch.Tensor]] = []
        flatten(output, found, [])
        y = next((t for _, t in found if t.is_floating_point() and t.numel() >= 4), None)
        if y is None or not loss_checks.watchable(y) or self._sampler is None:
            return
        self._loss_looks += 1
        layer, type_name = self._sampler.producer(y) or ("", type(module).__name__)
        step = self.step_count

        def report(message: str) -> None:
            self._keep(Alert("loss_mismatch", step, layer, type_name, f"{_where(layer, type_name)}: {message}",
                             self._rank))  # fmt: skip

        y.register_hook(self._guard.wrap(loss_checks.LossProbe(y, report)))  # type: ignore[no-untyped-call]

    def _report_setup(self, found: Iterable[setup_checks.Found]) -> None:
        for kind, layer, type_name, param, message in found:
            self._setup_flagged.add(param)
            where = _where(layer, type_name)
            self._keep(Alert(kind, self.step_count, layer, type_name, f"{where}: {message}", self._rank, param))

    def _check_modes(self, model_training: bool) -> None:
        """Mode mistakes the layers' families know: a Dropout still training while
        the model is evaluated, a BatchNorm frozen while it trains, ..."""
        for name, m, rule in self._mode_rules:
            found = rule(m, model_training)
            if found is not None:
                kind, message = found
                self._keep(Alert(kind, self.step_count, name, type(m).__name__,
                                          f"{name} ({type(m).__name__}) {message}", self._rank))  # fmt: skip


def _where(layer: str, type_name: str) -> str:
    """`name (Type)` as alerts begin, `(root)` for the model itself, no type where unknown."""
    return f"{layer or '(root)'} ({type_name})" if type_name else layer or "(root)"
