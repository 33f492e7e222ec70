"""How watch holds on to the model it is given. As a rule, by the model's own
forward hooks. A TorchScript module takes no hooks of its own, so global module
hooks that answer to it alone (its submodules run inside TorchScript: it is one
layer to watch). A torch.compile'd model is watched through the module it wraps
(the names its user knows, not `_orig_mod.`), and its sampled forwards run
eagerly: dynamo would otherwise trace the sampled step's hooks into the compiled
code and recompile at every sample."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.utils.hooks import RemovableHandle


def is_compiled(model: nn.Module) -> bool:
    """A `torch.compile`d module (dynamo's `OptimizedModule` wrapper)."""
    return type(model).__name__ == "OptimizedModule" and isinstance(getattr(model, "_orig_mod", None), nn.Module)


def inner(model: nn.Module) -> nn.Module:
    """The module a compiled model wraps (itself otherwise): its names and parameters are watched."""
    while is_compiled(model):
        model = cast(nn.Module, model._orig_mod)
    return model


class RootHook:
    """A hook on the watched model that its copies do not inherit: a deepcopy (an EMA,
    `AveragedModel`) or a pickle (`torch.save(model)`) of the model gets `inert` in its
    place, and a call from any module but the model itself is passed over."""

    __slots__ = ("fn", "model")

    def __init__(self, fn: Callable[..., Any], model: nn.Module) -> None:
        self.fn = fn
        self.model = weakref.ref(model)

    def __call__(self, module: nn.Module, *args: Any) -> Any:
        return self.fn(module, *args) if module is self.model() else None

    def __deepcopy__(self, memo: dict[int, Any]) -> Callable[..., None]:
        return inert

    def __reduce__(self) -> tuple[Callable[[], Callable[..., None]], tuple[()]]:
        return _inert, ()  # unpickled as `inert`


def inert(*args: Any, **kwargs: Any) -> None:
    """What a copy of a watched model has in place of watch's hooks: nothing."""
    return None


def _inert() -> Callable[..., None]:
    return inert


def hook_root(model: nn.Module, start: Callable[..., Any], end: Callable[..., Any]) -> list[RemovableHandle]:
    """`start(module, args, kwargs)` before each call of `model` and `end(module, args,
    output)` after it, even when it raises."""
    if not isinstance(model, torch.jit.ScriptModule):
        before = model.register_forward_pre_hook(RootHook(start, model), with_kwargs=True)
        return [before, model.register_forward_hook(RootHook(end, model), always_call=True)]
    # global hooks, which answer to the model alone (a global pre-hook is given no kwargs)
    pre = RootHook(lambda module, args: start(module, args, {}), model)
    return [
        torch_module.register_module_forward_pre_hook(pre),
        torch_module.register_module_forward_hook(RootHook(end, model), always_call=True),
    ]


class Eager:
    """While entered, compiled code runs eagerly (`torch.compiler.set_stance`); the
    stance before is restored on exit. Does nothing where torch has no stances."""

    def __init__(self) -> None:
        self._stance: Any = None

    def enter(self) -> None:
        set_stance = getattr(torch.compiler, "set_stance", None)
        if self._stance is None and set_stance is not None:
            self._stance = set_stance("force_eager")  # sets it now; exiting restores the one before

    def exit(self) -> None:
        stance, self._stance = self._stance, None
        if stance is not None:
            stance.__exit__(None, None, None)
