"""Make a trace invisible: snapshot what a forward pass can change, restore it after.

Covered: every submodule's own `training` flag, every buffer (BatchNorm
running statistics included; in-place updates and reassignment both undone),
parameters (reassignment undone; in-place edits detected by the version
counter, and undone when `snapshot_params=True`), the CPU/CUDA/Python/NumPy
random states, and the multi-head-attention fast-path switch that the trace
turns off.

Buffers are always copied back: kernels such as batch norm update running
statistics without bumping the version counter, so it cannot tell.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn


class _Slot:
    """One entry of a module's `_buffers` or `_parameters` as it was before."""

    __slots__ = ("copy", "name", "obj", "table", "version")

    def __init__(self, table: dict[str, Any], name: str, obj: Any, keep_copy: bool) -> None:
        self.table = table
        self.name = name
        self.obj = obj
        self.version = _version(obj)
        self.copy = obj.detach().clone() if keep_copy and isinstance(obj, torch.Tensor) else None


class StateGuard:
    """Snapshot on construction; `restore()` puts everything back and returns
    the names of parameters that were edited in place and could not be restored."""

    def __init__(self, model: nn.Module, snapshot_params: bool = False) -> None:
        named = list(model.named_modules(remove_duplicate=True))
        self._flags = [(m, m.training) for _, m in named]
        self._slots: list[tuple[str, _Slot]] = []
        self._tables: list[tuple[dict[str, Any], frozenset[str]]] = []
        for prefix, m in named:
            for table, keep in ((m._buffers, True), (m._parameters, snapshot_params)):
                self._tables.append((table, frozenset(table)))
                for name, obj in table.items():
                    if obj is not None:
                        self._slots.append((_join(prefix, name), _Slot(table, name, obj, keep)))
        self._rng = _rng_state()
        self._fastpath = _get_fastpath()

    def restore(self) -> list[str]:
        """Undo every change the forward made; returns params edited beyond repair."""
        for m, flag in self._flags:
            if m.training != flag:
                m.training = flag
        for table, names in self._tables:
            for extra in [k for k in table if k not in names]:
                del table[extra]
        unrestorable = []
        with torch.no_grad():
            for qualname, slot in self._slots:
                slot.table[slot.name] = slot.obj
                if slot.copy is not None:
                    slot.obj.copy_(slot.copy)
                elif _version(slot.obj) != slot.version:
                    unrestorable.append(qualname)
        _set_rng_state(self._rng)
        _set_fastpath(self._fastpath)
        return unrestorable


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _version(obj: Any) -> int:
    try:
        return int(obj._version)
    except (AttributeError, RuntimeError):
        return -1


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state:  # absent when CUDA was not initialised before the trace
        torch.cuda.set_rng_state_all(state["cuda"])


def _get_fastpath() -> bool:
    mha = getattr(torch.backends, "mha", None)
    return bool(mha.get_fastpath_enabled()) if mha is not None else False


def _set_fastpath(value: bool) -> None:
    mha = getattr(torch.backends, "mha", None)
    if mha is not None:
        mha.set_fastpath_enabled(value)


def disable_fused_paths() -> None:
    """Make Transformer layers and MultiheadAttention run their unfused Python
    path, so their submodules are called (and recorded). Undone by `restore`."""
    _set_fastpath(False)
