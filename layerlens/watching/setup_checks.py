"""Mistakes visible before training runs: parameters the optimizer will never
update, and learnable tensors the model does not know it has. Checked when
`watch` attaches (and the optimizer's groups again on sampled steps, since
layers get replaced after an optimizer is built)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .optimizers import ParamGroups

Found = tuple[str, str, str, str, str]  # kind, layer, type name, parameter, message


def optimizer_gaps(model: nn.Module, optimizer: ParamGroups) -> Iterator[Found]:
    """Trainable parameters missing from the optimizer (a layer replaced after the
    optimizer was built), and frozen ones inside it (frozen by mistake)."""
    in_groups = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if not in_groups:
        return
    types = {name: type(m).__name__ for name, m in model.named_modules()}
    missing: dict[str, list[str]] = {}
    frozen: dict[str, list[str]] = {}
    for name, p in model.named_parameters():
        module = name.rpartition(".")[0]
        if p.requires_grad and id(p) not in in_groups:
            missing.setdefault(module, []).append(name)
        elif not p.requires_grad and id(p) in in_groups:
            frozen.setdefault(module, []).append(name)
    for module, names in missing.items():
        yield ("not_in_optimizer", module, types.get(module, ""), names[0],
               f"{listed(names)} {'is' if len(names) == 1 else 'are'} trainable but not in the optimizer's "
               "param groups: they never change (was the layer replaced after the optimizer was built? build "
               "the optimizer last, or add them with optimizer.add_param_group)")  # fmt: skip
    for module, names in frozen.items():
        has, are = ("has", "is") if len(names) == 1 else ("have", "are")
        message = (
            f"{listed(names)} {has} requires_grad=False but {are} in the optimizer: the layer is frozen, "
            "so it never trains (set requires_grad=True, or leave it out of the optimizer if freezing is meant)"
        )
        yield ("frozen", module, types.get(module, ""), names[0], message)


def unregistered_tensors(model: nn.Module) -> Iterator[Found]:
    """Tensors that require grad (or Parameters) kept as plain attributes, or in plain
    lists and dicts: not in `parameters()`, so no optimizer built from it trains them,
    and `.to()`, `state_dict()` and DDP miss them. Not those: a parameter registered
    elsewhere in the model (a tied weight kept by reference), and a tensor computed
    from parameters (it has a `grad_fn`: pruning's masked `weight`, the old
    `weight_norm`'s, recomputed from registered parameters before each forward)."""
    registered = {id(t) for t in (*model.parameters(), *model.buffers())}
    for name, m in model.named_modules():
        if isinstance(m, torch.jit.ScriptModule):  # TorchScript keeps its own attribute tables
            continue
        known = set(m._parameters) | set(m._buffers) | set(m._modules)
        for attr, value in vars(m).items():
            if attr.startswith("_") or attr in known:
                continue
            for where, t in _tensors_in(attr, value):
                if id(t) in registered or t.grad_fn is not None:
                    continue
                if isinstance(t, nn.Parameter) or t.requires_grad:
                    kind = "an nn.Parameter" if isinstance(t, nn.Parameter) else "a tensor with requires_grad=True"
                    fix = "nn.ParameterList/ParameterDict" if where != attr else "nn.Parameter(...)"
                    message = (f"{where} is {kind} kept as a plain attribute: it is not among the model's "
                               "parameters, so an optimizer built from model.parameters() never updates it "
                               f"(register it: {fix})")  # fmt: skip
                    yield ("unregistered_param", name, type(m).__name__, f"{name}.{where}".lstrip("."), message)


def _tensors_in(attr: str, value: Any) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield attr, value
    elif isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            if isinstance(v, torch.Tensor):
                yield f"{attr}[{k}]", v
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, torch.Tensor):
                yield f"{attr}[{k!r}]", v


def listed(names: list[str]) -> str:
    """The first three names (the root as `(root)`) and how many more."""
    shown = ", ".join(n or "(root)" for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
