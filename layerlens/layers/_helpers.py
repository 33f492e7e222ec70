"""Small helpers shared by the layer families (built-in or not)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..records import LayerRecord, Shape

_SPATIAL_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def copy_attrs(record: LayerRecord, module: nn.Module, *names: str) -> None:
    """Copy the module attributes `names` that it has into `record.details`."""
    for name in names:
        if hasattr(module, name):
            record.details[name] = getattr(module, name)


def spatial_names(n: int) -> tuple[str, ...]:
    """Names of the last `n` dimensions: `L`; `H, W`; `D, H, W`."""
    return _SPATIAL_NAMES.get(n, tuple(f"dim{i}" for i in range(n)))


def main_shapes(record: LayerRecord) -> tuple[Shape, Shape] | None:
    """Shapes of the first input and first output, when both were recorded."""
    if not record.inputs or not record.outputs:
        return None
    return record.inputs[0].shape, record.outputs[0].shape


def machine_eps(dtype: str) -> float:
    """Machine epsilon of a recorded dtype name (float32's for non-floats)."""
    try:
        return float(torch.finfo(getattr(torch, dtype)).eps)
    except (AttributeError, TypeError):
        return float(torch.finfo(torch.float32).eps)


def shape_text(shape: Any) -> str:
    """`(8, 32, 256)` for a tensor shape or a shape tuple."""
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def first_tensor(args: tuple[Any, ...]) -> torch.Tensor | None:
    """The first positional argument, if it is a tensor."""
    return args[0] if args and isinstance(args[0], torch.Tensor) else None


def module_signature(module: nn.Module, *names: str) -> str:
    """`Conv1d(in_channels=32, kernel_size=(3,))`: the type with the named attributes."""
    parts = [f"{n}={getattr(module, n)!r}" for n in names if hasattr(module, n)]
    return f"{type(module).__name__}({', '.join(parts)})"


def array(t: Any) -> np.ndarray | None:
    """A parameter or buffer as float64 numpy, for references (None stays None)."""
    return None if t is None else t.detach().cpu().double().numpy()


def first_input(inputs: tuple[np.ndarray | None, ...], k: int = 0) -> np.ndarray:
    """A reference's positional input `k`, or `Unverifiable` when it was not recorded."""
    from .registry import Unverifiable

    value = inputs[k] if len(inputs) > k else None
    if value is None:
        raise Unverifiable(f"positional input {k} was not recorded")
    return value


def unit_weights(module: Any) -> Any:
    """The weight whose first dimension indexes the output units (a Linear's
    (out, in), a convolution's (out, in/groups, *kernel)), or None."""
    w = getattr(module, "weight", None)
    return w if isinstance(w, torch.nn.Parameter) and w.dim() >= 2 else None


def batch_axis_check(record: Any, root: Any, name: str, steps_are: str) -> Any:
    """A sequence-first layer (batch_first=False: (T, B, ...)) whose sequence axis has
    the model's batch size, on both the model's input and output, while what it reads
    as the batch does not come back in the output: (B, T, F) data fed as (T, B, F).
    A failed `Check` named `name`, or None."""
    from ..records import Check

    if record is root or not record.inputs or not root.inputs or not root.outputs:
        return None
    shape, model_in, model_out = record.inputs[0].shape, root.inputs[0].shape, root.outputs[0].shape
    if len(shape) != 3 or not model_in or not model_out:
        return None
    steps, batch = shape[0], shape[1]
    if steps == batch or model_in[0] != steps or model_out[0] != steps:
        return None
    if len(model_out) >= 3 and model_out[1] == batch:
        return None  # sequence-first in and out: (T, B, ...) throughout
    return Check(
        name, False, f"batch {steps}", f"batch {batch}",
        f"batch_first=False reads the input {list(shape)} as {steps} {steps_are} of a batch of {batch}, but the "
        f"model's input {list(model_in)} and output {list(model_out)} have {steps} along dim 0: is the data "
        "(batch, sequence, features)? pass batch_first=True, or feed (sequence, batch, features)",
    )  # fmt: skip
