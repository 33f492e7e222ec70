"""`layerlens.verify`: trace with full values, then recompute every layer call
from its recorded inputs with its numpy reference and compare."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import nn
from typing_extensions import Unpack

from ..layers.registry import REGISTRY, Expected, Unverifiable
from ..options import TraceKeywords, TraceOptions
from ..records import LayerRecord
from ..tracing import trace
from .report import Verdict, VerifyReport

# (rtol, atol) by dtype: the reference runs in float64, PyTorch in the layer's dtype
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-9, 1e-12),
    "float32": (1e-4, 1e-6),
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
}


# verify keeps every tensor: its default budget for the copies is larger than trace's
VERIFY_MAX_BYTES = 2**31


def verify(
    model: nn.Module,
    x: Any = None,
    kwargs: Mapping[str, Any] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    *,
    options: TraceOptions | None = None,
    **keywords: Unpack[TraceKeywords],
) -> VerifyReport:
    """Check every layer call of one forward pass against its numpy reference.

    The model is traced with `values="full"` (the other trace options as for
    `trace`; `max_bytes` defaults to 2 GiB here); each call whose family has a
    reference is recomputed in float64 from its recorded inputs and the
    module's parameters, and compared with what PyTorch returned: it passes
    when max |torch - reference| <= atol + rtol * max |reference|, with
    dtype-aware defaults (`TOLERANCES`) unless `rtol` and `atol` are given.
    Calls without a reference are listed as unchecked, with the reason.
    """
    base = options if options is not None else TraceOptions(max_bytes=VERIFY_MAX_BYTES)
    opts = TraceOptions.merge(base, **{**keywords, "values": "full"})
    t = trace(model, x, kwargs=kwargs, options=opts)
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
    cover = REGISTRY.coverage(type(module))
    fn = cover.hook("reference")
    if fn is None:
        if cover.reason and cover.family is not None and cover.family.reference is not None:
            return unchecked(f"{cover.reason}, so the {cover.family.name} reference does not apply")
        return unchecked("no numpy reference for this type")
    name = getattr(fn, "__qualname__", str(fn))
    if _complex(r, module):
        return unchecked("complex values: the numpy references compute in real arithmetic", name)
    inputs = tuple(_as_float64(t.value) for t in r.inputs)
    if any(v is None for v in inputs[:1]):
        return unchecked("its inputs were not recorded (max_bytes reached?)", name)
    try:
        answer = fn(module, inputs, r)
    except Unverifiable as why:
        return unchecked(str(why), name)
    except Exception as exc:  # a reference that breaks is the reference's problem: say so, never raise
        return unchecked(f"the reference {name} raised {type(exc).__name__}: {exc}", name)
    scale = 0.0
    if isinstance(answer, Expected):
        name = f"reference.{answer.by}" if answer.by else name
        extra = list(answer.also)
        scale = answer.scale
        answer = answer.outputs
    else:
        extra = []
    expected = answer if isinstance(answer, tuple) else (answer,)
    pairs = [(t.value, e, scale) for t, e in zip(r.outputs, expected, strict=False) if e is not None]
    pairs += [(a, e, 0.0) for a, e in extra]
    if not pairs or any(actual is None for actual, _, _ in pairs):
        return unchecked("its outputs were not recorded (max_bytes reached?)", name)
    dtype = r.outputs[0].dtype if r.outputs else "float32"
    rt, at = TOLERANCES.get(dtype, TOLERANCES["float32"])
    rt, at = rtol if rtol is not None else rt, atol if atol is not None else at
    max_abs, max_rel, ok = _compare(pairs, rt, at)
    status = "pass" if ok else "fail"
    return Verdict(r.name, r.type_name, r.call_index, status, name, max_abs, max_rel, rt, at, dtype)


def _compare(pairs: list[tuple[Any, np.ndarray, float]], rtol: float, atol: float) -> tuple[float, float, bool]:
    """The largest differences, and whether each pair is within `atol + rtol * scale`
    (the larger of the reference's largest magnitude and the pair's own scale)."""
    max_abs = max_rel = 0.0
    ok = True
    for actual, expected, floor in pairs:
        a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
        if a.shape != e.shape:
            return float("inf"), float("inf"), False
        both_inf = np.isinf(a) & np.isinf(e) & (np.sign(a) == np.sign(e))
        diff = np.where(both_inf | (np.isnan(a) & np.isnan(e)), 0.0, np.abs(a - e))
        scale = float(np.max(np.abs(np.where(np.isfinite(e), e, 0.0)))) if e.size else 0.0
        worst = float(np.max(diff)) if diff.size else 0.0
        max_abs = max(max_abs, worst)
        max_rel = max(max_rel, worst / scale if scale else worst)
        ok = ok and worst <= atol + rtol * max(scale, floor)
    return max_abs, max_rel, ok


def _complex(r: LayerRecord, module: nn.Module) -> bool:
    """Whether the call had a complex input or output, or the layer a complex parameter."""
    if any(t.dtype.startswith("complex") for t in (*r.inputs, *r.outputs)):
        return True
    return any(p.is_complex() for p in module.parameters(recurse=False))


def _as_float64(value: np.ndarray | None) -> np.ndarray | None:
    if value is None:
        return None
    return value.astype(np.float64) if value.dtype.kind in "fc" else value
