"""Collection during one sampled step: module outputs in the forward pass (a
global forward hook, installed for that forward only), output gradients
(tensor hooks on those outputs) in the backward pass, and parameter gradients
and updates around the optimizer's step (or post-accumulate hooks without an
optimizer). Everything is measured on the tensors' own device: on the CPU at
once, with numpy's reductions (a quarter of torch's per-call cost there) and
small outputs batched; on other devices as tensors kept until `resolve` moves
them in one transfer. Per parameter, see `param_numbers`. The hot path (one
call of one layer) keeps a stats handle and, on the CPU, references to its
inputs until the forward ends: whether they were finite is asked only of the
layers whose output was not.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Collection
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.utils.hooks import RemovableHandle

from ..flatten import flatten
from ..layers.registry import REGISTRY
from ..tensor_capture import Capture, Staged, Stats, resolved, tensor_version
from ..tensor_stats import SAMPLE, StatsBatch, as_numpy
from . import nan_origin
from .gradient_flow import Ran
from .guard import Guard
from .health import LayerHealth, ParamHealth, StepRecord
from .param_numbers import Snapshot, Views, norm_of, norms
from .sharded import local

# Activations larger than SAMPLE get exact min/max/NaN/Inf and mean/std/zeros from a strided sample of
# that many elements (see stats.cpu_stats): about 20 us instead of 50 for 65,536 floats here.
Params = list[tuple[str, str, nn.Parameter]]


class _Pending:
    """A layer's health while its numbers are still being gathered."""

    __slots__ = ("grad", "health", "hooked", "inputs", "measures", "output", "shares")

    def __init__(self, health: LayerHealth) -> None:
        self.health = health
        self.output: Stats = None
        # CPU inputs as (tensor, version) until the forward ends, device inputs as stats handles
        self.inputs: list[Any] = []
        self.measures: dict[str, Any] = {}
        self.grad: Any = None  # the gradient's numbers: [norm, max |g|(, nan, inf)]
        self.shares: _Pending | None = None  # an inner layer whose output this one returned as it was: its gradient
        self.hooked = False  # its output required grad: a gradient is expected in the backward


class _GradHook:
    """The output-gradient hook of one layer call (a plain object: a closure wrapped
    by `Guard.wrap` per call costs more than the numbers it takes)."""

    __slots__ = ("pending", "sampler")

    def __init__(self, sampler: StepSampler, pending: _Pending) -> None:
        self.sampler, self.pending = sampler, pending

    def __call__(self, grad: torch.Tensor) -> None:
        guard = self.sampler._guard
        if guard is not None and guard.broken is not None:
            return
        try:
            capture = self.sampler._capture
            a = as_numpy(grad)
            staged = capture.stage(a) if a is not None else None  # a small one: reduced with the others at resolve
            if staged is not None:
                self.pending.grad = staged
                return
            numbers = _grad_numbers(grad)
            self.pending.grad = numbers if isinstance(numbers, list) else capture.defer(numbers)
        except Exception as exc:  # never into the user's backward (see guard)
            if guard is None:
                raise
            guard.trip(exc, "the gradient hook")


class StepSampler:
    """Collects one sampled step; `resolve` (then `complete`) gives its StepRecord."""

    def __init__(
        self,
        step: int,
        rank: int,
        names: dict[int, str],
        params: Params,
        hook_grads: bool,
        guard: Guard | None = None,
        views: Views | None = None,
        staging: StatsBatch | None = None,
    ) -> None:
        self.step, self.rank = step, rank
        self._guard = guard
        self._wrap: Callable[[Any], Any] = guard.wrap if guard is not None else _unwrapped
        self.record: StepRecord | None = None
        self._names = names
        self._params = params
        self._hook_grads = hook_grads  # no optimizer: catch gradients as they are accumulated
        # small tensors' stats in one go at resolve, staged in the watch's buffer (grown once, not per step)
        self._capture = Capture("stats", sample=SAMPLE, batch=staging if staging is not None else True)
        self._layers: list[_Pending] = []
        self._unsettled = 0  # layers from here on still hold their CPU inputs (see _settle)
        self._grad_refs: dict[str, torch.Tensor] = {}
        self._before: Snapshot | None = None
        self._views = views  # the watch's numpy views of its parameters, kept across steps
        self._updated: list[str] = []  # the parameters in the snapshot
        self._weight_norms: Any = None
        self._late = Capture("stats")  # after the optimizer's step: the update norms
        self._update_norms: Any = None
        self._unstepped: set[str] = set()  # parameters whose optimizer did not step in this step
        self._handles: list[RemovableHandle] = []
        self._forward: RemovableHandle | None = None
        self._before_call: RemovableHandle | None = None
        self._versions: dict[int, list[tuple[torch.Tensor, int]]] = {}  # a leaf call's inputs' versions before it
        # this forward's outputs with a gradient hook: a block returning its last layer's output, unchanged, shares it
        self._hooked: dict[int, tuple[Any, int, _Pending]] = {}
        self._thread = threading.get_ident()
        self._health: dict[type, Any] = {}  # each module type's health hook (None: it has none), looked up once

    # -- forward ----------------------------------------------------------------

    def start_forward(self) -> None:
        """Install the forward hook (global, filtered to the watched model) and,
        without an optimizer, the parameter-gradient hooks."""
        if self._forward is not None or self._handles:  # already collecting (several forwards in one step)
            return
        self._forward = torch_module.register_module_forward_hook(self._wrap(self._forward_hook))
        self._before_call = torch_module.register_module_forward_pre_hook(self._wrap(self._pre_hook))
        if self._hook_grads:
            for name, _, p in self._params:
                if p.requires_grad:
                    hook = self._wrap(self._keep_grad(name))
                    self._handles.append(p.register_post_accumulate_grad_hook(hook))  # type: ignore[no-untyped-call]

    def end_forward(self) -> None:
        """Remove the forward hook (gradient hooks stay until `resolve`) and let go of the inputs."""
        if self._forward is not None:
            self._forward.remove()
            self._forward = None
        if self._before_call is not None:
            self._before_call.remove()
            self._before_call = None
        self._versions.clear()
        self._hooked.clear()
        self._settle()

    def _forward_hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        name = self._names.get(id(module))
        if name is None or threading.get_ident() != self._thread:
            return
        enabled = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)  # torch.no_grad() costs more than a small layer's numbers
        try:
            self._record(module, name, args, output)
        finally:
            torch._C._set_grad_enabled(enabled)

    def _pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        """A leaf's input versions before its call, to see whether the call changed them
        in place (a layer that does not say it works in place)."""
        if module._modules or id(module) not in self._names or getattr(module, "inplace", False) is True:
            return
        if threading.get_ident() == self._thread:
            self._versions[id(module)] = [(t, tensor_version(t)) for t in _floats(args)]

    def _record(self, module: nn.Module, name: str, args: tuple[Any, ...], output: Any) -> None:
        pending = _Pending(LayerHealth(name, type(module).__name__, module.training, leaf=not module._modules))
        before = self._versions.pop(id(module), None)
        if before:
            pending.health.input_modified = any(v >= 0 and tensor_version(t) > v for t, v in before)
        capture = self._capture
        ins = _floats(args)
        for t in ins:
            pending.inputs.append((t, tensor_version(t)) if t.device.type == "cpu" else capture.stats(t))
        outs = _floats(output)
        if outs:
            y = outs[0]
            pending.output = capture.stats(y)
            self._special(module, ins[0] if ins else None, y, pending)
            if y.requires_grad:
                pending.hooked = True
                self._hook_grad(y, pending)
        self._layers.append(pending)

    def _hook_grad(self, y: torch.Tensor, pending: _Pending) -> None:
        """The output gradient's hook, or, when an inner layer returned this very tensor
        and nothing changed it since, a share in that layer's (one gradient, one hook)."""
        version = tensor_version(y)
        inner = self._hooked.get(id(y))
        if inner is not None and inner[0]() is y and inner[1] == version >= 0:
            pending.shares = inner[2]
            return
        self._hooked[id(y)] = (weakref.ref(y), version, pending)
        y.register_hook(_GradHook(self, pending))  # type: ignore[no-untyped-call]

    def _special(self, module: nn.Module, x: torch.Tensor | None, y: torch.Tensor, pending: _Pending) -> None:
        """The measures the layer's family keeps (dead units, saturation, drop rate)."""
        kind = type(module)
        health = self._health.get(kind, _UNSET)
        if health is _UNSET:
            health = self._health[kind] = REGISTRY.coverage(kind).hook("health")
        if health is None:
            return
        for key, value in health(module, x, y).items():
            if key == "p":
                pending.health.p = float(value)
            else:
                pending.measures[key] = self._keep(value)

    def _keep(self, value: float | torch.Tensor) -> Any:
        return _keep(self._capture, value)

    def _settle(self) -> None:
        """Whether each layer's CPU inputs were finite, for the layers whose output is
        not (the producer of a NaN is the layer with finite inputs and a non-finite
        output); then the inputs are let go, so the backward holds no extra memory."""
        fresh = self._layers[self._unsettled :]
        if not fresh:
            return
        if not self._capture.staged_finite():  # then each staged output's statistics, to know which
            self._capture.flush_batch()
        for pending in fresh:  # (a handle not yet reduced is a finite output)
            if pending.inputs and not _finite(resolved(pending.output)):
                pending.health.inputs_finite = all(_input_finite(x) for x in pending.inputs)
            pending.inputs = [x for x in pending.inputs if not isinstance(x, tuple)]
        self._unsettled = len(self._layers)

    # -- backward ---------------------------------------------------------------

    def _keep_grad(self, name: str) -> Any:
        def hook(p: torch.Tensor) -> None:
            if p.grad is not None:
                self._grad_refs[name] = p.grad  # a reference: numbers come at `resolve`, for all at once

        return hook

    # -- optimizer ----------------------------------------------------------------

    @property
    def params(self) -> Params:
        """The parameters this step measures (name, module, parameter)."""
        return self._params

    def producer(self, y: torch.Tensor) -> tuple[str, str] | None:
        """(name, type) of the innermost layer of this forward that returned `y` as it is."""
        entry = self._hooked.get(id(y))
        if entry is None or entry[0]() is not y:
            return None
        pending = entry[2]
        while pending.shares is not None:
            pending = pending.shares
        return pending.health.name, pending.health.type_name

    def calls(self) -> list[Ran]:
        """This step's layer calls so far, with whether a gradient reached their outputs
        (before `resolve`: for the gradient-flow rules at the optimizer's step)."""
        return [Ran(p.health.name, p.health.type_name, p.health.leaf, p.hooked,
                    (p.shares or p).grad is not None) for p in self._layers]  # fmt: skip

    def before_update(self) -> None:
        """Keep the gradients and a copy of each parameter before the optimizer changes them."""
        with torch.no_grad():
            self._grad_refs = {n: p.grad for n, _, p in self._params if p.grad is not None} or self._grad_refs
            live = [(n, p) for n, _, p in self._params if p.requires_grad]
            if live:
                self._before = Snapshot([t for _, t in live], self._views)
                self._updated = [n for n, _ in live]
                self._weight_norms = _keep(self._capture, self._before.weight_norms())

    def after_update(self, unstepped: Collection[int] = ()) -> None:
        """||p_new - p_old|| for every parameter, from the snapshot; the parameters in
        `unstepped` (ids) were not updated by this step and get no update ratio."""
        if self._before is None:
            return
        self._unstepped = {n for n, _, p in self._params if id(p) in unstepped}
        with torch.no_grad():
            current = {n: p for n, _, p in self._params}
            self._update_norms = _keep(self._late, self._before.update_norms([current[n] for n in self._updated]))
        self._before.release()  # free the copies
        self._before = None

    # -- the end ----------------------------------------------------------------

    def resolve(self) -> StepRecord:
        """Remove the hooks, move the step's numbers to the host in one transfer, and
        build its record (idempotent; update ratios come with `complete`)."""
        if self.record is not None:
            return self.record
        self.end_forward()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        capture = self._capture
        # small CPU gradients join the batch (one set of reductions for everything); the rest get `norms`
        staged = {n: capture.stage(a) for n, g in self._grad_refs.items() if (a := as_numpy(g)) is not None}
        rest = [n for n in self._grad_refs if staged.get(n) is None]
        grads = [self._grad_refs[n] for n in rest]
        with torch.no_grad():  # norms and largest |g| of every other gradient, as one vector
            grad_numbers = _keep(capture, norms(grads, both=True)) if grads else None
        capture.finalize()
        record = StepRecord(self.step, self.rank)
        record.layers = [self._layer(pending) for pending in self._layers]
        numbers = _as_list(capture.resolve(grad_numbers), 2 * len(rest))
        weights = _as_list(capture.resolve(self._weight_norms), len(self._updated))
        rest_at = {n: i for i, n in enumerate(rest)}
        weight_at = {n: i for i, n in enumerate(self._updated)}
        count = len(rest)
        for name, module, _ in self._params:
            ph = ParamHealth(name, module)
            batched = staged.get(name)
            if batched is not None:
                ph.grad_norm, ph.grad_max, ph.grad_nan, ph.grad_inf = _staged_grad(batched)
            elif (i := rest_at.get(name)) is not None:
                ph.grad_norm, ph.grad_max = numbers[i], numbers[count + i]
                if not (math.isfinite(ph.grad_norm) and math.isfinite(ph.grad_max)):
                    part = local(grads[i])  # a shard's counts, for a sharded gradient
                    ph.grad_nan, ph.grad_inf = int(torch.isnan(part).sum()), int(torch.isinf(part).sum())
            j = weight_at.get(name)
            if j is not None:
                ph.weight_norm = weights[j]
            record.params.append(ph)
        self._layers.clear()
        self._grad_refs.clear()
        self.record = record
        return record

    def _layer(self, pending: _Pending) -> LayerHealth:
        h, capture = pending.health, self._capture
        h.output = resolved(pending.output)
        if pending.inputs:  # device inputs' statistics, now on the host
            h.inputs_finite = h.inputs_finite and all(_finite(resolved(x)) for x in pending.inputs)
        measures = pending.measures
        if measures:
            h.dead_fraction = _float(capture.resolve(measures.get("dead")))
            h.saturated_fraction = _float(capture.resolve(measures.get("saturated")))
            h.drop_rate = _float(capture.resolve(measures.get("dropped")))
        grad = pending.grad if pending.shares is None else pending.shares.grad
        if isinstance(grad, Staged):
            h.grad_norm, h.grad_max, h.grad_nan, h.grad_inf = _staged_grad(grad)
        elif grad is not None:
            numbers = _as_list(capture.resolve(grad), 4)
            h.grad_norm, h.grad_max = numbers[0], numbers[1]
            if len(numbers) == 4:
                h.grad_nan, h.grad_inf = int(numbers[2]), int(numbers[3])
        return h

    def complete(self) -> StepRecord:
        """The record with the optimizer's update ratios, once the step is over."""
        record = self.resolve()
        if self._update_norms is not None:
            self._late.finalize()
            updates = _as_list(self._late.resolve(self._update_norms), len(self._updated))
            index = {n: i for i, n in enumerate(self._updated)}
            for ph in record.params:
                i = index.get(ph.name)
                if i is not None and ph.weight_norm and ph.name not in self._unstepped:
                    ph.update_ratio = updates[i] / ph.weight_norm
        self._updated = []
        return record


def _unwrapped(hook: Any) -> Any:
    return hook


def _keep(capture: Capture, value: Any) -> Any:
    """Host numbers as they are; a tensor deferred to the capture's single transfer."""
    return capture.defer(value) if isinstance(value, torch.Tensor) else value


def _grad_numbers(g: torch.Tensor) -> Any:
    """[2-norm, max |g|, NaN count, Inf count] of a gradient: a list at once on the
    CPU (numpy's reductions, with the counts only when the extremes say there is
    something to count), elsewhere a deferred on-device vector."""
    a = as_numpy(g)
    if a is not None:
        return _numpy_grad_numbers(a.reshape(-1)) if a.size else [0.0, 0.0, 0, 0]
    with torch.no_grad():  # a backward with create_graph=True records ops
        return _device_grad_numbers(g.detach())


def _device_grad_numbers(g: torch.Tensor) -> Any:
    if g.numel() == 0:
        return [0.0, 0.0, 0, 0]
    lo, hi = torch.aminmax(g)
    numbers = torch.stack((torch.linalg.vector_norm(g), torch.maximum(-lo, hi))).to(torch.float64)
    return torch.cat((numbers, torch.stack((g.isnan().sum(), g.isinf().sum())).to(torch.float64)))


def _staged_grad(handle: Staged) -> tuple[float, float, int, int]:
    """(2-norm, max |g|, NaN count, Inf count) of a gradient reduced in the batch
    (after `finalize`): its sum of squares and its statistics give them."""
    g = handle.stats
    if g is None:  # not reduced: never after finalize
        return math.nan, math.nan, 0, 0
    return math.sqrt(handle.squares), max(-g.min, g.max), g.nan_count, g.inf_count


def _numpy_grad_numbers(a: np.ndarray) -> list[float]:
    with np.errstate(all="ignore"):
        lo, hi = float(np.minimum.reduce(a)), float(np.maximum.reduce(a))  # NaN propagates into both
        counts = [0, 0] if math.isfinite(lo) and math.isfinite(hi) else [int(np.isnan(a).sum()), int(np.isinf(a).sum())]
        return [norm_of(a), max(-lo, hi), *counts]


def _as_list(value: Any, n: int) -> list[float]:
    if value is None:
        return [math.nan] * n
    return [float(v) for v in (value if isinstance(value, list) else [value])]


def _finite(stats: Any) -> bool:
    return stats is None or (stats.nan_count == 0 and stats.inf_count == 0)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


_UNSET: Any = object()


def _floats(value: Any) -> list[torch.Tensor]:
    """The floating-point tensors in a hook's args or output, a lone tensor at once."""
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() else []
    if type(value) is tuple and len(value) == 1 and isinstance(value[0], torch.Tensor):
        return [value[0]] if value[0].is_floating_point() else []
    found: list[tuple[str, torch.Tensor]] = []
    flatten(value, found, [])
    return [t for _, t in found if t.is_floating_point()]


def _input_finite(x: Any) -> bool:
    """A CPU input (tensor, version at the call) free of NaN/Inf; an input changed in
    place since the call counts as finite (its values then are not known)."""
    if not isinstance(x, tuple):
        return _finite(resolved(x))
    t, version = x
    if version != tensor_version(t):
        return True
    return nan_origin.grad_finite_tensor(t)
