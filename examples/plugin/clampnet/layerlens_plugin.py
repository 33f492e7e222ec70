"""What layerlens should know about clampnet's layers: one family per layer
kind, each a `layerlens.LayerFamily` (facts, checks, failure hint, numpy
reference). Nothing in layerlens changes for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

import layerlens as ll
from layerlens.layers import Expected

from . import Clamp


def inspect_clamp(module: Clamp, record: ll.LayerRecord) -> Iterator[ll.Check]:
    """The band as facts; `clamp_range`: every output value lies in [low, high]
    (read off the output's statistics, so it costs nothing extra)."""
    record.details.update(low=module.low, high=module.high)
    stats = record.outputs[0].stats if record.outputs else None
    if stats is None:
        return
    ok = module.low <= stats.min and stats.max <= module.high
    where = "inside" if ok else "outside"
    message = f"outputs span [{stats.min:.4g}, {stats.max:.4g}], {where} [{module.low}, {module.high}]"
    yield ll.Check("clamp_range", ok, (module.low, module.high), (stats.min, stats.max), message)


def expect_clamp(module: Clamp, args: tuple[Any, ...]) -> str | None:
    """Clamp works on floating tensors."""
    x = args[0] if args else None
    if isinstance(x, torch.Tensor) and not x.is_floating_point():
        return f"Clamp(low={module.low}, high={module.high}) expects a floating tensor, got {x.dtype}"
    return None


def reference_clamp(module: Clamp, inputs: tuple[np.ndarray | None, ...], record: ll.LayerRecord) -> Expected:
    """numpy's clip with the same band."""
    assert inputs[0] is not None
    return Expected(np.clip(inputs[0], module.low, module.high), by="clip")


FAMILIES = [
    ll.LayerFamily("clampnet.clamp", (Clamp,), inspect=inspect_clamp, expect=expect_clamp,
                   reference=reference_clamp, color="#ffe3b3"),
]  # fmt: skip
