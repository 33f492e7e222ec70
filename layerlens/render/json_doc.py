"""Trace <-> JSON, schema `layerlens.trace/1` (documented in docs/json-schema.md).

Strict JSON: non-finite floats are written as `{"$float": "nan"|"inf"|"-inf"}`
and tuples as lists (details and check values come back as tuples). Full
values go to an `.npz` beside a saved file and are loaded with
`allow_pickle=False`: loading never executes code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..json_floats import decode_float, encode
from ..records import Check, Edge, LayerRecord, NodeRef, OpRecord, TensorInfo, TensorStats
from ..trace_data import TraceData, TraceMeta

SCHEMA = "layerlens.trace/1"
T = TypeVar("T")
D = TypeVar("D", bound=TraceData)


# -- writing ------------------------------------------------------------------


def to_dict(trace: TraceData, value_keys: dict[int, str] | None = None) -> dict[str, Any]:
    """The JSON document as Python objects; `value_keys` maps id(array) -> npz key."""
    keys = value_keys or {}
    return {
        "schema": SCHEMA,
        "meta": encode(_fields(trace.meta)),
        "error": trace.error,
        "warnings": list(trace.warnings),
        "records": [_record(r, keys) for r in trace.records],
        "ops": [_op(o) for o in trace.ops],
        "edges": [[str(e.src), str(e.dst), list(e.shape), e.dtype] for e in trace.edges],
    }


def dumps(trace: TraceData, indent: int | None = 1) -> str:
    """The trace as a JSON string, without full values."""
    return json.dumps(to_dict(trace), indent=indent, allow_nan=False, ensure_ascii=False)


def save(trace: TraceData, path: Path) -> Path:
    """Write `path` (JSON) and, when the trace holds values, `path` with `.npz`."""
    arrays: dict[str, np.ndarray] = {}
    keys: dict[int, str] = {}
    for i, r in enumerate(trace.records):
        for side, infos in (("in", r.inputs), ("out", r.outputs)):
            for j, t in enumerate(infos):
                if t.value is not None and id(t.value) not in keys:
                    keys[id(t.value)] = f"r{i}.{side}{j}"
                    arrays[keys[id(t.value)]] = t.value
    doc = to_dict(trace, keys)
    if arrays:
        doc["values_file"] = _npz_path(path).name
        np.savez_compressed(_npz_path(path), **arrays)  # type: ignore[arg-type]
    path.write_text(json.dumps(doc, indent=1, allow_nan=False, ensure_ascii=False), encoding="utf-8")
    return path


def _record(r: LayerRecord, keys: dict[int, str]) -> dict[str, Any]:
    return {
        "name": r.name,
        "type_name": r.type_name,
        "type_path": list(r.type_path),
        "depth": r.depth,
        "call_index": r.call_index,
        "parent": r.parent,
        "training": r.training,
        "registered": r.registered,
        "num_params": r.num_params,
        "trainable_params": r.trainable_params,
        "inputs": [_tensor(t, keys) for t in r.inputs],
        "outputs": [_tensor(t, keys) for t in r.outputs],
        "other_inputs": [list(o) for o in r.other_inputs],
        "other_outputs": [list(o) for o in r.other_outputs],
        "details": encode(r.details),
        "checks": [encode(_fields(c)) for c in r.checks],
        "error": r.error,
        "family": r.family,
        "not_checked": r.not_checked,
        "flops": r.flops,
    }


def _op(o: OpRecord) -> dict[str, Any]:
    return {
        "index": o.index,
        "name": o.name,
        "label": o.label,
        "parent": o.parent,
        "inputs": [_tensor(t, {}) for t in o.inputs],
        "outputs": [_tensor(t, {}) for t in o.outputs],
    }


def _tensor(t: TensorInfo, keys: dict[int, str]) -> dict[str, Any]:
    return {
        "path": t.path,
        "shape": list(t.shape),
        "dtype": t.dtype,
        "device": t.device,
        "requires_grad": t.requires_grad,
        "stats": encode(_fields(t.stats)) if t.stats is not None else None,
        "value": keys.get(id(t.value)) if t.value is not None else None,
    }


def _fields(obj: Any) -> dict[str, Any]:
    """A dataclass instance's fields by name (works with __slots__ too)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


# -- reading ------------------------------------------------------------------


def load(source: str | Path, cls: type[D]) -> D:
    """A trace (of class `cls`) from JSON text or from the path of a saved one (with its `.npz`).

    Whatever is wrong with the document (syntax, a missing or mistyped field, a
    parent or edge pointing nowhere, nesting too deep, a broken values file) is
    a ValueError naming the place; a `source` that is neither text nor a path is
    a TypeError."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"load_trace() takes JSON text or a path, got {type(source).__name__}")
    path: Path | None = None
    if not isinstance(source, str) or not source.lstrip().startswith(("{", "[")):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"load_trace: {str(source)[:80]!r} is neither JSON text nor an existing file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"load_trace: cannot read {str(path)!r} ({exc})") from None
    else:
        text = source
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"load_trace: not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    try:
        return from_dict(doc, cls, _load_arrays(doc, path))
    except ValueError:
        raise
    except (TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError) as exc:
        raise ValueError(f"load_trace: malformed document ({type(exc).__name__}: {str(exc)[:200]})") from None


def from_dict(doc: Any, cls: type[D], arrays: dict[str, np.ndarray] | None = None) -> D:
    """Rebuild a Trace from a decoded JSON document, validating as it goes."""
    if not isinstance(doc, dict) or "schema" not in doc:
        raise ValueError("load_trace: not a layerlens trace (no 'schema' field)")
    if doc["schema"] != SCHEMA:
        raise ValueError(f"load_trace: unsupported schema {str(doc['schema'])[:80]!r}; this layerlens reads {SCHEMA!r}")
    r = _Reader(arrays or {})
    meta = r.meta(r.get(doc, "meta", dict))
    records = [r.record(item, f"records[{i}]") for i, item in enumerate(r.get(doc, "records", list))]
    warnings = [str(w) for w in r.get(doc, "warnings", list)]
    error = doc.get("error")
    ops = [r.op(item, f"ops[{i}]") for i, item in enumerate(r.get_or(doc, "ops", list))]
    edges = [r.edge(item, f"edges[{i}]") for i, item in enumerate(r.get_or(doc, "edges", list))]
    _check_links(records, ops, edges)
    return cls(records, meta, warnings, error if isinstance(error, str) else None, ops, edges)


def _check_links(records: list[LayerRecord], ops: list[OpRecord], edges: list[Edge]) -> None:
    """Parents start before their children (no cycles), and edges join nodes that exist."""
    for i, rec in enumerate(records):
        if rec.parent is not None and not 0 <= rec.parent < i:
            raise ValueError(f"load_trace: records[{i}].parent is {rec.parent}: a parent is an earlier record")
    for i, op in enumerate(ops):
        if op.parent is not None and not 0 <= op.parent < len(records):
            raise ValueError(f"load_trace: ops[{i}].parent is {op.parent}: no such record")
    sizes = {"call": len(records), "op": len(ops)}
    for i, e in enumerate(edges):
        for end in (e.src, e.dst):
            if end.kind in sizes and end.index >= sizes[end.kind]:
                raise ValueError(f"load_trace: edges[{i}] refers to {end}, which is not in the document")


def _load_arrays(doc: Any, path: Path | None) -> dict[str, np.ndarray]:
    name = doc.get("values_file") if isinstance(doc, dict) else None
    if not name or path is None:
        return {}
    npz = path.with_name(Path(str(name)).name)
    if not npz.is_file():
        return {}
    try:
        with np.load(npz, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, MemoryError, zipfile.BadZipFile) as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise ValueError(f"load_trace: the values file {npz.name!r} is unreadable ({why})") from None


class _Reader:
    """Field access that turns malformed input into a ValueError naming the field."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def get(self, obj: Any, key: str, kind: type[T] | tuple[type, ...], where: str = "") -> T:
        here = f"{where}.{key}" if where else key
        if not isinstance(obj, dict) or key not in obj:
            raise ValueError(f"load_trace: missing field {here!r}")
        value = obj[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"load_trace: field {here!r} should be {_kind_name(kind)}, got {type(value).__name__}")
        return value  # type: ignore[return-value]

    def get_or(self, obj: dict[str, Any], key: str, kind: type[T]) -> T:
        """An optional field: its value when present (of the right type), else empty."""
        return self.get(obj, key, kind) if key in obj else kind()

    def meta(self, obj: dict[str, Any]) -> TraceMeta:
        fields = TraceMeta.__dataclass_fields__
        missing = [f for f in fields if f not in obj]
        if missing:
            raise ValueError(f"load_trace: missing field 'meta.{missing[0]}'")
        values = {f: obj[f] for f in fields}
        for key, kind in _META_KINDS.items():
            self.get(obj, key, kind, "meta")
        if values["values"] not in ("stats", "full", None) or values["mode"] not in ("train", "eval", None):
            raise ValueError("load_trace: meta.values or meta.mode has a value layerlens does not write")
        values["input_names"] = tuple(str(n) for n in self.get(obj, "input_names", list, "meta"))
        return TraceMeta(**values)

    def record(self, obj: Any, where: str) -> LayerRecord:
        g = self._getter(obj, where)
        parent = obj.get("parent") if isinstance(obj, dict) else None
        return LayerRecord(
            name=g("name", str),
            type_name=g("type_name", str),
            depth=g("depth", int),
            call_index=g("call_index", int),
            inputs=tuple(self.tensor(t, f"{where}.inputs[{i}]") for i, t in enumerate(g("inputs", list))),
            outputs=tuple(self.tensor(t, f"{where}.outputs[{i}]") for i, t in enumerate(g("outputs", list))),
            num_params=g("num_params", int),
            trainable_params=g("trainable_params", int),
            details=_decode(g("details", dict)),
            checks=[self.check(c, f"{where}.checks[{i}]") for i, c in enumerate(g("checks", list))],
            training=g("training", bool),
            registered=g("registered", bool),
            type_path=tuple(str(p) for p in g("type_path", list)),
            other_inputs=tuple((str(a), str(b)) for a, b in g("other_inputs", list)),
            other_outputs=tuple((str(a), str(b)) for a, b in g("other_outputs", list)),
            error=obj.get("error") if isinstance(obj.get("error"), str) else None,
            parent=parent if isinstance(parent, int) else None,
            family=_optional_str(obj, "family"),
            not_checked=_optional_str(obj, "not_checked"),
            flops=_optional_count(obj, "flops"),
        )

    def op(self, obj: Any, where: str) -> OpRecord:
        g = self._getter(obj, where)
        parent = obj.get("parent")
        return OpRecord(
            index=g("index", int),
            name=g("name", str),
            label=g("label", str),
            parent=parent if isinstance(parent, int) else None,
            inputs=tuple(self.tensor(t, f"{where}.inputs[{i}]") for i, t in enumerate(g("inputs", list))),
            outputs=tuple(self.tensor(t, f"{where}.outputs[{i}]") for i, t in enumerate(g("outputs", list))),
        )

    def edge(self, obj: Any, where: str) -> Edge:
        if not (isinstance(obj, list) and len(obj) == 4 and isinstance(obj[2], list)):
            raise ValueError(f"load_trace: {where} should be [src, dst, shape, dtype]")
        try:
            src, dst = NodeRef.parse(str(obj[0])), NodeRef.parse(str(obj[1]))
        except ValueError as exc:
            raise ValueError(f"load_trace: {where}: {exc}") from None
        return Edge(src, dst, tuple(int(d) for d in obj[2]), str(obj[3]))

    def tensor(self, obj: Any, where: str) -> TensorInfo:
        g = self._getter(obj, where)
        stats = obj.get("stats") if isinstance(obj, dict) else None
        key = obj.get("value") if isinstance(obj, dict) else None
        return TensorInfo(
            path=g("path", str),
            shape=tuple(int(d) for d in g("shape", list)),
            dtype=g("dtype", str),
            device=g("device", str),
            requires_grad=g("requires_grad", bool),
            stats=self.stats(stats, f"{where}.stats") if stats is not None else None,
            value=self.arrays.get(key) if isinstance(key, str) else None,
        )

    def stats(self, obj: Any, where: str) -> TensorStats:
        num = (int, float, dict)
        g = self._getter(obj, where)
        fields = TensorStats.__dataclass_fields__
        values = {f: _decode(g(f, num)) for f in fields}
        for f in ("nan_count", "inf_count"):
            values[f] = int(values[f])
        return TensorStats(**values)

    def check(self, obj: Any, where: str) -> Check:
        g = self._getter(obj, where)
        return Check(
            g("name", str),
            g("ok", bool),
            _decode(obj.get("expected")),
            _decode(obj.get("actual")),
            g("message", str),
        )

    def _getter(self, obj: Any, where: str) -> Callable[[str, Any], Any]:
        if not isinstance(obj, dict):
            raise ValueError(f"load_trace: {where} should be an object, got {type(obj).__name__}")
        return lambda key, kind: self.get(obj, key, kind, where)


_META_KINDS: dict[str, Any] = {
    "model_type": str, "total_params": int, "trainable_params": int, "param_bytes": int, "buffer_bytes": int,
    "grad": bool, "torch_version": str, "layerlens_version": str,
}  # fmt: skip


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$float"}:
            return decode_float(value)
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _optional_count(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _kind_name(kind: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", bool: "true/false"}
    if isinstance(kind, tuple):
        return "a number"
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _npz_path(path: Path) -> Path:
    """The values file of a trace file: `run.npz` for `run.json`, else the whole
    name plus `.values.npz` (`run.trace.values.npz`, `x.npz.values.npz`), so two
    trace files never share one and a save never writes over its own document."""
    if path.suffix.lower() == ".json":
        return path.with_suffix(".npz")
    return path.with_name(path.name + ".values.npz")
