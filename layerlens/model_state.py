"""Make a trace invisible: snapshot what a forward pass can change, restore it after.

Covered: every submodule's own `training` flag, every buffer (BatchNorm
running statistics included; in-place updates and reassignment both undone),
parameters (reassignment undone; in-place edits detected by the version
counter, and undone when `snapshot_params=True`) and the CPU/CUDA/Python/NumPy
random states.

Buffers are copied back (kernels such as batch norm update running statistics
without bumping the version counter, so it cannot tell), except those of
modules whose family says their forward leaves them untouched in the mode
they will run in (`LayerFamily.keeps_buffers`).
"""

from __future__ import annotations

import random
import sys
from typing import Any

import numpy as np
import torch
from torch import nn

from .layers.registry import REGISTRY


class StateGuard:
    """Snapshot on construction; `restore()` puts everything back and returns
    the names of parameters that were edited in place and could not be restored."""

    def __init__(
        self, named: list[tuple[str, nn.Module]], snapshot_params: bool = False, mode: str | None = None
    ) -> None:
        self._flags = [(m, m.training) for _, m in named]
        # each module's parameter and buffer tables as they were: undoes reassignment,
        # additions and removals; an empty table (most of them) is kept as ()
        tables = [m._parameters for _, m in named] + [m._buffers for _, m in named]
        self._tables: list[tuple[dict[str, Any], tuple[tuple[str, Any], ...]]] = [
            (t, tuple(t.items()) if t else ()) for t in tables
        ]
        self._params = _versions(
            [(prefix, k, p) for prefix, m in named for k, p in m._parameters.items() if p is not None]
        )
        buffers = [
            b
            for _, m in named
            if m._buffers and not _keeps_buffers(m, mode)
            for b in m._buffers.values()
            if b is not None
        ]
        if snapshot_params:
            buffers += [p for _, _, p, _ in self._params]
        self._copies = [(t, t.detach().clone()) for t in buffers]
        self._rng = _rng_state()

    def restore(self) -> list[str]:
        """Undo every change the forward made; returns params edited beyond repair."""
        for m, flag in self._flags:
            if m.training is not flag:
                m.training = flag
        for table, items in self._tables:
            if _changed(table, items):
                table.clear()
                table.update(items)
        with torch.no_grad():
            for t, copy in self._copies:
                t.copy_(copy)  # always: batch norm updates running stats without a version bump
        copied = {id(t) for t, _ in self._copies}
        now = _versions([(prefix, k, p) for prefix, k, p, _ in self._params])
        edited = [
            _join(prefix, k)
            for (prefix, k, p, version), (_, _, _, current) in zip(self._params, now, strict=True)
            if current != version and id(p) not in copied
        ]
        _set_rng_state(self._rng)
        return edited


def _changed(table: dict[str, Any], items: tuple[tuple[str, Any], ...]) -> bool:
    if len(table) != len(items):
        return True
    return bool(items) and any(table.get(k, table) is not v for k, v in items)


def _versions(params: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any, int]]:
    """Each parameter with its version counter (-1 for inference tensors, which have none)."""
    try:
        return [(prefix, k, p, p._version) for prefix, k, p in params]
    except (AttributeError, RuntimeError):
        return [(prefix, k, p, _version(p)) for prefix, k, p in params]


def _keeps_buffers(module: nn.Module, mode: str | None) -> bool:
    """Whether the module's family says its forward leaves its buffers untouched
    in the mode it will run in (a BatchNorm in eval mode only reads them)."""
    keeps = REGISTRY.coverage(type(module)).hook("keeps_buffers")
    training = module.training if mode is None else mode == "train"
    return keeps is not None and bool(keeps(module, training))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _version(obj: Any) -> int:
    try:
        return int(obj._version)
    except (AttributeError, RuntimeError):
        return -1


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    # numpy loads its random module lazily: if nothing has, there is no state to keep
    # (one first made during the forward is freshly seeded anyway), and 60 us are saved
    if "numpy.random" in sys.modules:
        state["numpy"] = np.random.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "cuda" in state:  # absent when CUDA was not initialised before the trace
        torch.cuda.set_rng_state_all(state["cuda"])
