"""`layerlens.verify_optimizer`: real optimizer steps against the numpy
reference optimizers, one step at a time, on copies of the model and
optimizer (the originals are not touched)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import reference as ref

Batch = tuple[Any, Any]


@dataclass(frozen=True)
class StepResult:
    """One optimizer step: the largest gap between PyTorch's update and the reference's."""

    step: int
    max_abs: float
    worst_param: str
    ok: bool


@dataclass(frozen=True)
class OptimizerReport:
    """Per step, how the real update compared; the first divergence, if any."""

    optimizer: str
    steps: list[StepResult]
    rtol: float
    atol: float

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    @property
    def first_divergence(self) -> StepResult | None:
        return next((s for s in self.steps if not s.ok), None)

    def __str__(self) -> str:
        lines = [f"{self.optimizer}: {len(self.steps)} steps against the numpy reference (rtol {self.rtol:.0e})"]
        for s in self.steps:
            mark = "✓" if s.ok else "✗"
            lines.append(f"  {mark} step {s.step}: max |torch - reference| = {s.max_abs:.2e} ({s.worst_param})")
        bad = self.first_divergence
        lines.append(f"first divergence: step {bad.step}, {bad.worst_param}" if bad else "every step agrees")
        return "\n".join(lines)


def verify_optimizer(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    batches: Iterable[Batch],
    rtol: float | None = None,
    atol: float = 0.0,
) -> OptimizerReport:
    """Run `optimizer` on `(x, y)` batches (loss = loss_fn(model(x), y)) and compare
    every parameter after every step with the numpy reference optimizer fed the
    same parameters and gradients. Works on copies: `model` and `optimizer` are
    left as they were. Supports SGD, Adam and AdamW."""
    model_copy = copy.deepcopy(model)
    opt = _clone_optimizer(optimizer, model, model_copy)
    names = {id(p): n for n, p in model_copy.named_parameters()}
    references = [(_reference(opt, g), [names[id(p)] for p in g["params"]]) for g in opt.param_groups]
    _load_state(references, opt, names)
    dtype = next(model_copy.parameters()).dtype
    tol = rtol if rtol is not None else (1e-10 if dtype == torch.float64 else 1e-5)
    results = []
    for step, (x, y) in enumerate(batches, start=1):
        before = {n: _np(p) for n, p in model_copy.named_parameters()}
        opt.zero_grad()
        loss: Any = loss_fn(model_copy(x), y)
        loss.backward()
        grads = {n: _np(p.grad) for n, p in model_copy.named_parameters() if p.grad is not None}
        opt.step()
        after = {n: _np(p) for n, p in model_copy.named_parameters()}
        expected: dict[str, np.ndarray] = {}
        for reference, group_names in references:
            have = [n for n in group_names if n in grads]
            expected.update(reference.step({n: before[n] for n in have}, {n: grads[n] for n in have}))
        results.append(_step_result(step, after, expected, tol, atol))
    return OptimizerReport(type(optimizer).__name__, results, tol, atol)


def _step_result(step: int, after: dict[str, np.ndarray], expected: dict[str, np.ndarray], rtol: float,
                 atol: float) -> StepResult:  # fmt: skip
    worst, worst_name, ok = 0.0, "", True
    for n, e in expected.items():
        gap = float(np.max(np.abs(after[n] - e))) if e.size else 0.0
        ok = ok and gap <= atol + rtol * max(1.0, float(np.max(np.abs(e))) if e.size else 0.0)
        if gap >= worst:
            worst, worst_name = gap, n
    return StepResult(step, worst, worst_name, ok)


def _clone_optimizer(opt: torch.optim.Optimizer, model: nn.Module, clone: nn.Module) -> torch.optim.Optimizer:
    """The same optimizer, with the same state, over the copy's parameters."""
    twin = dict(zip((id(p) for p in model.parameters()), clone.parameters(), strict=True))
    settings = [copy.deepcopy({k: v for k, v in g.items() if k != "params"}) for g in opt.param_groups]
    params = [[twin[id(p)] for p in g["params"]] for g in opt.param_groups]
    groups = [{**s, "params": ps} for s, ps in zip(settings, params, strict=True)]
    make: Any = type(opt)
    fresh: torch.optim.Optimizer = make(groups)
    # a deep copy: load_state_dict keeps tensors it need not convert, so Adam's
    # in-place `step += 1` would otherwise count on in the user's optimizer
    fresh.load_state_dict(copy.deepcopy(opt.state_dict()))
    return fresh


def _reference(opt: torch.optim.Optimizer, group: dict[str, Any]) -> Any:
    if group.get("maximize") or group.get("differentiable"):
        raise ValueError("verify_optimizer: maximize=True and differentiable=True have no numpy reference")
    if isinstance(opt, (torch.optim.Adam, torch.optim.AdamW)):  # AdamW subclasses Adam only in recent PyTorch
        decoupled = isinstance(opt, torch.optim.AdamW) or group.get("decoupled_weight_decay")
        make = ref.AdamW if decoupled else ref.Adam
        return make(group["lr"], group["betas"], group["eps"], group["weight_decay"], group["amsgrad"])
    if isinstance(opt, torch.optim.SGD):
        return ref.SGD(group["lr"], group["momentum"], group["dampening"], group["weight_decay"], group["nesterov"])
    raise TypeError(f"verify_optimizer: no numpy reference for {type(opt).__name__} (SGD, Adam and AdamW have one)")


def _load_state(references: list[tuple[Any, list[str]]], opt: torch.optim.Optimizer, names: dict[int, str]) -> None:
    """Start the references from the optimizer's current state (momentum, m, v, t)."""
    for group in opt.param_groups:
        for p in group["params"]:
            state, name = opt.state.get(p), names[id(p)]
            if not state:
                continue
            reference = next(r for r, group_names in references if name in group_names)
            if "momentum_buffer" in state and state["momentum_buffer"] is not None:
                reference.buffers[name] = _np(state["momentum_buffer"])
            if "exp_avg" in state:
                reference.m[name], reference.v[name] = _np(state["exp_avg"]), _np(state["exp_avg_sq"])
                reference.t[name] = int(state["step"])
                if "max_exp_avg_sq" in state:
                    reference.v_max[name] = _np(state["max_exp_avg_sq"])


def _np(t: torch.Tensor | None) -> np.ndarray:
    assert t is not None
    out: np.ndarray = t.detach().cpu().double().numpy().copy()
    return out
