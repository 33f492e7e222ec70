"""Collection during one sampled step: module outputs in the forward pass (a
global forward hook, installed for that forward only), output gradients
(tensor hooks on those outputs) in the backward pass, and parameter gradients
and updates around the optimizer's step (or post-accumulate hooks without an
optimizer). Everything is measured on the tensors' own device: on the CPU at
once, with numpy's reductions (a quarter of torch's per-call cost there); on
other devices as tensors kept until `resolve` moves them in one transfer, with
`torch._foreach_norm` for the parameter-wide numbers.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.utils.hooks import RemovableHandle

from ..flatten import flatten
from ..layers.registry import REGISTRY
from ..records import TensorInfo
from ..tensor_capture import Capture
from ..tensor_stats import SAMPLE, as_numpy
from .guard import Guard
from .health import LayerHealth, ParamHealth, StepRecord
from .sharded import global_norms, is_distributed_tensor, local

# Activations larger than SAMPLE get exact min/max/NaN/Inf and mean/std/zeros from a strided sample of
# that many elements (see stats.cpu_stats): about 20 us instead of 50 for 65,536 floats here.
Params = list[tuple[str, str, nn.Parameter]]


class _Pending:
    """A layer's health while its numbers are still being gathered."""

    __slots__ = ("grad", "health", "inputs", "measures", "output")

    def __init__(self, health: LayerHealth) -> None:
        self.health = health
        self.output: TensorInfo | None = None
        self.inputs: list[TensorInfo] = []
        self.measures: dict[str, Any] = {}
        self.grad: Any = None  # the gradient's numbers: [norm, max |g|(, nan, inf)]


class StepSampler:
    """Collects one sampled step; `resolve` (then `complete`) gives its StepRecord."""

    def __init__(
        self, step: int, rank: int, names: dict[int, str], params: Params, hook_grads: bool, guard: Guard | None = None
    ) -> None:
        self.step, self.rank = step, rank
        self._wrap: Callable[[Any], Any] = guard.wrap if guard is not None else _unwrapped
        self.record: StepRecord | None = None
        self._names = names
        self._params = params
        self._hook_grads = hook_grads  # no optimizer: catch gradients as they are accumulated
        self._capture = Capture("stats", sample=SAMPLE, batch=True)  # small tensors' stats in one go at resolve
        self._late = Capture("stats")  # after the optimizer's step: the update norms
        self._layers: list[_Pending] = []
        self._grad_refs: dict[str, torch.Tensor] = {}
        self._old: list[tuple[str, torch.Tensor]] = []
        self._weight_norms: Any = None
        self._update_norms: Any = None
        self._handles: list[RemovableHandle] = []
        self._forward: RemovableHandle | None = None
        self._thread = threading.get_ident()

    # -- forward ----------------------------------------------------------------

    def start_forward(self) -> None:
        """Install the forward hook (global, filtered to the watched model) and,
        without an optimizer, the parameter-gradient hooks."""
        if self._forward is not None or self._handles:  # already collecting (several forwards in one step)
            return
        self._forward = torch_module.register_module_forward_hook(self._wrap(self._forward_hook))
        if self._hook_grads:
            for name, _, p in self._params:
                if p.requires_grad:
                    hook = self._wrap(self._keep_grad(name))
                    self._handles.append(p.register_post_accumulate_grad_hook(hook))  # type: ignore[no-untyped-call]

    def end_forward(self) -> None:
        """Remove the forward hook (gradient hooks stay until `resolve`)."""
        if self._forward is not None:
            self._forward.remove()
            self._forward = None

    def _forward_hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        name = self._names.get(id(module))
        if name is None or threading.get_ident() != self._thread:
            return
        with torch.no_grad():
            self._record(module, name, args, output)

    def _record(self, module: nn.Module, name: str, args: tuple[Any, ...], output: Any) -> None:
        ins: list[tuple[str, torch.Tensor]] = []
        outs: list[tuple[str, torch.Tensor]] = []
        flatten(args, ins, [])
        flatten(output, outs, [])
        pending = _Pending(LayerHealth(name, type(module).__name__, module.training, leaf=not module._modules))
        capture = self._capture
        pending.inputs = [capture.tensor("", t, name) for _, t in ins if t.is_floating_point()]
        y = next((t for _, t in outs if t.is_floating_point()), None)
        if y is not None:
            pending.output = capture.tensor("", y, name)
            x = next((t for _, t in ins if t.is_floating_point()), None)
            self._special(module, x, y, pending)
            if y.requires_grad:
                y.register_hook(self._wrap(self._grad_hook(pending)))  # type: ignore[no-untyped-call]
        self._layers.append(pending)

    def _special(self, module: nn.Module, x: torch.Tensor | None, y: torch.Tensor, pending: _Pending) -> None:
        """The measures the layer's family keeps (dead units, saturation, drop rate)."""
        health = REGISTRY.coverage(type(module)).hook("health")
        if health is None:
            return
        for key, value in health(module, x, y).items():
            if key == "p":
                pending.health.p = float(value)
            else:
                pending.measures[key] = self._keep(value)

    def _keep(self, value: float | torch.Tensor) -> Any:
        return _keep(self._capture, value)

    # -- backward ---------------------------------------------------------------

    def _grad_hook(self, pending: _Pending) -> Any:
        def hook(grad: torch.Tensor) -> None:
            with torch.no_grad():
                numbers = _grad_numbers(grad)
                pending.grad = numbers if isinstance(numbers, list) else self._capture.defer(numbers)

        return hook

    def _keep_grad(self, name: str) -> Any:
        def hook(p: torch.Tensor) -> None:
            if p.grad is not None:
                self._grad_refs[name] = p.grad  # a reference: numbers come at `resolve`, for all at once

        return hook

    # -- optimizer ----------------------------------------------------------------

    def before_update(self) -> None:
        """Keep the gradients and a copy of each parameter before the optimizer changes them."""
        with torch.no_grad():
            self._grad_refs = {n: p.grad for n, _, p in self._params if p.grad is not None} or self._grad_refs
            live = [(n, p.detach()) for n, _, p in self._params if p.requires_grad]
            if live:
                copies = _foreach(torch._foreach_mul, [t for _, t in live], 1.0)  # one call copies them all
                self._old = [(n, c) for (n, _), c in zip(live, copies, strict=True)]
                self._weight_norms = _keep(self._capture, _norms(copies))

    def after_update(self) -> None:
        """||p_new - p_old|| for every parameter, from the copies."""
        if not self._old:
            return
        with torch.no_grad():
            current = {n: p.detach() for n, _, p in self._params}
            new, old = [current[n] for n, _ in self._old], [t for _, t in self._old]
            self._update_norms = _keep(self._late, _diff_norms(new, old))
        self._old = [(n, torch.empty(0)) for n, _ in self._old]  # free the copies

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
        names = list(self._grad_refs)
        grads = [self._grad_refs[n] for n in names]
        with torch.no_grad():  # norms and largest |g| of every gradient, as one vector
            grad_numbers = _keep(self._capture, _norms(grads, both=True)) if grads else None
        capture = self._capture
        capture.finalize()
        record = StepRecord(self.step, self.rank)
        for pending in self._layers:
            record.layers.append(self._layer(pending))
        numbers = _as_list(capture.resolve(grad_numbers), 2 * len(names))
        norms, maxes = numbers[: len(names)], numbers[len(names) :]
        weights = _as_list(capture.resolve(self._weight_norms), len(self._old))
        by_name = {n: (norms[i], maxes[i], grads[i]) for i, n in enumerate(names)}
        old_index = {n: i for i, (n, _) in enumerate(self._old)}
        for name, module, _ in self._params:
            ph = ParamHealth(name, module)
            if name in by_name:
                ph.grad_norm, ph.grad_max, g = by_name[name]
                if not (math.isfinite(ph.grad_norm) and math.isfinite(ph.grad_max)):
                    g = local(g)  # a shard's counts, for a sharded gradient
                    ph.grad_nan, ph.grad_inf = int(torch.isnan(g).sum()), int(torch.isinf(g).sum())
            if name in old_index:
                ph.weight_norm = weights[old_index[name]]
            record.params.append(ph)
        self._layers.clear()
        self._grad_refs.clear()
        self.record = record
        return record

    def _layer(self, pending: _Pending) -> LayerHealth:
        h, capture = pending.health, self._capture
        h.output = pending.output.stats if pending.output is not None else None
        h.inputs_finite = all(_finite(info.stats) for info in pending.inputs)
        h.dead_fraction = _float(capture.resolve(pending.measures.get("dead")))
        h.saturated_fraction = _float(capture.resolve(pending.measures.get("saturated")))
        h.drop_rate = _float(capture.resolve(pending.measures.get("dropped")))
        if pending.grad is not None:
            numbers = _as_list(capture.resolve(pending.grad), 4)
            h.grad_norm, h.grad_max = numbers[0], numbers[1]
            if len(numbers) == 4:
                h.grad_nan, h.grad_inf = int(numbers[2]), int(numbers[3])
        return h

    def complete(self) -> StepRecord:
        """The record with the optimizer's update ratios, once the step is over."""
        record = self.resolve()
        if self._update_norms is not None:
            self._late.finalize()
            updates = _as_list(self._late.resolve(self._update_norms), len(self._old))
            index = {n: i for i, (n, _) in enumerate(self._old)}
            for ph in record.params:
                if ph.name in index and ph.weight_norm:
                    ph.update_ratio = updates[index[ph.name]] / ph.weight_norm
        self._old = []
        return record


def _unwrapped(hook: Any) -> Any:
    return hook


def _norms(tensors: list[torch.Tensor], both: bool = False) -> list[float] | torch.Tensor:
    """The 2-norm of every tensor (then, with `both`, the largest |value| of every
    tensor): floats from numpy on the CPU, else one float64 vector from one
    foreach call per norm."""
    if any(is_distributed_tensor(t) for t in tensors):  # FSDP2 shards: reduced across ranks
        return global_norms(tensors, both)
    arrays = [as_numpy(t) for t in tensors]
    if all(a is not None for a in arrays):
        with np.errstate(all="ignore"):
            flat = [a.reshape(-1) for a in arrays if a is not None]
            norms = [_norm(a) for a in flat]
            return norms + [float(np.abs(a).max(initial=0.0)) for a in flat] if both else norms
    orders = (2.0, math.inf) if both else (2.0,)
    if len({(t.device, t.dtype) for t in tensors}) == 1:
        return torch.cat([torch.stack(torch._foreach_norm(tensors, o)).to(torch.float64) for o in orders])
    device = tensors[0].device
    return torch.stack([torch.linalg.vector_norm(t, o).to(device, torch.float64) for o in orders for t in tensors])


def _norm(a: np.ndarray) -> float:
    """The 2-norm of a flat array; in float64 where float32 squares overflow."""
    norm = math.sqrt(float(np.dot(a, a)))
    return norm if math.isfinite(norm) else float(np.linalg.norm(a.astype(np.float64)))


def _diff_norms(new: list[torch.Tensor], old: list[torch.Tensor]) -> list[float] | torch.Tensor:
    """||new - old|| for every pair."""
    if any(is_distributed_tensor(t) for t in new):
        return global_norms(_foreach(torch._foreach_sub, new, old))
    news, olds = [as_numpy(t) for t in new], [as_numpy(t) for t in old]
    if all(a is not None for a in news) and all(a is not None for a in olds):
        with np.errstate(all="ignore"):
            return [_norm((a - b).reshape(-1)) for a, b in zip(news, olds, strict=True)]  # type: ignore[operator]
    return _norms(_foreach(torch._foreach_sub, new, old))


def _keep(capture: Capture, value: Any) -> Any:
    """Host numbers as they are; a tensor deferred to the capture's single transfer."""
    return capture.defer(value) if isinstance(value, torch.Tensor) else value


def _foreach(op: Any, *args: Any) -> list[torch.Tensor]:
    """A `torch._foreach_*` op, or its loop where the tensors sit on several devices."""
    first = args[0]
    if len({(t.device, t.dtype) for t in first}) == 1:
        return list(op(*args))
    single = getattr(torch, op.__name__.removeprefix("_foreach_"))
    rest = args[1:]
    return [single(t, *(r[i] if isinstance(r, list) else r for r in rest)) for i, t in enumerate(first)]


def _grad_numbers(g: torch.Tensor) -> Any:
    """[2-norm, max |g|, NaN count, Inf count] of a gradient: a list at once on the
    CPU (numpy's reductions, with the counts only when the extremes say there is
    something to count), elsewhere a deferred on-device vector."""
    g = g.detach()
    if g.numel() == 0:
        return [0.0, 0.0, 0, 0]
    a = as_numpy(g)
    if a is not None:
        return _numpy_grad_numbers(a.reshape(-1))
    lo, hi = torch.aminmax(g)
    numbers = torch.stack((torch.linalg.vector_norm(g), torch.maximum(-lo, hi))).to(torch.float64)
    return torch.cat((numbers, torch.stack((g.isnan().sum(), g.isinf().sum())).to(torch.float64)))


def _numpy_grad_numbers(a: np.ndarray) -> list[float]:
    with np.errstate(all="ignore"):
        lo, hi = float(np.minimum.reduce(a)), float(np.maximum.reduce(a))  # NaN propagates into both
        counts = [0, 0] if math.isfinite(lo) and math.isfinite(hi) else [int(np.isnan(a).sum()), int(np.isinf(a).sum())]
        return [_norm(a), max(-lo, hi), *counts]


def _as_list(value: Any, n: int) -> list[float]:
    if value is None:
        return [math.nan] * n
    return [float(v) for v in (value if isinstance(value, list) else [value])]


def _finite(stats: Any) -> bool:
    return stats is None or (stats.nan_count == 0 and stats.inf_count == 0)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
