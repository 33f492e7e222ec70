"""Training that silently does not train: gradients never reset between
optimizer steps (`zero_grad()` forgotten), parameters with a gradient that
the optimizer's step leaves unchanged, and a learning rate that stays at 0."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from .health import StepRecord
from .optimizers import ParamGroups
from .sharded import local, local_norm


class GradResetProbe:
    """A tensor hook on one trainable parameter, at each backward, and a look at each
    optimizer step (`starting`, before the update).

    `grad_not_reset`: between two optimizer steps no backward found the `.grad`
    reset (None, or zero), and one found it holding values: each update adds all
    the earlier ones' gradients. Judged over an interval with a sampled backward
    (one reduction there); a reset to None is seen for free at any backward, so a
    GAN's discriminator, whose gradients the generator's backward leaves behind
    until its own `zero_grad()`, is fine. `no_step`: while no optimizer step has
    begun at all, `.grad` found reset to None at two backwards after the first,
    with the parameter unchanged between them: each backward's gradients are
    thrown away unused."""

    def __init__(self, name: str, param: nn.Parameter, wanted: Callable[[], bool], report: Callable[[str, str], None]):
        self.name = name
        self.param = param
        self.wanted = wanted  # whether this step is sampled
        self.report = report  # (kind, parameter)
        self.steps = 0  # optimizer steps begun so far
        self.backwards = 0
        self.discarded = 0  # backwards that found the previous one's gradient reset, before any step (-1: it trains)
        self.mark = 0.0  # the parameter's norm at the first of them
        self.reset = False  # since the last step, a backward found .grad reset
        self.stale = False  # ... or holding values
        self.handle = param.register_hook(self._hook)  # type: ignore[no-untyped-call]

    def starting(self) -> None:
        """An optimizer step begins: judge the backwards since the previous one."""
        if self.stale and not self.reset:
            self.report("grad_not_reset", self.name)
        self.steps += 1
        self.reset = self.stale = False

    def _hook(self, grad: torch.Tensor) -> None:
        self.backwards += 1
        old = self.param.grad
        if self.steps == 0:
            if old is None and self.backwards > 1 and self.discarded >= 0:
                self._discarded()
            return
        if self.reset:
            return
        if old is None:
            self.reset = True
        elif self.stale or self.wanted():
            if bool(torch.count_nonzero(local(old).detach()) > 0):
                self.stale = True
            else:
                self.reset = True

    def _discarded(self) -> None:
        """A backward found the previous one's gradient reset, no step ever: the second
        time, if the parameter is as it was the first time, say so (an optimizer stepped
        by other means, SAM's `first_step`/`second_step`, moves it: then never)."""
        mark = local_norm(self.param)
        self.discarded += 1
        if self.discarded == 1:
            self.mark = mark
        elif mark != self.mark:
            self.discarded = -1  # it trains: stop looking
        elif self.discarded == 2:
            self.report("no_step", self.name)

    def remove(self) -> None:
        self.handle.remove()


def pick_probe(model: nn.Module, optimizer: ParamGroups) -> tuple[str, nn.Parameter] | None:
    """The first trainable parameter the optimizer updates."""
    in_groups = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return next(((n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) in in_groups), None)


def grad_reset_message(param: str) -> str:
    return (
        f"the gradient of {param} still held the previous step's values when this step's backward began: "
        "gradients are not reset between optimizer steps (optimizer.zero_grad() forgotten?), so every step "
        "adds to all the steps before it"
    )


def no_step_message(param: str) -> str:
    return (
        f"backward() ran again and again, but optimizer.step() never did, and {param}'s gradient was reset "
        "(zero_grad) before each backward: the gradients are thrown away and nothing trains (optimizer.step() "
        "forgotten?)"
    )


_MEASURABLE = 1e-18  # the smallest change whose square float32 still holds as a normal number (1e-36)


def learning_rates(params: Iterable[tuple[str, nn.Parameter]], optimizer: ParamGroups) -> dict[str, float]:
    """Each named parameter's learning rate in the optimizer (parameters outside it absent;
    NaN where the group has no number for it: Adafactor's relative step sets `lr=None`)."""
    by_id = {}
    for group in optimizer.param_groups:
        rate = _rate(group.get("lr"))
        for p in group["params"]:
            by_id[id(p)] = rate
    return {n: by_id[id(p)] for n, p in params if id(p) in by_id}


def _rate(lr: Any) -> float:
    """A param group's learning rate as a float (a tensor one included), NaN if it is not a number."""
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        return float(lr)
    if isinstance(lr, torch.Tensor) and lr.numel() == 1:
        return float(lr.detach().reshape(()).item())
    return math.nan


ZERO_LR_STEPS = 3  # consecutive sampled steps with a zero learning rate before it is said (a warm-up starts at 0)


def zero_learning_rate(record: StepRecord, lrs: dict[str, float]) -> bool:
    """Whether this step's update used a learning rate of exactly 0 for every measured
    parameter in the optimizer, left every one of them unchanged, and had a gradient to apply."""
    seen = [p for p in record.params if p.update_ratio is not None and p.name in lrs]
    has_grad = any(p.grad_norm is not None and math.isfinite(p.grad_norm) and p.grad_norm > 0 for p in seen)
    return has_grad and all(lrs[p.name] == 0 and p.update_ratio == 0 for p in seen)


def zero_lr_message(steps: list[int]) -> str:
    return (
        f"the learning rate is 0 in every param group on sampled steps {', '.join(map(str, steps))}, and "
        "optimizer.step() changed no weight: nothing trains (an lr read as 0 from a config, a scheduler that "
        "starts or stays at 0?)"
    )


# Optimizers whose step may leave a parameter exactly as it was by design: Rprop skips each element whose
# gradient changed sign (all of a one-element bias at once), LBFGS's line search may stop without a move.
_MAY_STAND_STILL = (torch.optim.Rprop, torch.optim.LBFGS)


def standing_still(params: Iterable[tuple[str, nn.Parameter]], optimizers: Iterable[torch.optim.Optimizer]) -> set[str]:
    """The parameters that an optimizer of `_MAY_STAND_STILL` trains: not judged by `not_updated`."""
    held = {id(p) for o in optimizers if isinstance(o, _MAY_STAND_STILL) for g in o.param_groups for p in g["params"]}
    return {n for n, p in params if id(p) in held}


def not_updated(record: StepRecord, lrs: dict[str, float], skip: set[str]) -> Iterator[tuple[str, str, str]]:
    """(module, parameter, message) for each parameter with a finite, non-zero gradient
    that the step left exactly as it was, although its learning rate is not zero."""
    for p in record.params:
        if p.name in skip or p.update_ratio is None or p.grad_norm is None:
            continue
        lr = lrs.get(p.name, 0.0)
        # a step of lr * |grad| below float32's resolution of the weight is rounding, not a missed update; one
        # whose square underflows float32 (1e-23 to a bias a key's softmax ignores) is below what a norm can see
        visible = p.weight_norm is not None and lr * p.grad_norm > 1e-6 * p.weight_norm
        visible = visible and (p.grad_max is None or lr * p.grad_max > _MEASURABLE)
        if p.update_ratio == 0 and math.isfinite(p.grad_norm) and visible:
            yield (p.module, p.name, f"{p.name} did not change in optimizer.step() although its gradient norm is "
                   f"{p.grad_norm:.3g} and its learning rate {lrs[p.name]:g}: were the gradients zeroed between "
                   "backward() and step(), or is it a copy of the parameter the optimizer holds?")  # fmt: skip
