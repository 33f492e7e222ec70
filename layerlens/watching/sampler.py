"""Collection during one sampled step: module outputs in the forward pass (a
global forward hook, installed for that forward only), output gradients
(tensor hooks on those outputs) in the backward pass, and parameter gradients
and updates around the optimizer's step (or post-accumulate hooks without an
optimizer). Per-tensor statistics go through `Capture`: computed at once on
the CPU, kept on other devices until `resolve` moves them in one transfer;
parameter-wide numbers use `torch._foreach_norm`, one call for all parameters.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.utils.hooks import RemovableHandle

from ..capture import Capture
from ..flatten import flatten
from ..records import TensorInfo
from .records import LayerHealth, ParamHealth, StepRecord

_RELU = (nn.ReLU, nn.ReLU6)
# Activations larger than this get exact min/max/NaN/Inf and mean/std/zeros from a strided sample of
# this many elements (see stats.cpu_stats): about 20 us instead of 50 for 65,536 floats here.
SAMPLE = 4096
_SATURATING = {nn.Sigmoid: (0.01, 0.99), nn.Tanh: (-0.99, 0.99)}
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

    def __init__(self, step: int, rank: int, names: dict[int, str], params: Params, hook_grads: bool) -> None:
        self.step, self.rank = step, rank
        self.record: StepRecord | None = None
        self._names = names
        self._params = params
        self._hook_grads = hook_grads  # no optimizer: catch gradients as they are accumulated
        self._capture = Capture("stats", sample=SAMPLE)
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
        self._forward = torch_module.register_module_forward_hook(self._forward_hook)
        if self._hook_grads:
            for name, _, p in self._params:
                if p.requires_grad:
                    self._handles.append(p.register_post_accumulate_grad_hook(self._keep_grad(name)))  # type: ignore[no-untyped-call]

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
                y.register_hook(self._grad_hook(pending))  # type: ignore[no-untyped-call]
        self._layers.append(pending)

    def _special(self, module: nn.Module, x: torch.Tensor | None, y: torch.Tensor, pending: _Pending) -> None:
        """The measures particular to ReLU, sigmoid/tanh and Dropout outputs."""
        defer = self._capture.defer
        if isinstance(module, _RELU) and y.dim() > 1:  # outputs are >= 0: dead where the max over the batch is 0
            pending.measures["dead"] = defer((y.amax(dim=0) == 0).to(torch.float32).mean())
        for kind, (lo, hi) in _SATURATING.items():
            if isinstance(module, kind):
                pending.measures["saturated"] = defer(((y <= lo) | (y >= hi)).to(torch.float32).mean())
        if isinstance(module, nn.modules.dropout._DropoutNd):
            pending.health.p = float(module.p)
            if module.training and x is not None and x.shape == y.shape:
                kept = x != 0
                pending.measures["dropped"] = defer(((y == 0) & kept).sum() / kept.sum().clamp(min=1))

    # -- backward ---------------------------------------------------------------

    def _grad_hook(self, pending: _Pending) -> Any:
        def hook(grad: torch.Tensor) -> None:
            with torch.no_grad():
                pending.grad = self._capture.defer(_grad_numbers(grad))

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
                self._weight_norms = self._capture.defer(_norms(copies))

    def after_update(self) -> None:
        """||p_new - p_old|| for every parameter, from the copies."""
        if not self._old:
            return
        with torch.no_grad():
            current = {n: p.detach() for n, _, p in self._params}
            diffs = _foreach(torch._foreach_sub, [current[n] for n, _ in self._old], [t for _, t in self._old])
            self._update_norms = self._late.defer(_norms(diffs))
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
            grad_numbers = self._capture.defer(torch.cat((_norms(grads), _norms(grads, math.inf)))) if grads else None
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


def _norms(tensors: list[torch.Tensor] | tuple[torch.Tensor, ...], order: float = 2.0) -> torch.Tensor:
    """The norm of every tensor, as one float64 vector (one foreach call per device and dtype)."""
    kinds = {(t.device, t.dtype) for t in tensors}
    if len(kinds) == 1:
        return torch.stack(torch._foreach_norm(list(tensors), order)).to(torch.float64)
    return torch.stack([torch.linalg.vector_norm(t, order).to(tensors[0].device, torch.float64) for t in tensors])


def _foreach(op: Any, *args: Any) -> list[torch.Tensor]:
    """A `torch._foreach_*` op, or its loop where the tensors sit on several devices."""
    first = args[0]
    if len({(t.device, t.dtype) for t in first}) == 1:
        return list(op(*args))
    single = getattr(torch, op.__name__.removeprefix("_foreach_"))
    rest = args[1:]
    return [single(t, *(r[i] if isinstance(r, list) else r for r in rest)) for i, t in enumerate(first)]


def _grad_numbers(g: torch.Tensor) -> torch.Tensor:
    """[2-norm, max |g|, NaN count, Inf count] of a gradient. The counts cost two
    more passes, so on the CPU (where reading is free) they are taken only when
    the norms say there is something to count."""
    g = g.detach()
    lo, hi = torch.aminmax(g)
    numbers = torch.stack((torch.linalg.vector_norm(g), torch.maximum(-lo, hi)))
    if g.device.type == "cpu":  # reading costs nothing here: count only when there is something to count
        norm, top = numbers.tolist()
        counts = (0, 0) if math.isfinite(norm) and math.isfinite(top) else (int(g.isnan().sum()), int(g.isinf().sum()))
        return torch.tensor([norm, top, *counts], dtype=torch.float64)
    return torch.cat((numbers.to(torch.float64), torch.stack((g.isnan().sum(), g.isinf().sum())).to(torch.float64)))


def _as_list(value: Any, n: int) -> list[float]:
    if value is None:
        return [math.nan] * n
    return [float(v) for v in (value if isinstance(value, list) else [value])]


def _finite(stats: Any) -> bool:
    return stats is None or (stats.nan_count == 0 and stats.inf_count == 0)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
