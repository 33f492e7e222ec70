"""`layerlens.verify`: trace with full values, then recompute every layer call
from its recorded inputs with its numpy reference and compare."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..inspectors.registry import reference_for
from ..records import LayerRecord
from ..tracing import Mode, trace
from . import adapters
from .adapters import UnverifiableError, array
from .report import Verdict, VerifyReport

# (rtol, atol) by dtype: the reference runs in float64, PyTorch in the layer's dtype
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-9, 1e-12),
    "float32": (1e-4, 1e-6),
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
}


def verify(
    model: nn.Module,
    x: Any = None,
    kwargs: Mapping[str, Any] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    *,
    input_size: Any = None,
    dtypes: Any = None,
    mode: Mode = None,
    max_bytes: int = 2**31,
) -> VerifyReport:
    """Check every layer call of one forward pass against its numpy reference.

    The model is traced with `values="full"`; each call whose module has a
    reference (`layerlens.register_reference`) is recomputed in float64 from
    its recorded inputs and the module's parameters, and compared with what
    PyTorch returned: it passes when max |torch - reference| <= atol + rtol *
    max |reference|, with dtype-aware defaults (`TOLERANCES`) unless `rtol`
    and `atol` are given. Calls without a reference are listed as unchecked.
    """
    t = trace(model, x, kwargs=kwargs, input_size=input_size, dtypes=dtypes, values="full", mode=mode,
              max_bytes=max_bytes)  # fmt: skip
    modules = dict(model.named_modules())
    parents = {r.parent for r in t.records}
    verdicts = []
    for i, r in enumerate(t.records):
        if i in parents:
            verdicts.append(Verdict(r.name, r.type_name, r.call_index, "composite"))
        else:
            verdicts.append(_verdict(r, modules.get(r.name) if r.registered else None, rtol, atol))
    return VerifyReport(verdicts, t.meta.model_type)


def _verdict(r: LayerRecord, module: nn.Module | None, rtol: float | None, atol: float | None) -> Verdict:
    def unchecked(note: str, reference: str | None = None) -> Verdict:
        return Verdict(r.name, r.type_name, r.call_index, "unchecked", reference, note=note)

    if module is None:
        return unchecked("not a registered submodule")
    fn = reference_for(type(module))
    if fn is None:
        return unchecked("no numpy reference for this type")
    builtin = getattr(fn, "__module__", "") == adapters.__name__
    name = f"reference.{fn.__name__}" if builtin else getattr(fn, "__qualname__", str(fn))
    inputs = tuple(_as_float64(t.value) for t in r.inputs)
    if any(v is None for v in inputs[:1]):
        return unchecked("its inputs were not recorded (max_bytes reached?)", name)
    try:
        expected = fn(module, inputs, r)
        extra = _running_stats(module, r, inputs)
    except UnverifiableError as why:
        return unchecked(str(why), name)
    expected = expected if isinstance(expected, tuple) else (expected,)
    pairs = [(t.value, e) for t, e in zip(r.outputs, expected, strict=False) if e is not None]
    pairs += extra
    if not pairs or any(actual is None for actual, _ in pairs):
        return unchecked("its outputs were not recorded (max_bytes reached?)", name)
    dtype = r.outputs[0].dtype if r.outputs else "float32"
    rt, at = TOLERANCES.get(dtype, TOLERANCES["float32"])
    rt, at = rtol if rtol is not None else rt, atol if atol is not None else at
    max_abs, max_rel, ok = _compare(pairs, rt, at)
    status = "pass" if ok else "fail"
    return Verdict(r.name, r.type_name, r.call_index, status, name, max_abs, max_rel, rt, at, dtype)


def _compare(pairs: list[tuple[Any, np.ndarray]], rtol: float, atol: float) -> tuple[float, float, bool]:
    max_abs = max_rel = 0.0
    ok = True
    for actual, expected in pairs:
        a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
        if a.shape != e.shape:
            return float("inf"), float("inf"), False
        both_inf = np.isinf(a) & np.isinf(e) & (np.sign(a) == np.sign(e))
        diff = np.where(both_inf | (np.isnan(a) & np.isnan(e)), 0.0, np.abs(a - e))
        scale = float(np.max(np.abs(np.where(np.isfinite(e), e, 0.0)))) if e.size else 0.0
        worst = float(np.max(diff)) if diff.size else 0.0
        max_abs = max(max_abs, worst)
        max_rel = max(max_rel, worst / scale if scale else worst)
        ok = ok and worst <= atol + rtol * scale
    return max_abs, max_rel, ok


def _running_stats(module: nn.Module, r: LayerRecord, inputs: tuple[Any, ...]) -> list[tuple[Any, np.ndarray]]:
    """BatchNorm in training also updates its running statistics: run the call
    again on a copy of the layer and compare the update with the reference's."""
    if not (isinstance(module, nn.modules.batchnorm._BatchNorm) and r.training and module.running_mean is not None):
        return []
    from ..reference import batch_norm

    m: Any = module
    sandbox = copy.deepcopy(module).train()
    with torch.no_grad():
        sandbox(torch.from_numpy(inputs[0]).to(module.running_mean.dtype))
    _, mean, var = batch_norm(
        inputs[0], array(m.weight), array(m.bias), array(m.running_mean), array(m.running_var), True,
        m.momentum, m.eps, int(m.num_batches_tracked),
    )  # fmt: skip
    assert mean is not None and var is not None
    return [(array(sandbox.running_mean), mean), (array(sandbox.running_var), var)]


def _as_float64(value: np.ndarray | None) -> np.ndarray | None:
    if value is None:
        return None
    return value.astype(np.float64) if value.dtype.kind in "fc" else value
