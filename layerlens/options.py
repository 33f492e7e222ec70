"""`TraceOptions`: how to trace, in one frozen object shared by `trace`,
`verify`, `watch`, the command line and the documentation directives.

Every entry point takes the same keywords (`values=`, `mode=`, ...), or a
ready `options=TraceOptions(...)`, and validates them here, once.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import torch
from typing_extensions import TypedDict

from .layers.registry import Inspector
from .tensor_capture import DEFAULT_MAX_BYTES
from .trace_data import check_depth

Values = Literal["stats", "full"] | None
Mode = Literal["train", "eval"] | None


@dataclass(frozen=True)
class TraceOptions:
    """How one forward pass is traced.

    - `values`: `"stats"` (per-tensor statistics, the default), `"full"` (also
      CPU numpy copies of every tensor, up to `max_bytes`), or None (shapes and
      dtypes only, the fastest).
    - `mode`: run the model in `"train"` or `"eval"` mode for this call only.
    - `grad`: run with autograd on (the default is `torch.no_grad()`).
    - `input_size`, `dtypes`, `seed`: random inputs made from shapes, when no
      inputs are given (integers are valid indices for every Embedding).
    - `inspectors`: per-call inspector overrides by module type (None disables one).
    - `snapshot_params`: also undo in-place edits of parameters made by the forward.
    - `ops`: catch the functional operations between modules (for diagrams).
    - `flops`: count each call's FLOPs with torch's own formulas (slower forward).
    - `device`: move the inputs there first (the model is never moved).
    - `depth`: the depth the trace's table and diagram show by default.
    """

    values: Values = "stats"
    mode: Mode = None
    grad: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    input_size: Any = None
    dtypes: Any = None
    seed: int = 0
    inspectors: Mapping[type, Inspector | None] | None = field(default=None, compare=False)
    snapshot_params: bool = False
    ops: bool = True
    flops: bool = False
    device: Any = None
    depth: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        values: Any = self.values
        if values == "none":  # the command line's spelling of None
            set_(self, "values", None)
        if self.values not in ("stats", "full", None):
            raise ValueError(f"values must be 'stats', 'full' or None, got {self.values!r}")
        if self.mode not in (None, "train", "eval"):
            raise ValueError(f"mode must be 'train', 'eval' or None, got {self.mode!r}")
        for name in ("grad", "snapshot_params", "ops", "flops"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.max_bytes, int) or isinstance(self.max_bytes, bool) or self.max_bytes < 0:
            raise ValueError(f"max_bytes must be an int >= 0, got {self.max_bytes!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"seed must be an int, got {self.seed!r}")
        if self.device is not None:
            set_(self, "device", _device(self.device))
        check_depth(self.depth)
        if self.dtypes is not None and self.input_size is None:
            raise TypeError("dtypes=... goes with input_size=...; inputs given as tensors already have their dtypes")
        if self.inspectors is not None:
            if not isinstance(self.inspectors, Mapping):
                raise TypeError(f"inspectors must map module types to inspectors, got {type(self.inspectors).__name__}")
            set_(self, "inspectors", MappingProxyType(dict(self.inspectors)))
        set_(self, "input_size", _frozen(self.input_size))
        set_(self, "dtypes", _frozen(self.dtypes))

    @classmethod
    def merge(cls, options: TraceOptions | None = None, **keywords: Any) -> TraceOptions:
        """`options` (or the defaults) with `keywords` replacing fields; an unknown
        keyword is a TypeError that names the closest option."""
        names = _NAMES
        for key in keywords:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; options are {', '.join(names)}"
                raise TypeError(f"unknown option {key!r}{hint}")
        if options is not None and not isinstance(options, TraceOptions):
            raise TypeError(f"options must be a layerlens.TraceOptions, got {type(options).__name__}")
        if options is None:
            return cls(**keywords) if keywords else _DEFAULT
        return dataclasses.replace(options, **keywords) if keywords else options


class TraceKeywords(TypedDict, total=False):
    """The keyword form of `TraceOptions`, for type checkers (see its fields)."""

    values: Values | Literal["none"]
    mode: Mode
    grad: bool
    max_bytes: int
    input_size: Any
    dtypes: Any
    seed: int
    inspectors: Mapping[type, Inspector | None] | None
    snapshot_params: bool
    ops: bool
    flops: bool
    device: torch.device | str | None
    depth: int | None


def _device(value: Any) -> torch.device:
    """`value` as a torch.device, or a ValueError that says what a device looks like."""
    if isinstance(value, torch.device):
        return value
    try:
        return torch.device(value)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be a torch.device or a name like 'cpu' or 'cuda:0', got {value!r}") from exc


def _frozen(value: Any) -> Any:
    """Lists (of shapes, of dtypes) as tuples, so options stay immutable and comparable."""
    if isinstance(value, torch.Size) or not isinstance(value, Sequence) or isinstance(value, str):
        return value
    return tuple(_frozen(v) for v in value)


_DEFAULT = TraceOptions()
_NAMES = tuple(f.name for f in dataclasses.fields(TraceOptions))
