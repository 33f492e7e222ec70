"""The floor under watch's cost: the hooks watch cannot do without, computing no numbers.

What watch promises (name the layer, measure each update, catch a NaN before the
bad update lands) needs, at the least, on a sampled step: a hook on every module
call of the model (to know the layer), a hook on each layer output's gradient
(to know the layer of a backward NaN), and a copy of the parameters before the
optimizer's step (to measure the update after it). On every step it needs the
root's and the optimizer's hooks and one finiteness check (the sentinel). This
installs exactly that, with every hook doing nothing beyond it, so that the
benchmark can show how much of watch's cost on a small model is the mechanism
itself, before any statistic.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

_module_hooks = nn.modules.module


class HookFloor:
    """watch's hook set with no numbers: `every` as in `layerlens.watch`."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, every: int) -> None:
        self.model, self.optimizer, self.every = model, optimizer, every
        self.step = 0
        self._names = {id(m): name for name, m in model.named_modules()}
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._handles: list[RemovableHandle] = []
        self._sampled: list[RemovableHandle] = []
        self._before: torch.Tensor | None = None
        self.update: torch.Tensor | None = None
        self.nonfinite = 0  # steps whose output the sentinel found not finite

    def attach(self) -> HookFloor:
        self._handles = [
            self.model.register_forward_pre_hook(self._forward_start),
            self.model.register_forward_hook(self._forward_end),
            self.optimizer.register_step_pre_hook(self._optimizer_start),
            self.optimizer.register_step_post_hook(self._optimizer_end),
        ]
        return self

    def detach(self) -> None:
        for h in self._handles + self._sampled:
            h.remove()
        self._handles, self._sampled = [], []

    def _forward_start(self, module: nn.Module, args: Any) -> None:
        if self.step % self.every == 0:
            self._sampled = [
                _module_hooks.register_module_forward_pre_hook(self._layer_start),
                _module_hooks.register_module_forward_hook(self._layer_end),
            ]

    def _forward_end(self, module: nn.Module, args: Any, output: Any) -> None:
        for h in self._sampled:
            h.remove()
        self._sampled = []
        if isinstance(output, torch.Tensor):  # the every-step sentinel: one sum, read once
            self.nonfinite += not math.isfinite(float(output.detach().sum()))

    def _layer_start(self, module: nn.Module, args: Any) -> None:
        self._names.get(id(module))

    def _layer_end(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._names.get(id(module)) is not None and isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(_nothing)  # type: ignore[no-untyped-call]

    def _optimizer_start(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.step % self.every == 0:
            with torch.no_grad():
                self._before = torch.cat([p.reshape(-1) for p in self._params])

    def _optimizer_end(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._before is not None:
            with torch.no_grad():  # the update itself, left unreduced: no numbers
                self.update = torch.cat([p.reshape(-1) for p in self._params]) - self._before
            self._before = None
        self.step += 1


def _nothing(grad: torch.Tensor) -> None:
    return None
