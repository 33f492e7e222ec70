"""Normalise and validate what `trace` is given to run the model on.

`x` is a tensor or a tuple of positional inputs; `input_size` (one shape or a
list of shapes) with `dtypes` builds random inputs on the model's device from
a private generator, so the global RNG is untouched.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_map_only

from .layers.registry import REGISTRY

ShapeLike = Sequence[int]


def positional_inputs(
    x: Any,
    input_size: Any,
    dtypes: Any,
    model: nn.Module,
    seed: int,
    device: torch.device | None = None,
    keywords: Collection[str] = (),
) -> tuple[Any, ...]:
    """The positional arguments for `model(*args)` (random ones on `device`, or the
    model's); none where the keyword inputs `keywords` are all forward needs."""
    if x is not None and input_size is not None:
        raise TypeError("trace() takes inputs x or input_size=..., not both")
    if x is None and input_size is None:
        missing = _missing_inputs(model, keywords)
        if not missing:
            return ()
        given = f" (kwargs= gives {', '.join(keywords)}; forward also needs {', '.join(missing)})" if keywords else ""
        raise TypeError(
            "trace() needs inputs: pass x (a tensor, or a tuple of positional inputs) "
            f"or input_size=(...) with dtypes=[...]{given}"
        )
    if x is None:
        return random_inputs(input_size, dtypes, model, seed, device)
    if dtypes is not None:
        raise TypeError("dtypes=... goes with input_size=...; x already has its dtypes")
    return x if type(x) is tuple else (x,)  # a namedtuple (a PackedSequence) is one input


def foreign_input(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
    """A hint for a failed forward when an input is a numpy array (a forward may
    take one, so it is not refused up front; most want a tensor)."""
    for where, value in [
        *((f"input {i}", a) for i, a in enumerate(args)),
        *((f"kwargs[{k!r}]", v) for k, v in kwargs.items()),
    ]:
        found = _foreign(value, where)
        if found:
            return found
    return None


def _missing_inputs(model: nn.Module, keywords: Collection[str] = ()) -> list[str]:
    """The parameters of `model.forward` without a default that the keyword inputs
    `keywords` leave unset (`model(input_ids=..., attention_mask=...)` needs no more)."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return [] if keywords else ["its inputs"]  # nothing to check against: the keywords are taken as they are
    positional = inspect.Parameter.POSITIONAL_ONLY
    required = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and (p.kind is positional or (p.kind in required and p.name not in keywords))
    ]


def keyword_batch(model: nn.Module, x: Any) -> dict[str, Any] | None:
    """`x` as keyword inputs where it is a mapping whose keys all name parameters of
    `model.forward` (a tokenizer's or processor's output: `input_ids`, `attention_mask`),
    as torchinfo reads a dict of `input_data`; None otherwise (a forward taking a dict)."""
    if not isinstance(x, Mapping) or not x or not all(isinstance(k, str) for k in x):
        return None
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    named = {
        n for n, p in params.items() if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    return dict(x) if set(x) <= named else None


def _foreign(value: Any, where: str, depth: int = 0) -> str | None:
    if isinstance(value, np.ndarray):
        return f"{where} is a numpy.ndarray; convert it with torch.from_numpy(...) first"
    items: Any = ()
    if depth < 8 and isinstance(value, (list, tuple)):
        items = ((f"{where}[{i}]", item) for i, item in enumerate(value))
    elif depth < 8 and isinstance(value, Mapping):
        items = ((f"{where}[{k!r}]", item) for k, item in value.items())
    for inner, item in items:
        found = _foreign(item, inner, depth + 1)
        if found:
            return found
    return None


def random_inputs(
    input_size: Any, dtypes: Any, model: nn.Module, seed: int, device: torch.device | None = None
) -> tuple[torch.Tensor, ...]:
    """Random tensors of the given shapes on `device` (or the model's): normal
    floats, and integers that are valid indices for every Embedding in the model."""
    shapes = _shapes(input_size)
    kinds = _dtypes(dtypes, len(shapes))
    device = device if device is not None else model_device(model)
    gen = torch.Generator().manual_seed(seed)
    high = _index_bound(model)
    return tuple(_random(shape, dtype, gen, high).to(device) for shape, dtype in zip(shapes, kinds, strict=True))


def on_device(inputs: Any, device: torch.device) -> Any:
    """`inputs` with every tensor in them (in tuples, lists, dicts, named tuples)
    moved to `device`; the containers are new, the caller's are left as they are."""
    return tree_map_only(torch.Tensor, lambda t: t.to(device), inputs)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU when it has none)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _random(shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator, high: int) -> torch.Tensor:
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(shape, generator=gen).to(dtype)
    return torch.randint(0, high, shape, generator=gen, dtype=dtype)


def _index_bound(model: nn.Module) -> int:
    """The smallest `index_limit` any family states for a module of the model (2 if none does)."""
    limits = []
    for m in model.modules():
        limit = REGISTRY.coverage(type(m)).hook("index_limit")
        if limit is not None and (value := limit(m)) is not None:
            limits.append(int(value))
    return min(limits) if limits else 2


def _dtype(kind: Any) -> Any:
    """A torch dtype; the legacy tensor types (`torch.FloatTensor`, `torch.LongTensor`) and
    names (`"long"`, `"float16"`) as theirs."""
    if isinstance(kind, str):
        named = getattr(torch, kind.strip().removeprefix("torch."), None)
        return named if isinstance(named, torch.dtype) else kind
    if isinstance(kind, type):
        try:
            return torch.empty(0).type(kind).dtype  # type: ignore[call-overload]
        except (TypeError, RuntimeError, ValueError):
            return kind
    return kind


def _shapes(input_size: Any) -> list[tuple[int, ...]]:
    if isinstance(input_size, str) or (
        isinstance(input_size, Sequence) and any(isinstance(s, str) for s in input_size)
    ):
        raise TypeError(f"input_size must be a shape like (64, 6) or a list of shapes, got {input_size!r}")
    if isinstance(input_size, torch.Size) or (
        isinstance(input_size, Sequence) and all(isinstance(d, int) for d in input_size)
    ):
        shapes = [tuple(input_size)]
    elif isinstance(input_size, Sequence) and all(isinstance(s, Sequence) for s in input_size):
        shapes = [tuple(s) for s in input_size]
    else:
        raise TypeError(f"input_size must be a shape like (64, 6) or a list of shapes, got {input_size!r}")
    for s in shapes:
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in s):
            raise ValueError(f"input_size: every dimension must be an int >= 0, got {s!r}")
        if (n := math.prod(s)) > _MAX_ELEMENTS:
            raise ValueError(f"input_size: {s!r} would be {n:.3g} elements; at most 2**40 are made")
    return shapes


_MAX_ELEMENTS = 2**40  # random inputs beyond this could not be allocated (and the product may overflow torch)


def _dtypes(dtypes: Any, n: int) -> list[torch.dtype]:
    if dtypes is None:
        return [torch.float32] * n
    if isinstance(dtypes, (torch.dtype, type, str)):
        dtypes = [dtypes]
    kinds = [_dtype(d) for d in dtypes]
    if len(kinds) == 1 and n > 1:
        kinds = kinds * n
    if len(kinds) != n or not all(isinstance(d, torch.dtype) for d in kinds):
        raise ValueError(f"dtypes must be {n} torch dtype(s), one per input shape; got {dtypes!r}")
    return kinds


_NAMES: dict[Any, tuple[str, ...]] = {}


def positional_names(model: nn.Module) -> tuple[str, ...]:
    """Names of forward's positional parameters (`("x", "y")`), for diagram labels
    (cached per forward function: `inspect.signature` is slow)."""
    forward = getattr(model.forward, "__func__", model.forward)
    if forward not in _NAMES:
        try:
            params = inspect.signature(model.forward).parameters.values()
        except (TypeError, ValueError):
            return ()
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        _NAMES[forward] = tuple(p.name for p in params if p.kind in kinds)
    return _NAMES[forward]
