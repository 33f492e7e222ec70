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

import operator
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
        # one walk: per module its flag and its three tables as (keys, values) (empty ones as ())
        self._modules: list[tuple[str, nn.Module, bool, Any, Any, Any]] = []
        params: list[tuple[str, str, torch.Tensor]] = []
        buffers: list[tuple[str, str, torch.Tensor]] = []
        script = torch.jit.ScriptModule
        for name, m in named:
            if isinstance(m, script):  # tables live in TorchScript wrappers: values only
                self._modules.append((name, m, m.training, None, None, None))
                params += [(name, k, p) for k, p in m.named_parameters(recurse=False)]
                buffers += [(name, k, b) for k, b in m.named_buffers(recurse=False)]
                continue
            ps, bs, ms = m._parameters, m._buffers, m._modules
            self._modules.append((name, m, m.training, ps and _table(ps), bs and _table(bs), ms and _table(ms)))
            if ps:
                params += [(name, k, p) for k, p in ps.items() if p is not None]
            if bs:
                buffers += [(name, k, b) for k, b in bs.items() if b is not None]
        self._params = params
        self._versions = _versions([p for *_, p in params])
        tensors = buffers + params if snapshot_params else buffers
        # an uninitialized (lazy) tensor has no values: the lazy model traced is a copy anyway
        lazy = (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer)
        kept = [e for e in tensors if not isinstance(e[2], lazy)]
        with torch.no_grad():  # one grad-mode switch for all the copies
            self._copies = [(name, k, t, t.clone()) for name, k, t in kept]
        self._rng = _rng_state()

    def restore(self) -> Restored:
        """Undo every change the forward made, each part on its own."""
        done = Restored()
        for name, m, flag, ps, bs, ms in self._modules:
            if m.training is not flag:
                _attempt(done, name, "its train/eval flag", _set_flag, m, flag)
            if ps is None:  # TorchScript
                continue
            p, b, c = m._parameters, m._buffers, m._modules  # unrolled: this runs once per module
            if (p or ps) and _changed(p, ps):
                _attempt(done, name, "its parameter table", _put_table, p, ps)
            if (b or bs) and _changed(b, bs):
                _attempt(done, name, "its buffer table", _put_table, b, bs)
            if (c or ms) and _changed(c, ms):
                _attempt(done, name, "its submodule table", _put_table, c, ms)
        _put_all_values(done, self._copies)
        now = _versions([p for *_, p in self._params])
        if now != self._versions:
            copied = {id(t) for *_, t, _ in self._copies}
            done.edited_params = [
                _join(n, k)
                for (n, k, p), v, w in zip(self._params, self._versions, now, strict=True)
                if id(p) not in copied and v != w
            ]
        _attempt(done, "", "the random number generators", _set_rng_state, self._rng)
        return done


def _table(table: dict[str, Any]) -> Any:
    """A table as it is: `()` when empty, else its keys and values."""
    return (tuple(table), tuple(table.values())) if table else ()


def _changed(table: dict[str, Any], was: Any) -> bool:
    """Whether entries were added, removed or reassigned since `_table` took `was`."""
    if not was:
        return bool(table)
    keys, values = was
    return len(table) != len(keys) or tuple(table) != keys or not all(map(operator.is_, table.values(), values))


def _versions(tensors: list[torch.Tensor]) -> list[int]:
    """Version counters (-1 for inference tensors, which have none)."""
    try:
        return [t._version for t in tensors]
    except RuntimeError:
        return [_version(t) for t in tensors]


def _attempt(done: Restored, name: str, what: str, step: Callable[..., Any], *args: Any) -> None:
    """One restore step; a failure is noted by name and does not stop the others."""
    try:
        step(*args)
    except Exception as exc:
        done.problems.append(f"{name or '(root)'}: {what} could not be restored ({type(exc).__name__}: {exc})")


def _set_flag(m: nn.Module, flag: bool) -> None:
    m.training = flag


def _put_table(table: dict[str, Any], was: Any) -> None:
    """Entries reassigned, added or removed by the forward: the table as it was."""
    table.clear()
    if was:
        table.update(zip(*was, strict=True))


def _put_all_values(done: Restored, copies: list[tuple[str, str, torch.Tensor, torch.Tensor]]) -> None:
    """Copy every snapshot back: in one `_foreach_copy_` where nothing is unusual,
    one by one (each failure noted by name) where that fails or a tensor was
    resized or is an inference tensor."""
    plain = [(t, c) for _, _, t, c in copies if t.shape == c.shape and not t.is_inference()]
    if len(plain) == len(copies) and copies and hasattr(torch, "_foreach_copy_"):
        try:
            with torch.no_grad():
                torch._foreach_copy_([t for t, _ in plain], [c for _, c in plain])
            return
        except Exception:  # mixed devices or dtypes it cannot take, ...: one by one below
            pass
    for name, k, t, copy in copies:
        _attempt(done, _join(name, k), "its values", _put_values, t, copy)


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
