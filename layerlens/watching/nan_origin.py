"""Where NaN/Inf came from when it appears between sampled steps: a cheap check of
the gradients before every optimizer step, and, when it fails, a trace of that
step's batch (the weights not yet updated) to find the layer that produced it."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..flatten import flatten
from .alerts import Produced, first_producer
from .sharded import local

FAMILY = ("nan", "nan_grad")  # alerts that a first NaN causes again and again downstream and later


def sentinel_param(
    params: list[tuple[str, str, nn.Parameter]], order: list[str] | None = None, small: int = 65536
) -> nn.Parameter | None:
    """The parameter the every-step check reads: the first trainable one, nearest the
    input (a NaN born downstream in the backward reaches its gradient; the output
    check covers the forward), that is small (a bias rather than an embedding table),
    else the smallest. "First" is the layers' call order once a sampled step has
    shown it (`order`), else their registration order."""
    trainable = [(m, p) for _, m, p in params if p.requires_grad]
    if not trainable:
        return None
    if order:
        rank = {name: i for i, name in enumerate(order)}
        trainable.sort(key=lambda mp: rank.get(mp[0], len(rank)))
    return next((p for _, p in trainable if p.numel() <= small), min((p for _, p in trainable), key=torch.numel))


def grad_finite(p: nn.Parameter | None) -> bool:
    """Whether `p`'s gradient is free of NaN/Inf: one small reduction, one host sync."""
    g = p.grad if p is not None else None
    return g is None or grad_finite_tensor(g)  # NaN or Inf anywhere makes the sum non-finite (or overflow: look)


def output_finite(output: Any) -> bool:
    """Whether the floating tensors a forward returned are free of NaN/Inf (a NaN born
    in the forward reaches the output; one born in the backward reaches the first
    layer's gradient, which `grad_finite` reads)."""
    if isinstance(output, torch.Tensor):
        return not output.is_floating_point() or grad_finite_tensor(output)
    found: list[tuple[str, torch.Tensor]] = []
    flatten(output, found, [])
    return all(grad_finite_tensor(t) for _, t in found if t.is_floating_point())


def grad_finite_tensor(t: torch.Tensor) -> bool:
    """No NaN/Inf in `t`: one sum and one read (a float32 overflow reads as non-finite,
    which only costs a closer look). A torch sum, not numpy's: inside a training
    step torch's code is warm, and the sum costs half of numpy's there."""
    return math.isfinite(float(local(t).detach().sum()))


def forward_origin(trace: Any, allow_inf: frozenset[str]) -> tuple[str, str, str] | None:
    """`first_producer` over the trace of the step's batch."""
    records = list(trace)
    parents = {r.parent for r in records if r.parent is not None}
    calls = (Produced(r.name, r.type_name, i not in parents, _count(r.outputs, "nan_count"),
                      _count(r.outputs, "inf_count"), not _count(r.inputs, "nan_count", "inf_count"))
             for i, r in enumerate(records))  # fmt: skip
    return first_producer(calls, allow_inf)


def backward_origin(params: list[tuple[str, str, nn.Parameter]], order: list[str]) -> tuple[str, str] | None:
    """(layer, parameter) nearest the output whose gradient is not finite: gradients
    flow backward, so the NaN was born there and spread toward the input."""
    bad: dict[str, str] = {}
    for name, module, p in params:
        if p.grad is not None and not bool(torch.isfinite(local(p.grad)).all()):
            bad.setdefault(module, name)
    ranked = [m for m in order if m in bad]
    return (ranked[-1], bad[ranked[-1]]) if ranked else None


def _count(infos: Any, *fields: str) -> int:
    return sum(int(getattr(t.stats, f)) for t in infos if t.stats is not None for f in fields)
