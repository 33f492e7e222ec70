"""What one trace records: tensor facts, checks, and one record per module call.

These are plain data classes with no reference to the model or to any live
tensor, so a `Trace` can be kept, compared, serialised and reloaded freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

from . import html_blocks

Shape = tuple[int, ...]


def same(a: Any, b: Any) -> bool:
    """Equality in which NaN equals NaN (a statistic that was NaN, saved and loaded
    back, is the same statistic), through tuples, lists and dicts."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@dataclass(frozen=True, slots=True, eq=False)
class TensorStats:
    """Summary statistics of one tensor, computed on its own device.

    `std` is the sample standard deviation (`torch.std`'s default). Integer
    and bool tensors get the same fields (a bool's mean is its fraction of
    True); NaN/Inf propagate into min/max/mean/std, and are counted.
    """

    min: float
    max: float
    mean: float
    std: float
    nan_count: int
    inf_count: int
    zero_fraction: float

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorStats):
            return NotImplemented
        return all(same(getattr(self, f), getattr(other, f)) for f in _STATS_FIELDS)

    def __hash__(self) -> int:
        return hash(tuple(v if v == v else "nan" for v in (getattr(self, f) for f in _STATS_FIELDS)))


@dataclass(slots=True)
class TensorInfo:
    """One tensor seen at a layer boundary: where it sat, its shape and values.

    `path` locates it in the call's arguments or result, e.g. `"0"` for the
    first positional input, `"1.0"` for `h` in an LSTM's `(out, (h, c))`,
    `"mask"` for a keyword argument.
    """

    path: str
    shape: Shape
    dtype: str
    device: str
    requires_grad: bool = False
    stats: TensorStats | None = None
    value: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def numel(self) -> int:
        """Number of elements."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    def describe(self) -> str:
        """Shape as `[64, 6]`, with the dtype appended when it is not float32."""
        text = "[" + ", ".join(str(d) for d in self.shape) + "]"
        return text if self.dtype == "float32" else f"{text} {self.dtype}"


_STATS_FIELDS = ("min", "max", "mean", "std", "nan_count", "inf_count", "zero_fraction")


@dataclass(frozen=True, slots=True, eq=False)
class Check:
    """The outcome of one consistency check on one layer call.

    `message` is one readable sentence, with the formula and its numbers.
    """

    name: str
    ok: bool
    expected: Any
    actual: Any
    message: str

    def __bool__(self) -> bool:
        return bool(self.ok)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Check):
            return NotImplemented
        return (self.name, self.ok, self.message) == (other.name, other.ok, other.message) and same(
            (self.expected, self.actual), (other.expected, other.actual)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.ok, self.message))


@dataclass(slots=True, eq=False)
class LayerRecord:
    """Everything recorded about one call of one module.

    Records never hold the module itself: `name` and `type_name` identify it.
    `type_path` lists the qualified class names of the module's type and its
    bases (below `nn.Module`), so type queries can match base classes.
    `parent` is the index in the trace of the call this one ran inside (None
    for the root); `depth` comes from the qualified name, as in the API.
    `family` names the layer family whose facts fill `details`; `not_checked`
    says why its checks were not applied (e.g. "forward overridden by
    timm.layers.norm_act.BatchNormAct2d"), so no rule judges a computation it
    does not describe.
    """

    name: str
    type_name: str
    depth: int
    call_index: int
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    num_params: int = 0
    trainable_params: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    training: bool = False
    registered: bool = True
    type_path: tuple[str, ...] = ()
    other_inputs: tuple[tuple[str, str], ...] = ()
    other_outputs: tuple[tuple[str, str], ...] = ()
    error: str | None = None
    parent: int | None = None
    family: str | None = None
    not_checked: str | None = None
    flops: int | None = None  # with its inner calls', by torch's formulas; None unless traced with flops=True
    measures: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerRecord):
            return NotImplemented
        return all(same(getattr(self, f), getattr(other, f)) for f in _RECORD_FIELDS)

    __hash__ = None  # type: ignore[assignment]

    @property
    def input_shapes(self) -> tuple[Shape, ...]:
        """Shapes of all tensor inputs, in flattened order."""
        return tuple(t.shape for t in self.inputs)

    @property
    def output_shapes(self) -> tuple[Shape, ...]:
        """Shapes of all tensor outputs, in flattened order."""
        return tuple(t.shape for t in self.outputs)

    @property
    def failures(self) -> list[Check]:
        """The checks of this call that did not hold."""
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        """True when the call completed and every check held."""
        return self.error is None and all(c.ok for c in self.checks)

    @property
    def label(self) -> str:
        """The name as shown to people: `(root)` for the root, `#k` for repeat calls."""
        return call_label(self.name, self.call_index)

    def __repr__(self) -> str:
        """One line: name, type, shapes, parameters and checks (the fields are attributes)."""
        ins = ", ".join(t.describe() for t in self.inputs) or "()"
        outs = ", ".join(t.describe() for t in self.outputs) or "()"
        facts = f"{self.num_params:,} params, {self._verdict()}"
        return f"<LayerRecord {self.label!r} {self.type_name}: {ins} -> {outs}, {facts}>"

    def _verdict(self) -> str:
        if self.error is not None:
            return f"raised {self.error.split(':', 1)[0]}"
        if not self.checks:
            return "no checks"
        failed = len(self.failures)
        return f"{len(self.checks) - failed}/{len(self.checks)} checks ✓" if not failed else f"{failed} checks ✗"

    def _repr_html_(self) -> str:
        """The record as a list of facts, for notebooks."""
        pairs = [
            ("inputs", ", ".join(t.describe() for t in self.inputs) or "none"),
            ("outputs", ", ".join(t.describe() for t in self.outputs) or "none"),
            ("params", f"{self.num_params:,} ({self.trainable_params:,} trainable)"),
            ("mode", "train" if self.training else "eval"),
        ]
        if self.flops is not None:
            pairs.append(("FLOPs", f"{self.flops:,}"))
        pairs += [(str(k), _fact(v)) for k, v in self.details.items()]
        pairs += [(("✓ " if c.ok else "✗ ") + c.name, c.message) for c in self.checks]
        if self.error is not None:
            pairs.append(("error", self.error))
        if self.not_checked:
            pairs.append(("not checked", self.not_checked))
        return html_blocks.facts(f"{self.label} ({self.type_name})", pairs)

    def is_instance_of(self, cls: type | str) -> bool:
        """Whether the recorded module's type is `cls` or derives from it."""
        if isinstance(cls, str):
            return cls == self.type_name or any(p == cls or p.rsplit(".", 1)[-1] == cls for p in self.type_path)
        return f"{cls.__module__}.{cls.__qualname__}" in self.type_path


@dataclass
class OpRecord:
    """A functional operation run between modules (reshape, `+`, cat, indexing, ...),
    caught during the trace for the data-flow diagram. Not a LayerRecord.

    `parent` is the index of the module call whose own code ran it; `name` is
    the torch function's name, `label` what a diagram shows (`+`, `[:, -1]`).
    """

    index: int
    name: str
    label: str
    parent: int | None
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()


NodeKind = Literal["input", "call", "op", "output"]


@dataclass(frozen=True, slots=True)
class NodeRef:
    """One end of an edge: a model input or output (by its path), a module call
    (by record index) or an op (by op index). Written as `"call:3"` in JSON."""

    kind: NodeKind
    key: str

    @classmethod
    def call(cls, index: int) -> NodeRef:
        return cls("call", str(index))

    @classmethod
    def op(cls, index: int) -> NodeRef:
        return cls("op", str(index))

    @classmethod
    def parse(cls, text: str) -> NodeRef:
        """`"call:3"` -> NodeRef("call", "3"); a ValueError for anything else."""
        kind, sep, key = text.partition(":")
        if not sep or kind not in ("input", "call", "op", "output"):
            raise ValueError(f"not a node reference: {text!r} (expected input:, call:, op: or output:)")
        if kind in ("call", "op") and not (key.isdigit() and key.isascii()):
            raise ValueError(f"not a node reference: {text!r} ({kind} needs an index)")
        return cls(kind, key)  # type: ignore[arg-type]

    @property
    def index(self) -> int:
        """The record or op index of a call or op node."""
        return int(self.key)

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"


@dataclass(frozen=True)
class Edge:
    """A tensor passed from the node that produced it to one that used it."""

    src: NodeRef
    dst: NodeRef
    shape: Shape
    dtype: str


def _fact(value: Any) -> str:
    """A detail's value as short text (a long list or array is cut, with its size)."""
    text = str(value)
    return text if len(text) <= 200 else f"{text[:200]}... ({len(text):,} characters)"


def call_label(name: str, call_index: int) -> str:
    """A module call as shown to people: `(root)` for the root, `name #k` for its k-th repeat."""
    base = name or "(root)"
    return base if call_index == 0 else f"{base} #{call_index}"


_RECORD_FIELDS = tuple(f.name for f in fields(LayerRecord) if f.compare)
