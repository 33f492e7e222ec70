"""Make a trace invisible: snapshot what a forward pass can change, restore it after.

Covered: every submodule's own `training` flag; every module's parameter,
buffer and submodule tables (reassignment, additions and removals undone);
the values of every buffer (BatchNorm running statistics included: kernels
update them without bumping the version counter, so every buffer is copied);
parameters edited in place (detected by the version counter, undone with
`snapshot_params=True`); and the torch (CPU and CUDA), Python and NumPy
random states, each put back only when the trace moved it.

Each of these is restored on its own: one that cannot be put back (a buffer
replaced by an inference tensor, a buffer resized) does not stop the others,
and is reported by name.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class Restored:
    """What `StateGuard.restore` could not make exactly as before."""

    edited_params: list[str] = field(default_factory=list)  # edited in place, not snapshotted
    problems: list[str] = field(default_factory=list)  # "name: what went wrong"


class StateGuard:
    """Snapshot on construction; `restore()` puts everything back."""

    def __init__(self, named: list[tuple[str, nn.Module]], snapshot_params: bool = False) -> None:
        # one walk: per module its flag and its three tables as they are (items of the non-empty ones)
        self._modules: list[tuple[str, nn.Module, bool, tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]] = []
        params: list[tuple[str, str, torch.Tensor]] = []
        buffers: list[tuple[str, str, torch.Tensor]] = []
        script = torch.jit.ScriptModule
        for name, m in named:
            if isinstance(m, script):  # tables live in TorchScript wrappers: values only
                self._modules.append((name, m, m.training, _SKIP, _SKIP, _SKIP))
                params += [(name, k, p) for k, p in m.named_parameters(recurse=False)]
                buffers += [(name, k, b) for k, b in m.named_buffers(recurse=False)]
                continue
            ps, bs, ms = m._parameters, m._buffers, m._modules
            p_items = tuple(ps.items()) if ps else ()
            b_items = tuple(bs.items()) if bs else ()
            self._modules.append((name, m, m.training, p_items, b_items, tuple(ms.items()) if ms else ()))
            params += [(name, k, p) for k, p in p_items if p is not None]
            buffers += [(name, k, b) for k, b in b_items if b is not None]
        self._params = [(name, k, p, _version(p)) for name, k, p in params]
        tensors = buffers + params if snapshot_params else buffers
        self._copies = [(name, k, t, t.detach().clone()) for name, k, t in tensors]
        self._rng = _rng_state()

    def restore(self) -> Restored:
        """Undo every change the forward made, each part on its own."""
        done = Restored()
        for name, m, flag, *items in self._modules:
            if m.training is not flag:
                _attempt(done, name, "its train/eval flag", _set_flag, m, flag)
            if items[0] is _SKIP:
                continue
            tables: tuple[dict[str, Any], ...] = (m._parameters, m._buffers, m._modules)
            for kind, table, before in zip(_KINDS, tables, items, strict=True):
                if len(table) != len(before) or any(table.get(k, table) is not v for k, v in before):
                    _attempt(done, name, f"its {kind} table", _put_table, table, before)
        for name, k, t, copy in self._copies:
            _attempt(done, _join(name, k), "its values", _put_values, t, copy)
        copied = {id(t) for *_, t, _ in self._copies}
        done.edited_params = [_join(n, k) for n, k, p, v in self._params if id(p) not in copied and _version(p) != v]
        _attempt(done, "", "the random number generators", _set_rng_state, self._rng)
        return done


_SKIP: tuple[Any, ...] = ("<torchscript>",)  # tables not snapshotted (TorchScript)
_KINDS = ("parameter", "buffer", "submodule")


def _attempt(done: Restored, name: str, what: str, step: Callable[..., Any], *args: Any) -> None:
    """One restore step; a failure is noted by name and does not stop the others."""
    try:
        step(*args)
    except Exception as exc:
        done.problems.append(f"{name or '(root)'}: {what} could not be restored ({type(exc).__name__}: {exc})")


def _set_flag(m: nn.Module, flag: bool) -> None:
    m.training = flag


def _put_table(table: dict[str, Any], items: tuple[tuple[str, Any], ...]) -> None:
    """Entries reassigned, added or removed by the forward: the table as it was."""
    table.clear()
    table.update(items)


def _put_values(t: torch.Tensor, copy: torch.Tensor) -> None:
    """Copy the snapshot back into the tensor object itself (a buffer resized in
    place gets its shape back); inference tensors only change in inference mode."""
    with torch.inference_mode() if t.is_inference() else torch.no_grad():
        if t.shape != copy.shape:
            t.resize_(copy.shape)
        t.copy_(copy)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _version(obj: Any) -> int:
    try:
        return int(obj._version)
    except (AttributeError, RuntimeError):  # inference tensors have no version counter
        return -1


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    # numpy loads its random module lazily: if nothing has, there is no state to keep
    # (one first made during the forward is freshly seeded anyway)
    if "numpy.random" in sys.modules:
        state["numpy"] = np.random.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    """Put back each stream the trace moved (and only those: a stream no random
    draw of the forward touched is left alone, so others' draws from it stand)."""
    if not torch.equal(torch.get_rng_state(), state["torch"]):
        torch.set_rng_state(state["torch"])
    if random.getstate() != state["python"]:
        random.setstate(state["python"])
    if "numpy" in state and not _same_numpy_state(np.random.get_state(), state["numpy"]):
        np.random.set_state(state["numpy"])
    if "cuda" in state:  # absent when CUDA was not initialised before the trace
        now = torch.cuda.get_rng_state_all()
        for device, (current, saved) in enumerate(zip(now, state["cuda"], strict=False)):
            if not torch.equal(current, saved):
                torch.cuda.set_rng_state(saved, device)


def _same_numpy_state(a: Any, b: Any) -> bool:
    return bool(a[0] == b[0] and np.array_equal(a[1], b[1]) and tuple(a[2:]) == tuple(b[2:]))
