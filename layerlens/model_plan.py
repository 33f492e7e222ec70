"""Which modules a trace records, decided before the forward runs.

Every module in `model.named_modules()` is recorded, except inside a
TorchScript module (its submodules run inside TorchScript, not through
Python: the scripted module is one opaque call). Modules a model keeps in a
plain list, tuple, dict or set attribute (instead of an `nn.ModuleList` or
`nn.ModuleDict`) are recorded too, flagged as unregistered: their parameters
are invisible to `model.parameters()`, optimizers and `state_dict`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .model_index import ModelIndex
from .recorder import Recorder, Slot

# How deep plain containers are searched for modules (a list of lists of modules is found).
_CONTAINER_DEPTH = 2


def plan(index: ModelIndex) -> tuple[list[Slot], list[int]]:
    """The slots to record, and the positions of the unregistered ones."""
    slots: list[Slot] = []
    opaque: list[str] = []
    script_type = torch.jit.ScriptModule
    for name, m in index.named:
        if opaque and any(name.startswith(prefix) for prefix in opaque):
            continue
        script = isinstance(m, script_type)
        if script:
            opaque.append(f"{name}." if name else "")
        slots.append(Slot(m, name, name.count(".") + 1 if name else 0, script or not m._modules))
    known = {id(s.module) for s in slots}
    strangers = []
    for slot in list(slots):
        if _library_class(type(slot.module)):
            continue
        for found in _unregistered(slot.module, known):
            known.add(id(found))
            prefix = f"{slot.name}." if slot.name else ""
            kind = type(found).__name__
            same = sum(1 for s in slots if s.name.startswith(f"{prefix}<{kind}"))
            name = f"{prefix}<{kind}>" if not same else f"{prefix}<{kind}:{same}>"
            strangers.append(len(slots))
            slots.append(Slot(found, name, slot.depth + 1, not found._modules, registered=False))
    return slots, strangers


_LIBRARY: dict[type, bool] = {}


def _library_class(cls: type) -> bool:
    """A class of torch.nn itself (not a subclass of one): it keeps no modules in
    plain containers, so its attributes need no search."""
    found = _LIBRARY.get(cls)
    if found is None:
        found = _LIBRARY[cls] = cls.__module__.startswith("torch.nn.modules.")
    return found


def _unregistered(module: nn.Module, known: set[int]) -> list[nn.Module]:
    """Modules held in plain containers among `module`'s attributes."""
    found: list[nn.Module] = []
    for key, value in vars(module).items():
        if isinstance(value, _CONTAINERS) and not key.startswith("_"):
            _modules_in(value, known, _CONTAINER_DEPTH, found)
    return found


_CONTAINERS = (list, tuple, dict, set, frozenset)  # where modules may hide; the rest (ints, configs) at once


def _modules_in(value: Any, known: set[int], depth: int, found: list[nn.Module]) -> None:
    if isinstance(value, nn.Module):
        if id(value) not in known:
            found.append(value)
        return
    if depth == 0:
        return
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, _CONTAINERS):
        items = value
    else:
        return
    for item in items:
        _modules_in(item, known, depth - 1, found)


def strangers_called(strangers: list[int], recorder: Recorder) -> list[str]:
    """A warning for each unregistered module that was called."""
    called = set(recorder.mods)
    notes = []
    for i in strangers:
        if i not in called:
            continue
        slot = recorder.slots[i]
        parent = slot.name.rpartition(".")[0] if "." in slot.name else ""
        notes.append(
            f"{slot.name}: a {type(slot.module).__name__} was called inside {parent or 'the model'} but is not "
            "registered as a submodule (kept in a plain list or dict?): its parameters are invisible to "
            "model.parameters(), optimizers and state_dict"
        )
    return notes
