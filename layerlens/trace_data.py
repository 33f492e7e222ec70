"""The data of one trace: its records, ops, edges and facts about the model,
with the queries users make of them. No rendering here: renderers (table,
DOT, JSON, HTML) read this data, and `layerlens.trace_object.Trace` adds the output
methods on top.

Nothing here refers to the model or to live tensors: a trace can be kept,
compared, saved to JSON and loaded back without the model.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import torch

from . import html_blocks
from .flop_count import flops_text
from .records import Check, Edge, LayerRecord, OpRecord


@dataclass(frozen=True)
class TraceMeta:
    """Facts about the traced model and how it was traced."""

    model_type: str
    total_params: int
    trainable_params: int
    param_bytes: int
    buffer_bytes: int
    values: str | None
    mode: str | None
    grad: bool
    torch_version: str
    layerlens_version: str
    input_names: tuple[str, ...] = ()  # forward's positional parameter names, for labels


@dataclass(frozen=True)
class Summary:
    """The totals of a trace, as numbers (`Trace.summary()`)."""

    total_params: int
    trainable_params: int
    non_trainable_params: int
    param_bytes: int
    buffer_bytes: int
    output_bytes: int
    layer_calls: int
    modules_called: int
    checks: int
    failures: int
    input_bytes: int = 0
    flops: int | None = None  # None unless traced with flops=True

    @property
    def forward_backward_bytes(self) -> int:
        """What a training step's forward and backward hold, estimated as torchinfo
        does: every leaf call's output and its gradient."""
        return 2 * self.output_bytes

    @property
    def estimated_total_bytes(self) -> int:
        """Inputs, forward/backward activations, parameters and buffers."""
        return self.input_bytes + self.forward_backward_bytes + self.param_bytes + self.buffer_bytes

    @property
    def mult_adds(self) -> int | None:
        """Multiply-adds, torchinfo's unit: half the FLOPs (torch's formulas count one as 2)."""
        return None if self.flops is None else self.flops // 2

    def facts(self) -> list[tuple[str, str]]:
        """The totals as (label, text) pairs, in torchinfo's order."""
        pairs = [
            ("Total params", f"{self.total_params:,}"),
            ("Trainable params", f"{self.trainable_params:,}"),
            ("Non-trainable params", f"{self.non_trainable_params:,}"),
        ]
        if self.flops is not None and self.mult_adds is not None:
            pairs += [("FLOPs", flops_text(self.flops)), ("Mult-adds", flops_text(self.mult_adds))]
        pairs += [
            ("Input size", size_text(self.input_bytes)),
            ("Forward/backward pass size", size_text(self.forward_backward_bytes)),
            ("Params size", size_text(self.param_bytes)),
            ("Buffers size", size_text(self.buffer_bytes)),
            ("Estimated total size", size_text(self.estimated_total_bytes)),
            ("Layer calls", f"{self.layer_calls:,} ({self.modules_called:,} modules)"),
            ("Checks", f"{self.checks - self.failures}/{self.checks} held"),
        ]
        return pairs

    def __str__(self) -> str:
        pairs = self.facts()
        width = max(len(k) for k, _ in pairs)
        return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in pairs)

    def _repr_html_(self) -> str:
        return html_blocks.facts("Summary", self.facts())


class TraceData:
    """A sequence of `LayerRecord`, one per module call, in call-start order."""

    depth: int | None = None  # the depth tables and diagrams show unless told (trace(depth=...))

    def __init__(
        self,
        records: Sequence[LayerRecord],
        meta: TraceMeta,
        warnings: Sequence[str] = (),
        error: str | None = None,
        ops: Sequence[OpRecord] | Callable[[], list[OpRecord]] = (),
        edges: Sequence[Edge] | Callable[[], list[Edge]] = (),
    ) -> None:
        """`ops` and `edges` may be functions that make them when they are first
        read (the data flow is recorded as plain tuples during the forward)."""
        self.records: list[LayerRecord] = list(records)
        self.meta = meta
        self.warnings: list[str] = list(warnings)
        self.error = error
        self._made: dict[str, list[Any]] = {}
        self._makers: dict[str, Callable[[], list[Any]]] = {}
        for key, given in (("ops", ops), ("edges", edges)):
            if callable(given):
                self._makers[key] = given
            else:
                self._made[key] = list(given)
        self._lock = threading.Lock()
        self._by_name: dict[str, list[LayerRecord]] | None = None

    @property
    def edges(self) -> list[Edge]:
        """The data flow: one `Edge` per tensor passed from one node to another."""
        return self._first_read("edges")

    @property
    def ops(self) -> list[OpRecord]:
        """The functional operations run between modules, in order."""
        return self._first_read("ops")

    def _first_read(self, key: str) -> list[Any]:
        """The list under `key`, made by its maker the first time it is read (once,
        whichever thread reads first)."""
        found = self._made.get(key)
        if found is None:
            with self._lock:
                found = self._made.get(key)
                if found is None:
                    found = self._made[key] = self._makers.pop(key)()
        return found

    def shown_depth(self, depth: int | None) -> int | None:
        """`depth`, or the trace's own default (`trace(..., depth=...)`) when None."""
        return self.depth if depth is None else depth

    def _names(self) -> dict[str, list[LayerRecord]]:
        if self._by_name is None:
            by_name: dict[str, list[LayerRecord]] = {}
            for r in self.records:
                by_name.setdefault(r.name, []).append(r)
            self._by_name = by_name
        return self._by_name

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and copied with its edges made and without its lock."""
        for key in list(self._makers):
            self._first_read(key)
        return {**self.__dict__, "_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- sequence and lookups -------------------------------------------------

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[LayerRecord]:
        return iter(self.records)

    @overload
    def __getitem__(self, key: int | str) -> LayerRecord: ...
    @overload
    def __getitem__(self, key: slice) -> list[LayerRecord]: ...

    def __getitem__(self, key: int | str | slice) -> LayerRecord | list[LayerRecord]:
        if isinstance(key, str):
            return self.calls(key)[0]
        return self.records[key]

    def calls(self, name: str) -> list[LayerRecord]:
        """Every call of the module with this qualified name, in order."""
        found = self._names().get(name)
        if not found:
            raise KeyError(self._unknown(name))
        return list(found)

    def of_type(self, cls: type | str) -> list[LayerRecord]:
        """Records of modules of type `cls` (subclasses included), or whose class
        (or a base class) has the name `cls`."""
        return [r for r in self.records if r.is_instance_of(cls)]

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._names()), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"no module named {name!r} was called in this trace{hint}"

    # -- checks ---------------------------------------------------------------

    @property
    def checks(self) -> list[Check]:
        """Every check of every call."""
        return [c for r in self.records for c in r.checks]

    @property
    def failures(self) -> list[Check]:
        """The checks that did not hold."""
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        """True when the forward completed and every check held."""
        return self.error is None and not self.failures

    # -- totals ---------------------------------------------------------------

    def summary(self) -> Summary:
        """Totals: unique parameters (tied weights once), calls, checks, bytes."""
        parents = {r.parent for r in self.records}
        leaves = [r for i, r in enumerate(self.records) if i not in parents]
        out_bytes = sum(output_bytes(r) for r in leaves)
        tops = [r for r in self.records if r.parent is None]
        counted = [r.flops for r in tops if r.flops is not None]
        m = self.meta
        return Summary(
            total_params=m.total_params,
            trainable_params=m.trainable_params,
            non_trainable_params=m.total_params - m.trainable_params,
            param_bytes=m.param_bytes,
            buffer_bytes=m.buffer_bytes,
            output_bytes=out_bytes,
            layer_calls=len(self.records),
            modules_called=len(self._names()),
            checks=len(self.checks),
            failures=len(self.failures),
            input_bytes=sum(t.numel * _itemsize(t.dtype) for r in tops for t in r.inputs),
            flops=sum(counted) if counted else None,
        )

    def __repr__(self) -> str:
        state = (
            "ok"
            if self.ok
            else (f"error: {self.error.splitlines()[0]}" if self.error else f"{len(self.failures)} failed checks")
        )
        return f"<Trace of {self.meta.model_type}: {len(self)} calls, {state}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TraceData):
            return NotImplemented
        mine = (self.records, self.meta, self.warnings, self.error, self.ops, self.edges)
        return mine == (other.records, other.meta, other.warnings, other.error, other.ops, other.edges)

    __hash__ = None  # type: ignore[assignment]


def check_depth(depth: object) -> None:
    """A ValueError unless `depth` is None or an int >= 0 (tables, diagrams, `trace(depth=...)`)."""
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise ValueError(f"depth must be an int >= 0 or None, got {depth!r}")


def output_bytes(r: LayerRecord) -> int:
    """The bytes of a call's output tensors."""
    return sum(t.numel * _itemsize(t.dtype) for t in r.outputs)


def size_text(n: int) -> str:
    """Bytes for people: 1,536 is "1.5 KiB"."""
    for size, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def _itemsize(dtype: str) -> int:
    kind: Any = getattr(torch, dtype, None)
    return int(kind.itemsize) if isinstance(kind, torch.dtype) else 0
