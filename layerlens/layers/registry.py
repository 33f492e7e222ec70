"""The layer registry: what layerlens knows about each family of layers.

A `LayerFamily` is everything about one kind of layer in one object: the
types it covers, the facts and checks its inspector adds to a record, the
probe that measures live tensors during the call, what the layer expected
when a call fails, its numpy reference for `verify`, and its health measures
for `watch`. layerlens's own families (`layerlens.layers.conv`, ...) are
written exactly as a third party writes one, and installed packages announce
theirs through the `layerlens.layers` entry-point group (loaded on first use).

A family judges a module only when the module's computation is the family's:
a subclass that overrides `forward` keeps the family's facts but none of its
checks, probes, references or expectations (unless `covers_overrides=True`);
it is "not checked", with the reason, never failed.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
from torch import nn

from ..errors import LayerlensWarning
from ..records import Check

# Hooks take the module first; typed loosely so a hook may name its own module class.
Inspector = Callable[..., Iterable[Check] | None]  # (module, record)
Expectation = Callable[..., str | None]  # (module, args)
Reference = Callable[..., Any]  # (module, inputs, record)
Health = Callable[..., dict[str, Any]]  # (module, x, y)
ModeAlert = Callable[..., tuple[str, str] | None]  # (module, model_training) -> (kind, message)
InspectorOverrides = Mapping[type, Inspector | None]
F = TypeVar("F", bound=Callable[..., Any])

ENTRY_POINT_GROUP = "layerlens.layers"
# The built-in families, loaded by the same code path as a plugin's.
BUILTIN = (
    "generic", "shape", "linear", "activation", "conv", "pool", "norm", "recurrent", "embedding",
    "dropout", "attention", "loss", "timm_layers", "hf_layers", "torchvision_layers",
)  # fmt: skip


@dataclass(frozen=True)
class Probe:
    """Measurements on the live tensors of a call, for checks that need values.

    `before(module, args, kwargs)` runs before the forward (e.g. to copy an
    input the layer overwrites in place); its result is passed to
    `after(module, args, kwargs, output, state)`, which returns named numbers
    or small device tensors. They reach the inspector as `record.measures`,
    moved to the host in one go. Module calls a probe makes are not recorded.
    """

    after: Callable[..., dict[str, Any]]  # (module, args, kwargs, output, state)
    before: Callable[..., Any] | None = None  # (module, args, kwargs)


@dataclass(frozen=True)
class LayerFamily:
    """What layerlens knows about one family of layers. Every hook is optional.

    - `types`: the module classes the family covers (and their subclasses that
      keep their `forward`), or `"package.module:Class"` strings, resolved once
      that module has been imported (so a family for a library's layers costs
      nothing, and needs nothing installed, until the library is used).
    - `inspect(module, record)`: after the forward, adds facts to
      `record.details` and returns or yields `Check`s.
    - `probe`: measures live tensors during the call (see `Probe`).
    - `expect(module, args)`: when a call fails, what the layer expected of
      its inputs (e.g. `Linear(in_features=120) got last dim 126`), or None.
    - `reference(module, inputs, record)`: the call recomputed in numpy from
      its recorded inputs (float64 arrays): the expected output, a tuple in the
      order of `record.outputs` (None: not compared), or an `Expected`. Raises
      `Unverifiable` when the call cannot be recomputed.
    - `health(module, x, y)`: numbers `watch` keeps for this layer's output,
      by name: `dead` (fraction of units zero for the whole batch), `saturated`
      (fraction of outputs at the function's bounds), `dropped` (fraction of
      non-zero inputs zeroed), `p`; floats or 0-d device tensors.
    - `mode_alert(module, model_training)`: a mode mistake worth an alert, as
      `(kind, sentence)`, e.g. a Dropout left in training mode during evaluation.
    - `in_model(module, record, root)`: checks that need the whole model's
      call (`root`, the model's own record), e.g. a recurrent layer reading
      the batch axis as time when the model's inputs and outputs say otherwise.
    - `modal(module)`: whether this module computes differently in train and
      eval mode (a Dropout with p > 0, a BatchNorm with running statistics), so
      that a forgotten `model.eval()` or `model.train()` matters.
    - `during_trace()`: a context entered for every trace of a model holding
      such a layer (e.g. turn a fused fast path off so submodules are called).
    - `index_limit(module)`: the largest integer input the layer accepts + 1,
      for random inputs made from shapes (an Embedding's `num_embeddings`).
    - `units(module)`: the weight whose first dimension indexes the layer's
      output units (a Linear's, a convolution's), for `watch`'s rule on units
      a constant initialisation keeps identical; None where there is none.
    - `color`: the diagram's fill colour for the family.
    - `covers_overrides`: the rule holds for subclasses that override
      `forward` too (the generic family; families written for such classes).
    """

    name: str
    types: tuple[type | str, ...]
    inspect: Inspector | None = None
    probe: Probe | None = None
    expect: Expectation | None = None
    reference: Reference | None = None
    health: Health | None = None
    mode_alert: ModeAlert | None = None
    modal: Callable[..., bool] | None = None  # (module)
    in_model: Inspector | None = None  # (module, record, root) -> checks
    during_trace: Callable[[], AbstractContextManager[Any]] | None = None
    index_limit: Callable[..., int | None] | None = None  # (module)
    units: Callable[..., Any] | None = None  # (module) -> the weight whose rows are the output units
    color: str | None = None
    covers_overrides: bool = False


@dataclass(frozen=True)
class Expected:
    """A reference's answer, with what it was computed by: `outputs` as for a
    plain reference, `by` the numpy function's name (shown by verify as
    `reference.<by>`), `also` further (actual, expected) pairs to compare
    (e.g. a BatchNorm's updated running statistics), `scale` the size the
    float rounding of the layer's outputs is relative to where that exceeds
    the outputs' own (a normalisation of a group with no spread multiplies
    the input's rounding by 1/sqrt(eps)): tolerances are relative to it."""

    outputs: Any
    by: str | None = None
    also: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    scale: float = 0.0


class Unverifiable(Exception):
    """Raised by a reference when a call cannot be recomputed; the message says why."""


@dataclass(frozen=True)
class Coverage:
    """How a module type is understood: the nearest family (for its facts),
    whether that family's rules judge it, and if not, why. `generic` is the
    family registered for `nn.Module`, whose hooks stand in for those the
    nearest family leaves out."""

    family: LayerFamily | None
    judged: bool
    reason: str | None = None
    generic: LayerFamily | None = None

    def hook(self, name: str) -> Any:
        """The hook to use: the family's when it judges this type, else the generic family's."""
        found = getattr(self.family, name) if self.judged and self.family is not None else None
        return found if found is not None or self.generic is None else getattr(self.generic, name)

    def facts(self) -> Any:
        """The inspector whose `details` apply, judged or not (its checks only count when judged)."""
        found = self.family.inspect if self.family is not None else None
        return found if found is not None or self.generic is None else self.generic.inspect


class Registry:
    """Families by module type; the last one registered for a type wins, and
    unregistering it brings back the one before."""

    def __init__(self) -> None:
        self._stacks: dict[type, list[LayerFamily]] = {}
        self._pending: list[tuple[str, LayerFamily]] = []
        self._awaited: set[str] = set()  # the modules the pending names are in
        self._cache: dict[type, Coverage] = {}
        self._loaded = False

    def add(self, family: LayerFamily) -> None:
        """Register `family` for each of its types (strings once importable)."""
        if not isinstance(family, LayerFamily):
            raise TypeError(f"register() takes a LayerFamily or nn.Module subclasses, got {family!r}")
        for t in family.types:
            if isinstance(t, str):
                module, _ = _split(t)  # fails now on a malformed name
                self._pending.append((t, family))
                self._awaited.add(module)
            else:
                self._stacks.setdefault(_module_type(t), []).append(family)
        self._cache.clear()
        self.resolve_pending()

    def remove(self, module_type: type) -> None:
        """Drop the family registered last for exactly `module_type`, every hook of it."""
        stack = self._stacks.get(module_type)
        if stack:
            stack.pop()
            if not stack:
                del self._stacks[module_type]
        self._cache.clear()

    def resolve_pending(self) -> None:
        """Register string types whose module has been imported since (cheap: dict lookups)."""
        if not self._pending or not any(m in sys.modules for m in self._awaited):
            return
        still = []
        for name, family in self._pending:
            module_name, attr = _split(name)
            module = sys.modules.get(module_name)
            cls = getattr(module, attr, None) if module is not None else None
            if isinstance(cls, type) and issubclass(cls, nn.Module):
                self._stacks.setdefault(cls, []).append(family)
                self._cache.clear()
            elif module is None:
                still.append((name, family))
        self._pending = still
        self._awaited = {_split(name)[0] for name, _ in still}

    def coverage(self, cls: type) -> Coverage:
        """The family that understands `cls`, and whether it judges it."""
        found = self._cache.get(cls)
        if found is None:
            found = self._cache[cls] = self._coverage(cls)
        return found

    def _coverage(self, cls: type) -> Coverage:
        self.load()
        generic_stack = self._stacks.get(nn.Module)
        generic = generic_stack[-1] if generic_stack else None
        for base in cls.__mro__:
            stack = self._stacks.get(base)
            if not stack:
                continue
            family = stack[-1]
            if family.covers_overrides or getattr(cls, "forward", None) is getattr(base, "forward", None):
                return Coverage(family, True, None, generic if family is not generic else None)
            owner = next(c for c in cls.__mro__ if "forward" in c.__dict__)
            reason = f"forward overridden by {owner.__module__}.{owner.__qualname__}"
            return Coverage(family, False, reason, generic)
        return Coverage(None, False)

    def families(self) -> list[LayerFamily]:
        """Every registered family, once, in registration order."""
        self.load()
        seen: dict[int, LayerFamily] = {}
        for stack in self._stacks.values():
            for f in stack:
                seen.setdefault(id(f), f)
        for _, f in self._pending:
            seen.setdefault(id(f), f)
        return list(seen.values())

    def load(self) -> None:
        """Load the built-in families, then installed plugins (once)."""
        if self._loaded:
            return
        self._loaded = True
        for name in BUILTIN:
            self.add_from(importlib.import_module(f"{__package__}.{name}"), f"layerlens.layers.{name}")
        for ep in _entry_points():
            try:
                self.add_from(ep.load(), f"{ep.name} = {ep.value}")
            except Exception as exc:  # a broken plugin must not break tracing
                warnings.warn(
                    f"layerlens plugin {ep.name!r} ({ep.value}) could not be loaded and is ignored: "
                    f"{type(exc).__name__}: {exc}",
                    LayerlensWarning,
                    stacklevel=4,
                )

    def add_from(self, obj: Any, origin: str) -> None:
        """Register what a plugin entry point names: a family, families, or a
        module with a `FAMILIES` list."""
        if isinstance(obj, ModuleType):
            obj = getattr(obj, "FAMILIES", None)
            if obj is None:
                raise TypeError(f"{origin}: the module has no FAMILIES list")
        families = [obj] if isinstance(obj, LayerFamily) else list(obj)
        for f in families:
            if not isinstance(f, LayerFamily):
                raise TypeError(f"{origin}: expected LayerFamily objects, got {type(f).__name__}")
        for f in families:
            self.add(f)


def _entry_points() -> Iterator[Any]:
    from importlib.metadata import entry_points

    yield from entry_points(group=ENTRY_POINT_GROUP)


def _split(name: str) -> tuple[str, str]:
    module, sep, attr = name.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"a family's type names look like 'package.module:Class', got {name!r}")
    return module, attr


def _module_type(t: Any) -> type:
    if not (isinstance(t, type) and issubclass(t, nn.Module)):
        raise TypeError(f"register() takes nn.Module subclasses, got {t!r}")
    return t


REGISTRY = Registry()


def register(target: LayerFamily | type | tuple[type, ...]) -> Any:
    """Register a `LayerFamily`, or, as a decorator, an inspector for module types.

    `@register(MyLayer)` makes the function `(module, record)` the inspector of
    `MyLayer` and its subclasses that keep its `forward`: it may add to
    `record.details` and returns or yields `Check`s. For a type some family
    already judges, only the inspector is replaced; its other hooks stay.
    """
    if isinstance(target, LayerFamily):
        REGISTRY.add(target)
        return target
    return _deriving(target, "inspect", "register")


def register_reference(module_type: type | tuple[type, ...]) -> Callable[[F], F]:
    """Decorator: the function `(module, inputs, record)` becomes the numpy
    reference of `module_type` for `layerlens.verify` (shorthand for a family
    with a `reference`)."""
    return _deriving(module_type, "reference", "register_reference")


def unregister(module_type: type) -> None:
    """Remove the family registered last for exactly `module_type` (all its hooks)."""
    REGISTRY.remove(module_type)


def _deriving(module_type: type | tuple[type, ...], hook: str, caller: str) -> Callable[[F], F]:
    types = module_type if isinstance(module_type, tuple) else (module_type,)
    for t in types:
        _module_type(t)

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"{caller}({types[0].__name__}) must decorate a function, got {fn!r}")
        for t in types:
            REGISTRY.add(_derived(t, hook, fn))
        return fn

    return decorate


def _derived(t: type, hook: str, fn: Callable[..., Any]) -> LayerFamily:
    """A family for exactly `t`: the one judging it now with `hook` replaced, or a new one."""
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', fn)}"
    current = REGISTRY.coverage(t)
    base = LayerFamily(name, (t,))
    if current.judged and current.family is not None and not current.family.covers_overrides:
        base = dataclasses.replace(current.family, name=name, types=(t,))
    hooks: dict[str, Any] = {hook: fn}
    return dataclasses.replace(base, **hooks)


def judge_like(module_type: type, like: type) -> LayerFamily:
    """Judge `module_type` by the family that judges `like`: for a subclass whose
    own `forward` still computes what `like` computes (a re-implementation, a
    wrapper that adds logging). Undo with `unregister(module_type)`."""
    _module_type(module_type)
    family = REGISTRY.coverage(_module_type(like)).family
    if family is None or not REGISTRY.coverage(like).judged:
        raise ValueError(f"no family judges {like.__name__}, so there is nothing to judge {module_type.__name__} by")
    derived = dataclasses.replace(family, types=(module_type,))
    REGISTRY.add(derived)
    return derived


def coverage(cls: type) -> Coverage:
    """How layerlens understands module type `cls` (see `Coverage`)."""
    return REGISTRY.coverage(cls)


def families() -> list[LayerFamily]:
    """Every registered family (built-in, plugins, yours)."""
    return REGISTRY.families()
