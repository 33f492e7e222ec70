"""Where NaN/Inf came from when it appears between sampled steps: a cheap check of
the gradients before every optimizer step, and, when it fails, a trace of that
step's batch (the weights not yet updated) to find the layer that produced it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .sharded import local

FAMILY = ("nan", "nan_grad")  # alerts that a first NaN causes again and again downstream and later


def grads_finite(params: list[tuple[str, str, nn.Parameter]]) -> bool:
    """One fused norm over every gradient (per device and dtype), one host sync."""
    groups: dict[tuple[Any, Any], list[torch.Tensor]] = {}
    for _, _, p in params:
        if p.grad is not None:
            g = local(p.grad)
            groups.setdefault((g.device, g.dtype), []).append(g)
    return all(bool(torch.stack(torch._foreach_norm(tensors)).isfinite().all()) for tensors in groups.values())


def forward_origin(trace: Any) -> tuple[str, str, str] | None:
    """(layer, type, message) of the first leaf call whose output is not finite while
    its inputs were, in the trace of the step's batch (then containers, whose own code
    ran between submodules; then the model's input itself)."""
    records = list(trace)
    parents = {r.parent for r in records if r.parent is not None}
    for leaf in (True, False):
        for i, r in enumerate(records):
            if (i not in parents) is not leaf:
                continue
            bad_out = sum(_bad(t) for t in r.outputs)
            if bad_out and not any(_bad(t) for t in r.inputs):
                return r.name, r.type_name, f"its output has {bad_out} non-finite values while its inputs were finite"
    if records and any(_bad(t) for t in records[0].inputs):
        return "", records[0].type_name, "the model's input has NaN or Inf values: it came with the data"
    return None


def backward_origin(params: list[tuple[str, str, nn.Parameter]], order: list[str]) -> tuple[str, str] | None:
    """(layer, parameter) nearest the output whose gradient is not finite: gradients
    flow backward, so the NaN was born there and spread toward the input."""
    bad: dict[str, str] = {}
    for name, module, p in params:
        if p.grad is not None and not bool(torch.isfinite(local(p.grad)).all()):
            bad.setdefault(module, name)
    ranked = [m for m in order if m in bad]
    return (ranked[-1], bad[ranked[-1]]) if ranked else None


def _bad(t: Any) -> int:
    s = t.stats
    return 0 if s is None else int(s.nan_count) + int(s.inf_count)
