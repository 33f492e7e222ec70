"""The optimizers a watch follows: one, or several that train one model between
them (an encoder's and a decoder's, a sparse embedding's `SparseAdam` beside a
dense `Adam`, a GAN's two in one LightningModule). Their param groups read as
one optimizer's, so a parameter another optimizer trains is not "not in the
optimizer", and a sampled step's updates are measured once every one of them
has stepped."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch.utils.hooks import RemovableHandle


class ParamGroups(Protocol):
    """What the setup and update checks read of an optimizer."""

    @property
    def param_groups(self) -> list[dict[str, Any]]: ...


class Optimizers:
    """Weak references to the optimizers; called like the weakref of one optimizer
    (itself while they all exist, else None)."""

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self._refs = [weakref.ref(o) for o in optimizers]
        self._waiting: set[int] = set()  # ids of the optimizers that have not stepped since `updating`

    @staticmethod
    def of(optimizer: Any) -> Optimizers | None:
        """An optimizer, a list or tuple of them, or None; anything else is a TypeError."""
        if optimizer is None:
            return None
        found = [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else optimizer
        if (
            not isinstance(found, (list, tuple))
            or not found
            or not all(isinstance(o, torch.optim.Optimizer) for o in found)
        ):
            raise TypeError(
                "optimizer= must be a torch.optim.Optimizer or a list of them (the optimizers that train the "
                f"model), got {_describe(optimizer)}"
            )
        return Optimizers(list({id(o): o for o in found}.values()))  # one given twice is hooked once

    def __call__(self) -> Optimizers | None:
        return self if all(ref() is not None for ref in self._refs) else None

    @property
    def all(self) -> list[torch.optim.Optimizer]:
        return [o for ref in self._refs if (o := ref()) is not None]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for o in self.all for group in o.param_groups]

    def hook(self, start: Callable[..., Any], end: Callable[..., Any]) -> list[RemovableHandle]:
        """`start` before and `end` after each optimizer's step."""
        handles = []
        for o in self.all:
            handles += [o.register_step_pre_hook(start), o.register_step_post_hook(end)]
        return handles

    def updating(self) -> None:
        """A sampled step's updates begin: wait for every optimizer's step."""
        self._waiting = {id(o) for o in self.all}

    def stepped(self, optimizer: Any) -> bool:
        """`optimizer` has stepped (None: the caller marks the whole update done); whether all have."""
        if optimizer is None:
            self._waiting.clear()
        else:
            self._waiting.discard(id(optimizer))
        return not self._waiting

    def unstepped(self) -> set[int]:
        """Ids of the parameters whose optimizer has not stepped since `updating`: their
        change is not an update this step made (a discriminator's optimizer that skips it)."""
        return {id(p) for o in self.all if id(o) in self._waiting for g in o.param_groups for p in g["params"]}


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        inner = sorted({type(v).__name__ for v in value})
        return f"a {type(value).__name__} of {', '.join(inner) or 'nothing'}"
    return type(value).__name__
