"""The rules that turn a sampled step into alerts: the layer where NaN/Inf first
appears (forward and backward), exploding and vanishing gradients, dead ReLU
layers, saturated sigmoid/tanh layers."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .health import Alert, StepRecord

KINDS = ("nan", "nan_grad", "exploding_grad", "vanishing_grad", "dead_relu", "saturated",
         "dropout_in_eval", "batchnorm_eval_in_training", "not_in_optimizer", "frozen", "unregistered_param",
         "not_updated", "zero_lr", "grad_not_reset", "inplace_input", "eval_forgotten", "train_forgotten",
         "functional_dropout_in_eval", "no_gradient", "grad_cleared", "no_backward", "no_step", "loss_mismatch",
         "symmetric_weights", "crash", "check")  # fmt: skip
# Kinds that are worth knowing but are not trouble: reported once, as notes, never raised.
NOTES = ("zero_grad_by_construction", "unused_output")
# A gradient this many times smaller than the largest of its layer's other parameters is
# zero up to rounding: zero by construction (an attention key bias: softmax ignores a
# shift shared by all keys), not vanishing.
_ROUNDING = 1e-6
# Vanishing means far smaller than the gradients elsewhere in the model (the early layers
# of a deep sigmoid stack), not small everywhere (a loss averaged over many elements).
_VANISHED = 1e-4
# Exploding means growing: this many times the parameter's first sampled gradient norm.
_GROWTH = 1e3


@dataclass(frozen=True)
class Thresholds:
    """When a number becomes an alert (all configurable through `watch(...)`)."""

    explode: float = 1e3  # a parameter's gradient norm above this
    vanish: float = 1e-8  # ... below this (and not exactly zero: unused parameters are not alerts)
    dead: float = 0.9  # fraction of ReLU units zero for every sample (random-init ResNets reach 50-80% on tiny batches)
    saturated: float = 0.5  # fraction of a hidden sigmoid/tanh layer's outputs within 1% of their bounds
    saturated_output: float = 0.9  # ... of the model's last layer (a confident classifier's sigmoid is saturated)


def step_alerts(record: StepRecord, limits: Thresholds, allow_inf: frozenset[str]) -> Iterator[Alert]:
    """Every alert of one sampled step."""
    yield from _nan_forward(record, allow_inf)
    yield from _nan_backward(record)
    yield from _small_gradients(record, limits)
    last = _output_layer(record)
    for h in record.layers:
        if h.input_modified:
            yield _alert(record, "inplace_input", h.name, h.type_name, INPLACE_MESSAGE)
        if h.dead_fraction is not None and h.dead_fraction >= limits.dead:
            yield _alert(record, "dead_relu", h.name, h.type_name,
                         f"{h.dead_fraction:.0%} of its units output 0 for every sample in the batch")  # fmt: skip
        limit = limits.saturated_output if h is last else limits.saturated
        if h.saturated_fraction is not None and h.saturated_fraction >= limit:
            yield _alert(record, "saturated", h.name, h.type_name,
                         f"{h.saturated_fraction:.0%} of its outputs are within 1% of the bounds")  # fmt: skip


INPLACE_MESSAGE = (
    "changed its input in place during its forward (the tensor's version counter went up) without saying so "
    "(no inplace=True): whoever else holds that tensor, a skip connection or the caller, now sees the changed "
    "values. Compute out of place (x = x - x.mean(), not x -= x.mean()) or clone the input first"
)


def _small_gradients(record: StepRecord, limits: Thresholds) -> Iterator[Alert]:
    """Vanishing gradients: the model's leading parameters (nearest the input, in order)
    that get a gradient far below the model's largest. A tiny gradient after a healthy
    one is a scaled residual branch (a layer scale of 1e-6), not vanishing: the signal
    still reaches the input."""
    largest: dict[str, float] = {}
    for p in record.params:
        if p.grad_norm is not None and math.isfinite(p.grad_norm):
            largest[p.module] = max(largest.get(p.module, 0.0), p.grad_norm)
    strongest = max(largest.values(), default=0.0)  # a small loss scales every gradient down alike: not vanishing
    containers: set[str] | None = None  # made when a small gradient first needs it (rarely)
    leading = True
    for p in record.params:
        g = p.grad_norm
        if g is None:
            continue
        if 0 <= g < limits.vanish and largest.get(p.module, 0.0) * _ROUNDING > g:
            yield _alert(record, "zero_grad_by_construction", p.module, "",
                         f"the gradient of {p.name} is {g:.3g}, zero up to rounding while the layer's "
                         f"other parameters get {largest[p.module]:.3g}: its output does not depend on it (a key "
                         "bias before a softmax over keys, a parameter a later normalisation cancels)",
                         param=p.name)  # fmt: skip
        elif leading and 0 < g < limits.vanish and g < _VANISHED * strongest:
            if containers is None:
                containers = _containers(largest)
            if p.module in containers:  # a block's own tensor (a mask embedding) is no layer on the signal's path
                continue
            message = (f"gradient norm of {p.name} is {g:.3g} (< {limits.vanish:g}), the model's largest "
                       f"{strongest:.3g}: the gradient fades before it reaches the input")  # fmt: skip
            yield _alert(record, "vanishing_grad", p.module, "", message, param=p.name)
        elif g > 0:  # exact zeros are unused parameters: they neither alert nor end the leading run
            leading = False


def _containers(modules: Iterable[str]) -> set[str]:
    """The names among `modules` that hold others of them (the root holds all):
    parameters of their own, such as the mask embedding wav2vec2 uses at a few
    masked steps, say nothing about how far the gradient reaches."""
    held: set[str] = set()
    for name in modules:
        while name:
            name = name.rpartition(".")[0]
            held.add(name)
    return held & set(modules)


def exploding(record: StepRecord, limits: Thresholds, first: dict[str, float]) -> Iterator[Alert]:
    """Exploding gradients, judged once the step is over: a gradient norm above
    `limits.explode` that either moved the weight by more than its own norm in one
    step or grew 1,000-fold since the parameter's first sampled step (`first`, kept
    by the caller). A large gradient that an adaptive optimizer tames (Adam after a
    BatchNorm over a batch of 2) stays silent."""
    for p in record.params:
        g = p.grad_norm
        if g is None or not math.isfinite(g):
            continue
        start = first.setdefault(p.name, g)
        if g <= limits.explode:
            continue
        ratio = p.update_ratio
        if ratio is not None and ratio > 1:
            why = f"and the step changed the weight by {ratio:.3g} times its own norm"
        elif start > 0 and g >= _GROWTH * start:
            why = f"{g / start:.3g} times its first sampled norm, {start:.3g}"
        else:
            continue
        yield _alert(record, "exploding_grad", p.module, "",
                     f"gradient norm of {p.name} is {g:.3g} (> {limits.explode:g}), {why}", param=p.name)  # fmt: skip


def _output_layer(record: StepRecord) -> object:
    """The leaf call that finished last: the one whose output is the model's."""
    return next((h for h in reversed(record.layers) if h.leaf), None)


@dataclass(frozen=True)
class Produced:
    """One call's finiteness, from a sampled step or from a trace: what `first_producer` reads."""

    name: str
    type_name: str
    leaf: bool
    nan: int
    inf: int
    inputs_finite: bool


def first_producer(calls: Iterable[Produced], allow_inf: frozenset[str]) -> tuple[str, str, str] | None:
    """(layer, type, why) of the first leaf call whose output is not finite while its
    inputs were; if none, the first container (its own code between submodules did
    it); if none, the model's input itself. -inf from layers in `allow_inf` is meant."""
    calls = list(calls)
    for leaf in (True, False):
        for c in calls:
            if c.leaf is leaf and c.inputs_finite and (c.nan or (c.inf and c.name not in allow_inf)):
                why = f"output has {c.nan} NaN and {c.inf} Inf values while its inputs were finite"
                return c.name, c.type_name, why
    root = next((c for c in calls if c.name == ""), None)
    if root is not None and not root.inputs_finite:
        return "", root.type_name, "the model's input has NaN or Inf values: it came with the data"
    return None


def _nan_forward(record: StepRecord, allow_inf: frozenset[str]) -> Iterator[Alert]:
    calls = (Produced(h.name, h.type_name, h.leaf, h.output.nan_count if h.output else 0,
                      h.output.inf_count if h.output else 0, h.inputs_finite) for h in record.layers)  # fmt: skip
    found = first_producer(calls, allow_inf)
    if found is not None:
        yield _alert(record, "nan", *found)


def _nan_backward(record: StepRecord) -> Iterator[Alert]:
    """In the backward pass gradients flow from the last layer to the first: the
    producer is the last layer (in forward order) whose output gradient is finite
    while the gradient of a layer before it is not."""
    leaves = [h for h in record.layers if h.leaf and h.has_grad]
    bad = [i for i, h in enumerate(leaves) if not h.grad_finite]
    if not bad:
        return
    first_bad = max(bad)  # the first to go bad in backward order
    culprit = leaves[first_bad + 1] if first_bad + 1 < len(leaves) else leaves[first_bad]
    g = leaves[first_bad]
    yield _alert(record, "nan_grad", culprit.name, culprit.type_name,
                 f"the backward pass through it produced {g.grad_nan} NaN and {g.grad_inf} Inf gradient values "
                 f"(at the output of {g.name})")  # fmt: skip


def _alert(record: StepRecord, kind: str, layer: str, type_name: str, message: str, param: str = "") -> Alert:
    return Alert(kind, record.step, layer, type_name, f"{layer or '(root)'}{f' ({type_name})' if type_name else ''}: "
                 f"{message}", record.rank, param)  # fmt: skip
