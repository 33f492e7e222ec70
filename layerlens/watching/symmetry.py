"""Units that can never differ: a Linear or convolution whose output units all have
the same weights (a constant initialisation) compute the same value and get the
same gradient, so every update keeps them equal. Rows equal when watch attaches
are candidates (the family's `units` hook says which weight holds the units); a
sampled step judges them once an update changed the weight: still equal is the
alert, different (a zero-initialised head, a LoRA `B`, which the first update
sets apart) is fine."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..layers.registry import REGISTRY
from .sharded import local, local_norm


def candidates(model: nn.Module) -> dict[str, tuple[nn.Parameter, float]]:
    """Trainable weights whose output units (rows, as the layer's family names them:
    a Linear's, a convolution's) are all equal now: name -> (parameter, its norm now)."""
    found: dict[str, tuple[nn.Parameter, float]] = {}
    owners = {id(p): n for n, p in model.named_parameters()}
    with torch.no_grad():
        for m in model.modules():
            units = REGISTRY.coverage(type(m)).hook("units")
            w = units(m) if units is not None else None
            if isinstance(w, nn.Parameter) and w.requires_grad and id(w) in owners and _rows_equal(w):
                found[owners[id(w)]] = (w, local_norm(w))
    return found


def judge(found: dict[str, tuple[nn.Parameter, float]]) -> Iterator[tuple[str, str]]:
    """(parameter, message) for each candidate that an update changed and that still has
    equal rows; the candidates judged either way leave `found`."""
    with torch.no_grad():
        for name in list(found):
            w, norm = found[name]
            if local_norm(w) == norm:  # not updated yet: judged later
                continue
            del found[name]
            if _rows_equal(w):
                yield name, f"all {w.shape[0]} output units of {name} {STUCK}"


def _rows_equal(w: torch.Tensor) -> bool:
    t = local(w).detach()
    return t.shape[0] >= 2 and bool((t == t[:1]).all())


STUCK = (
    "have the same weights, and the update kept them the same: they compute one value and get one gradient, so "
    "they never differ (a constant initialisation?). Initialise the weights randomly (the layer's default "
    "reset_parameters())"
)
