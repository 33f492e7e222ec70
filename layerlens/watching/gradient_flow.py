"""Gradients that never reach a layer, or are gone before the update: judged at
`optimizer.step()` on a sampled step, from which layer outputs got a gradient
in the step's backward and which parameters hold one now.

- `no_gradient`: a leaf layer ran in the forward, its trainable parameters are
  in the optimizer, yet neither its output nor they got a gradient: the graph
  was cut after it (`.detach()`, `.data`, a NumPy round trip, `torch.no_grad()`
  around it). A layer whose output only feeds an output the loss ignores (a
  pooler) is an `unused_output` note instead.
- `grad_cleared`: the backward reached the model, but no parameter holds a
  gradient at the step (`zero_grad()` between `backward()` and `step()`).
- `no_backward`: nothing of the backward reached the model before the step
  (`loss.backward()` missing, or called after `step()`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from torch import nn

from .setup_checks import listed
from .sharded import local_norm


@dataclass(frozen=True)
class Ran:
    """One layer call of the sampled forward, as the gradient-flow rules see it."""

    name: str
    type_name: str
    leaf: bool
    needs_grad: bool  # its output required grad (a gradient hook was set on it)
    got_grad: bool  # ... and a gradient reached it in the backward


Found = tuple[str, str, str, str, str]  # kind, layer, type name, parameter, message
Severed = Callable[[str], bool]
WHOLE_STEP = ("grad_cleared", "no_backward")  # about the loop, not a layer: said once two sampled steps show it


def judge(
    calls: list[Ran],
    params: list[tuple[str, str, nn.Parameter]],
    in_optimizer: set[int],
    cuts: dict[str, float],
    severed: Severed = lambda name: False,
) -> Iterator[Found]:
    """The gradient-flow alerts of one sampled step, at its optimizer step (before the update).
    `params` are the step's measured (name, module, parameter); only trainable ones the
    optimizer holds count: a parameter left out of it on purpose is not an alarm. `cuts`
    (kept by the caller from step to step) holds the layers seen without a gradient;
    `severed` says whether the model's code cuts a layer's output (see `severed_in`)."""
    trained = [(n, m, p) for n, m, p in params if p.requires_grad and id(p) in in_optimizer]
    if not trained or not calls:
        return
    root = next((c for c in calls if c.name == ""), calls[-1])
    if all(p.grad is None for _, _, p in trained):
        if any(c.got_grad for c in calls):
            yield ("grad_cleared", "", root.type_name, "", GRAD_CLEARED)
        elif any(c.needs_grad for c in calls):
            yield ("no_backward", "", root.type_name, "", NO_BACKWARD)
        return
    yield from _cut_layers(calls, trained, cuts, severed)


def _cut_layers(
    calls: list[Ran], trained: list[tuple[str, str, nn.Parameter]], cuts: dict[str, float], severed: Severed
) -> Iterator[Found]:
    """Layers that ran and got no gradient, on a second sampled step with their weights
    as at the first (a head that only some steps' losses use trains in between). Those
    computed with gradients off, or whose output the model's own code cuts off
    (`severed`: a `.detach()` on the way, in the first batch's trace), are one
    `no_gradient` alert at the last of them (the cut is after it); the others only
    feed outputs the loss ignores (a pooler, an auxiliary head): an `unused_output` note."""
    owned: dict[str, list[nn.Parameter]] = {}
    names: dict[str, list[str]] = {}
    for n, m, p in trained:
        owned.setdefault(m, []).append(p)
        names.setdefault(m, []).append(n)
    seen: set[str] = set()
    cut: list[Ran] = []
    for c in calls:
        if c.name in seen:  # a layer called twice counts once: any call's gradient reaches its parameters
            continue
        seen.add(c.name)
        mine = owned.get(c.name)
        if c.leaf and mine and not c.got_grad and all(p.grad is None for p in mine):
            cut.append(c)
    got = {c.name for c in calls if c.got_grad}
    cut = [c for c in cut if c.name not in got and _unchanged(c.name, owned[c.name], cuts)]
    unused = [c for c in cut if c.needs_grad and not severed(c.name)]
    cut = [c for c in cut if c not in unused]
    for c in unused:
        yield ("unused_output", c.name, c.type_name, names[c.name][0],
               f"ran in the forward, but its output does not reach the loss, so {listed(names[c.name])} get no "
               "gradient and do not train (an output the loss ignores, such as a pooler or an auxiliary head: "
               "fine if meant; otherwise use it in the loss, or do not compute it)")  # fmt: skip
    if not cut:
        return
    last = cut[-1]
    how = (
        "its output was computed with gradients off (torch.no_grad() or torch.inference_mode() around it)"
        if not last.needs_grad
        else "the model's code cuts its output from the graph on the way to the loss (.detach(), .data, a NumPy "
        "round trip)"
    )
    others = [f"{c.name} ({c.type_name})" for c in cut[:-1]]
    also = f"; so did {listed(others)} before it" if others else ""
    message = (
        f"ran in this step's forward, but {listed(names[last.name])} got no gradient (nor on an earlier sampled "
        f"step, and the weights have not changed since): {how}{also}. The optimizer holds them, and they never "
        "train (if freezing is meant, set requires_grad=False and leave them out of the optimizer)"
    )
    yield ("no_gradient", last.name, last.type_name, names[last.name][0], message)


_CUTTING = {"detach", "detach_", "data", "numpy", "tolist", "item"}  # ops whose result has no gradient path back


def severed_in(trace: Any) -> Severed:
    """Whether a layer's output meets a cutting op (`.detach()`, `.data`, ...) on its way
    through the model's data flow in `trace` (any call of it); without a trace, never."""
    if trace is None:
        return lambda name: False
    after: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for e in trace.edges:
        after.setdefault((e.src.kind, str(e.src.key)), []).append((e.dst.kind, str(e.dst.key)))
    calls: dict[str, list[int]] = {}
    for k, r in enumerate(trace.records):
        calls.setdefault(r.name, []).append(k)

    def severed(name: str) -> bool:
        todo = [("call", str(k)) for k in calls.get(name, [])]
        seen = set(todo)
        while todo:
            node = todo.pop()
            if node[0] == "op" and trace.ops[int(node[1])].name in _CUTTING:
                return True
            for nxt in after.get(node, []):
                if nxt not in seen and nxt[0] in ("call", "op"):
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    return severed


def _unchanged(layer: str, params: list[nn.Parameter], cuts: dict[str, float]) -> bool:
    """Whether `layer` was seen without a gradient before, with the same weights."""
    mark = sum(local_norm(p) for p in params)
    before, cuts[layer] = cuts.get(layer), mark
    return before == mark


GRAD_CLEARED = (
    "the backward reached the model's layers, but no parameter holds a gradient at optimizer.step(): the "
    "gradients were cleared between backward() and step() (optimizer.zero_grad() in the wrong place?), so "
    "nothing trains. Call zero_grad() before the forward, or right after step()"
)
NO_BACKWARD = (
    "optimizer.step() ran before any gradient reached the model in this step: is loss.backward() missing, "
    "or called after step()? Nothing trains (or each update uses the previous step's gradients)"
)
