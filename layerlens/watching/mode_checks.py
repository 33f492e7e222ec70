"""Mode mistakes: a training-mode forward under `torch.no_grad()` (evaluation
without `model.eval()`), an optimizer step while the model is in eval mode
(`model.train()` not restored after validation), and functional dropout that
ignores the module's mode (`F.dropout(x, p)` without `training=self.training`)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own spelling)
from torch import nn
from torch.nn.modules import module as torch_module
from torch.overrides import TorchFunctionMode

from ..layers.registry import REGISTRY
from .setup_checks import listed

# functional dropouts: (function, index of the probability, index of the training flag, its default)
_DROPOUTS: dict[Any, tuple[int, int, bool]] = {
    F.dropout: (1, 2, True),
    F.dropout1d: (1, 2, True),
    F.dropout2d: (1, 2, True),
    F.dropout3d: (1, 2, True),
    F.alpha_dropout: (1, 2, False),
    F.feature_alpha_dropout: (1, 2, False),
    torch.dropout: (1, 2, True),
    torch.alpha_dropout: (1, 2, True),
    torch.feature_dropout: (1, 2, True),
    torch.feature_alpha_dropout: (1, 2, True),
}


def mode_dependent(model: nn.Module) -> list[str]:
    """Names of the layers that compute differently in train and eval mode, as their
    families say (`LayerFamily.modal`: dropout with p > 0, batch norm; a plugin's own)."""
    found = []
    for name, m in model.named_modules():
        modal = REGISTRY.coverage(type(m)).hook("modal")
        if modal is not None and modal(m):
            found.append(name)
    return found


def eval_forgotten_message(layers: list[str]) -> str:
    return (
        "a forward under torch.no_grad() with the model in training mode, so it was not counted as a training "
        f"step: {listed(layers)} compute as in training (dropout drops, batch norm updates its running statistics) "
        "during what looks like evaluation; call model.eval() before evaluating (and model.train() after)"
    )


def train_forgotten_message(layers: list[str]) -> str:
    return (
        "optimizer.step() while the model is in eval mode: was model.train() not called after evaluation? "
        f"{listed(layers)} train in eval mode (no dropout, frozen batch norm statistics), and watch sees no "
        "training steps"
    )


class EvalModeSpy(TorchFunctionMode):
    """Active for one eval-mode forward: notes functional dropout that still drops,
    with the module whose code called it."""

    def __init__(self, names: dict[int, str]) -> None:
        super().__init__()
        self.names = names
        self.stack: list[nn.Module] = []
        self.found: dict[str, tuple[str, float]] = {}  # layer -> (type name, p)
        self._hooks: list[Any] = []

    def start(self) -> None:
        self._hooks = [
            torch_module.register_module_forward_pre_hook(lambda m, a: self.stack.append(m)),
            torch_module.register_module_forward_hook(lambda m, a, o: self._pop(m), always_call=True),
        ]
        self.__enter__()  # type: ignore[no-untyped-call]

    def stop(self) -> None:
        self.__exit__(None, None, None)  # type: ignore[no-untyped-call]
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _pop(self, module: nn.Module) -> None:
        if self.stack and self.stack[-1] is module:
            self.stack.pop()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        spec = _DROPOUTS.get(func)
        if spec is not None and self.stack:
            p_at, train_at, default = spec
            p = kwargs.get("p", args[p_at] if len(args) > p_at else 0.5)
            training = kwargs.get("training", kwargs.get("train", args[train_at] if len(args) > train_at else default))
            module = self.stack[-1]
            name = self.names.get(id(module))
            if training and float(p) > 0 and name is not None:
                self.found.setdefault(name, (type(module).__name__, float(p)))
        return func(*args, **kwargs)


def functional_dropout_message(p: float) -> str:
    return (
        f"calls dropout (p={p:g}) with training=True while the module is in eval mode: F.dropout defaults to "
        "training=True, so evaluation drops activations too; pass training=self.training (or use the module form)"
    )
