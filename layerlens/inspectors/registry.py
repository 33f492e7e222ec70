"""The inspector registry: what layerlens knows about each module type.

Three kinds of knowledge, each looked up along the module type's MRO so a
subclass inherits its base's entry unless it has its own:

- an *inspector* `(module, record) -> Checks` runs after the forward and fills
  `record.details` and `record.checks` (public: `layerlens.register`);
- a *probe* runs during the call, on the live tensors, and returns small
  device tensors that a check needs (e.g. how many Dropout outputs are
  neither 0 nor `x/(1-p)`); they reach the inspector as `record.measures`;
- an *expectation* `(module, args) -> str | None` says, when a call fails,
  what the layer expected of its inputs;
- a *reference* `(module, inputs, record) -> outputs` recomputes a call's
  outputs in numpy from its recorded inputs, for `layerlens.verify`
  (public: `layerlens.register_reference`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from ..records import Check, LayerRecord

Inspector = Callable[[nn.Module, LayerRecord], Iterable[Check] | None]
Expectation = Callable[[nn.Module, tuple[Any, ...]], str | None]
Reference = Callable[[nn.Module, tuple[Any, ...], LayerRecord], Any]
InspectorOverrides = Mapping[type, Inspector | None]
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


@dataclass(frozen=True)
class Probe:
    """Measurements taken on the live tensors of a call.

    `before(module, args)` runs before the forward (e.g. to copy an input the
    layer will overwrite in place) and its result is passed to
    `after(module, args, output, state)`, which returns named tensors or numbers.
    """

    after: Callable[[nn.Module, tuple[Any, ...], Any, Any], dict[str, Any]]
    before: Callable[[nn.Module, tuple[Any, ...]], Any] | None = None


_inspectors: dict[type, Inspector] = {}
_probes: dict[type, Probe] = {}
_expectations: dict[type, Expectation] = {}
_references: dict[type, Reference] = {}
_cache: dict[tuple[int, type], Any] = {}


def register(module_type: type | tuple[type, ...]) -> Callable[[F], F]:
    """Decorator: use the function as the inspector for `module_type` (and its
    subclasses), replacing any earlier one. The function receives
    `(module, record)`, may add to `record.details`, and returns or yields
    `Check`s, or nothing."""
    types = _module_types(module_type)

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"register({types[0].__name__}) must decorate a function, got {fn!r}")
        for t in types:
            _inspectors[t] = fn
        _cache.clear()
        return fn

    return decorate


def unregister(module_type: type) -> None:
    """Remove the inspector and reference registered exactly for `module_type`, if any."""
    _inspectors.pop(module_type, None)
    _references.pop(module_type, None)
    _cache.clear()


def probe(module_type: type | tuple[type, ...], before: Callable[..., Any] | None = None) -> Callable[[F], F]:
    """Decorator: register `fn` as the probe's `after` step for `module_type`."""
    types = _module_types(module_type)

    def decorate(fn: F) -> F:
        for t in types:
            _probes[t] = Probe(fn, before)
        _cache.clear()
        return fn

    return decorate


def expectation(module_type: type | tuple[type, ...]) -> Callable[[F], F]:
    """Decorator: register what `module_type` expects of its inputs, for errors."""
    types = _module_types(module_type)

    def decorate(fn: F) -> F:
        for t in types:
            _expectations[t] = fn
        _cache.clear()
        return fn

    return decorate


def register_reference(module_type: type | tuple[type, ...]) -> Callable[[F], F]:
    """Decorator: use the function as the numpy reference for `module_type` in
    `layerlens.verify`. It receives `(module, inputs, record)` — the call's
    positional inputs as numpy float64 arrays and its LayerRecord — and returns
    the expected output array, or a tuple of them in the order of `record.outputs`
    (None for an output not to compare)."""
    types = _module_types(module_type)

    def decorate(fn: F) -> F:
        for t in types:
            _references[t] = fn
        _cache.clear()
        return fn

    return decorate


def reference_for(cls: type) -> Reference | None:
    """The numpy reference for `cls`, if any."""
    return _lookup(3, cls, _references)


def inspector_for(cls: type, overrides: InspectorOverrides | None = None) -> Inspector | None:
    """The inspector for `cls`: per-call overrides first, then the registry."""
    if overrides:
        for base in cls.__mro__:
            if base in overrides:
                return overrides[base]
    return _lookup(0, cls, _inspectors)


def probe_for(cls: type) -> Probe | None:
    """The probe for `cls`, if any."""
    return _lookup(1, cls, _probes)


def expectation_for(cls: type) -> Expectation | None:
    """The expectation for `cls`, if any."""
    return _lookup(2, cls, _expectations)


def _lookup(kind: int, cls: type, table: Mapping[type, T]) -> T | None:
    key = (kind, cls)
    if key not in _cache:
        _cache[key] = next((table[b] for b in cls.__mro__ if b in table), None)
    found: T | None = _cache[key]
    return found


def _module_types(module_type: type | tuple[type, ...]) -> tuple[type, ...]:
    types = module_type if isinstance(module_type, tuple) else (module_type,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise TypeError(f"register() takes nn.Module subclasses, got {t!r}")
    return types
