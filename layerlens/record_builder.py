"""Records from what the recorder kept: one `LayerRecord` per call, inspected.

This runs once the forward is over, in one pass over the recorder's flat
lists: the hot path only records. The families' inspectors run here, before
the trace returns, because they read the live modules and a trace keeps no
reference to the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .failure import first_line
from .layers.registry import REGISTRY, Coverage, InspectorOverrides
from .model_index import ModelIndex
from .recorder import Recorder
from .records import Check, LayerRecord
from .tensor_capture import Capture


def build_records(
    recorder: Recorder, capture: Capture, index: ModelIndex, overrides: InspectorOverrides | None
) -> tuple[list[LayerRecord], list[str]]:
    """One LayerRecord per call, inspected; and notes about inspectors that broke."""
    records: list[LayerRecord] = []
    broken: list[str] = []
    counts: dict[int, int] = {}
    info = capture.info
    slots = recorder.slots
    measures, others, errors = recorder.measures, recorder.others, recorder.errors
    script = torch.jit.ScriptModule
    for k, (i, parent, training, ins, outs) in enumerate(
        zip(recorder.mods, recorder.parents, recorder.training, recorder.inputs, recorder.outputs, strict=True)
    ):
        slot = slots[i]
        module = slot.module
        call_index = counts.get(i, 0)
        counts[i] = call_index + 1
        total, trainable = index.param_counts(module)
        other = others.get(k, _NO_OTHERS)
        error = errors.get(k)
        measured = measures.get(k)
        record = LayerRecord(
            slot.name,
            _type_name(module),
            slot.depth,
            call_index,
            tuple([info(e) for e in ins]),
            tuple([info(e) for e in outs]),
            total,
            trainable,
            {},
            [],
            training,
            slot.registered,
            _type_path(type(module)),
            tuple(other[0]),
            tuple(other[1]),
            describe(error) if error is not None else None,
            parent if parent >= 0 else None,
            None,
            None,
            None,  # flops, filled in by the trace when counted
            {key: capture.resolve(v) for key, v in measured.items()} if measured else {},
        )
        if isinstance(module, script):
            record.details["torchscript"] = True
            record.family = "torchscript"
        else:
            note = _inspect(module, record, slot.cover or REGISTRY.coverage(type(module)), overrides)
            if note and note not in broken:
                broken.append(note)
        records.append(record)
    _in_model(records, slots, recorder.mods, broken)
    return records, broken


def _in_model(records: list[LayerRecord], slots: Any, mods: list[int], broken: list[str]) -> None:
    """The families' checks that compare a layer with the whole model's call."""
    if not records:
        return
    root = records[0]
    for record, i in zip(records, mods, strict=True):
        cover = slots[i].cover or REGISTRY.coverage(type(slots[i].module))
        fn = cover.hook("in_model") if cover.judged else None
        if fn is None:
            continue
        try:
            record.checks.extend(_plain_check(c) for c in fn(slots[i].module, record, root) or ())
        except Exception as exc:
            note = f"in_model check of {record.type_name} '{record.label}' failed: {exc!r}"
            if note not in broken:
                broken.append(note)


_NO_OTHERS: tuple[tuple[Any, ...], tuple[Any, ...]] = ((), ())


def _inspect(
    module: nn.Module, record: LayerRecord, cover: Coverage, overrides: InspectorOverrides | None
) -> str | None:
    """Run the module's inspector; a broken inspector becomes a note, not a crash.

    A family that does not judge this module (its forward is another) still
    gives its facts; its checks are dropped and the record says why.
    """
    fn, judged = _inspector(type(module), cover, overrides)
    record.family = cover.family.name if cover.family is not None else None
    note = None
    if fn is not None:
        checks: list[Check] = []
        try:
            for item in fn(module, record) or ():
                if not isinstance(item, Check):
                    raise TypeError(f"inspectors must return or yield Check objects, got {type(item).__name__}")
                checks.append(_plain_check(item))
        except Exception as exc:
            if judged:
                name = getattr(fn, "__qualname__", fn)
                note = f"inspector {name!s} failed on {record.type_name} '{record.label}': {exc!r}"
        if judged:
            record.checks.extend(checks)
        elif checks or (cover.family is not None and cover.family.probe is not None):
            record.not_checked = cover.reason
    details = record.details
    if details and not all(type(v) in _ATOMS for v in details.values()):
        record.details = {k: _plain(v) for k, v in details.items()}
    return note


def _inspector(cls: type, cover: Coverage, overrides: InspectorOverrides | None) -> tuple[Any, bool]:
    """The inspector to run and whether its checks count: a per-call override
    first (it always counts), then the family's."""
    if overrides:
        for base in cls.__mro__:
            if base in overrides:
                return overrides[base], True
    if cover.judged:
        return cover.hook("inspect"), True
    return cover.facts(), False


def _plain_check(c: Check) -> Check:
    """A check with a real bool and JSON-friendly values (inspectors may use tensors)."""
    return Check(str(c.name), bool(c.ok), _plain(c.expected), _plain(c.actual), str(c.message))


_ATOMS = {bool, int, float, str, type(None)}  # details already JSON-friendly, as they mostly are


def _plain(value: Any) -> Any:
    """Details as JSON-friendly values: tuples for sequences, str for the rest."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list, torch.Size)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return _plain(value.item())
    return str(value)


_TYPE_PATHS: dict[type, tuple[str, ...]] = {}


def _type_name(module: nn.Module) -> str:
    """The class name, or for a TorchScript module the name of the class it was scripted from."""
    if isinstance(module, torch.jit.ScriptModule):
        return str(getattr(module, "original_name", type(module).__name__))
    return type(module).__name__


def _type_path(cls: type) -> tuple[str, ...]:
    path = _TYPE_PATHS.get(cls)
    if path is None:
        stop = cls.__mro__.index(nn.Module)
        path = _TYPE_PATHS[cls] = tuple(f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__[:stop])
    return path


def describe(error: BaseException) -> str:
    """`TypeName: first line of the message` (just the type when it has none or cannot say it)."""
    text = first_line(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
