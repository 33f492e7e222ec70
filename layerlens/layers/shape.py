"""Layers that only move values around (Identity, Flatten, Unflatten) and the
empty Sequential: numpy references that reshape."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from ..records import LayerRecord
from ._helpers import first_input
from .registry import Expected, LayerFamily, Unverifiable


def reference_shape(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """Identity and an empty Sequential return their input; Flatten and Unflatten reshape it."""
    x = first_input(inputs)
    if isinstance(m, nn.Flatten):
        start, end = m.start_dim % x.ndim, m.end_dim % x.ndim
        return Expected(x.reshape(*x.shape[:start], -1, *x.shape[end + 1 :]), by="flatten")
    if isinstance(m, nn.Unflatten):
        dim = m.dim % x.ndim
        return Expected(x.reshape(*x.shape[:dim], *m.unflattened_size, *x.shape[dim + 1 :]), by="unflatten")
    if isinstance(m, nn.Sequential) and len(m):
        raise Unverifiable("a Sequential whose children did not run")
    return Expected(x, by="identity")


FAMILIES = (LayerFamily("shape", (nn.Identity, nn.Flatten, nn.Unflatten, nn.Sequential), reference=reference_shape),)
