"""The real-model suite: every model of the zoo (torchvision, timm, transformers,
built from small configs with random weights) traced and verified as a user
would, each result held against an independent truth.

- records (names, call order, input and output shapes) equal what PyTorch's own
  per-module hooks see in a plain forward;
- parameter counts equal a count that takes tied weights once;
- zero failed checks; every verify verdict agrees or is unchecked (with a reason);
- the table and the DOT diagram render (Graphviz parses the DOT), the JSON
  round-trips equal;
- the model, torch's global hook tables and the RNG are exactly as before;
- three training steps under `watch(every=1)`: no alert on healthy training
  (the first batch's train-mode trace included), the true one where it
  explodes, and the same weights as the steps unwatched.

Run with `make zoo` (its own venv: torchvision does not import beside the CPU
build of torch the main suite uses).
"""

from __future__ import annotations

import contextlib
import copy
import random
import shutil
import subprocess
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.utils import _pytree

import layerlens as ll

from .catalog import MODELS


def _tensors(obj: Any) -> list[torch.Tensor]:
    return [leaf for leaf in _pytree.tree_leaves(obj) if isinstance(leaf, torch.Tensor)]


def _plain_calls(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[Any, ...]]:
    """(name, input shapes, output shapes) per module call, from per-module hooks."""
    names = {id(m): n for n, m in model.named_modules()}
    calls: list[list[Any]] = []
    stack: list[int] = []

    def pre(module: nn.Module, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
        stack.append(len(calls))
        calls.append([names[id(module)], [tuple(t.shape) for t in _tensors((a, kw))], None])

    def post(module: nn.Module, a: tuple[Any, ...], kw: dict[str, Any], out: Any) -> None:
        calls[stack.pop()][2] = [tuple(t.shape) for t in _tensors(out)]

    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(m.register_forward_hook(post, with_kwargs=True))
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return [tuple(c) for c in calls]


def _state(model: nn.Module) -> dict[str, Any]:
    """Everything a trace must leave as it was, copied."""
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "flags": [m.training for m in model.modules()],
        "dicts": [sorted(vars(m)) for m in model.modules()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        "global": _global_tables(),
        "rng": torch.get_rng_state(),
    }


def _same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before["tensors"].keys() == after["tensors"].keys()
    for k, v in before["tensors"].items():
        assert torch.equal(v, after["tensors"][k]), f"{k} changed"
    for key in ("flags", "dicts", "hooks", "global"):
        assert before[key] == after[key], f"{key} changed"
    assert torch.equal(before["rng"], after["rng"])


def _global_tables() -> dict[str, dict[Any, Any]]:
    return {k: dict(v) for k, v in vars(torch_module).items() if k.startswith("_global") and isinstance(v, dict)}


def _unique_params(module: nn.Module) -> int:
    return sum({id(p): p.numel() for p in module.parameters()}.values())


@pytest.fixture(scope="module", params=sorted(MODELS))
def built(request: pytest.FixtureRequest) -> tuple[str, nn.Module, tuple[Any, ...], dict[str, Any]]:
    name = request.param
    model, args, kwargs = MODELS[name]()
    return name, model, args, kwargs


def test_trace_matches_torch_hooks_and_leaves_everything_as_it_was(built: Any) -> None:
    _, model, args, kwargs = built
    expected = _plain_calls(model, args, kwargs)
    before = _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ll.LayerlensWarning)  # notes, e.g. "a large diagram"
        t = ll.trace(model, args, kwargs=kwargs)
        table, dot = t.table(), t.to_dot()
    _same_state(before, _state(model))
    got = [(r.name, list(r.input_shapes), list(r.output_shapes)) for r in t]
    assert [g[0] for g in got] == [e[0] for e in expected], "names or call order differ"
    for g, e in zip(got, expected, strict=True):
        assert g[1] == e[1], f"{g[0]}: inputs {g[1]} != {e[1]}"
        assert g[2] == e[2], f"{g[0]}: outputs {g[2]} != {e[2]}"
    modules = dict(model.named_modules())
    for r in t:
        if r.call_index == 0:
            assert r.num_params == _unique_params(modules[r.name]), r.name
    assert t.meta.total_params == _unique_params(model)
    assert not t.failures, [f"{c.name}: {c.message}" for c in t.failures]
    assert table.count("\n") > len(t) and dot.startswith("digraph")
    assert ll.load_trace(t.to_json()) == t
    if shutil.which("dot"):
        done = subprocess.run(["dot", "-Tsvg"], input=t.to_dot(depth=2), capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "<svg" in done.stdout, done.stderr[:500]


def test_verify_gives_every_layer_a_verdict_and_changes_nothing(built: Any) -> None:
    _, model, args, kwargs = built
    before = _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ll.LayerlensWarning)
        report = ll.verify(model, args, kwargs=kwargs)
    _same_state(before, _state(model))
    assert not report.failures, [(v.label, v.type_name, v.max_rel) for v in report.failures]
    assert all(v.status in ("pass", "unchecked", "composite") for v in report.verdicts)
    assert all(v.note for v in report.unchecked), "an unchecked layer says why"
    assert report.checked, "real layers get compared"


# At the zoo's small inputs these three put BatchNorm over a batch of 2 at 1x1 (or nearly): their gradients
# at initialisation are in the millions and one SGD step moves weights by many times their norm (weight
# norm 2.4 -> 170 in resnet50's conv1). That training truly explodes, and watch must say so; with a batch
# of 8 at 64 px the same models train quietly.
_EXPLODING = {"tv/resnet50", "tv/densenet121", "tv/inception_v3"}
_NEEDS_TARGETS = {"tv/fasterrcnn_mobilenet", "tv/ssdlite"}  # detection models train on (images, targets)


def _train(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], watched: bool) -> Any:
    """Three SGD steps on the mean square of every float output, from seed 0 in torch,
    numpy and random (dropout and SpecAugment draw the same masks watched or not);
    the watch, when `watched`."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    w = ll.watch(model, every=1, optimizer=opt) if watched else None
    with w if w is not None else contextlib.nullcontext():
        for _ in range(3):
            opt.zero_grad()
            out = _tensors(model(*args, **kwargs))
            sum(t.float().pow(2).mean() for t in out if t.is_floating_point() and t.requires_grad).backward()
            opt.step()
    return w


@pytest.mark.parametrize("name", sorted(set(MODELS) - _NEEDS_TARGETS))
def test_watch_is_silent_on_healthy_training_and_changes_nothing(name: str) -> None:
    """Every layer measured on three sampled steps, no alert (the first batch's
    train-mode trace included) but where training truly explodes, no warning, and
    the trained weights equal those of the same steps unwatched."""
    model, args, kwargs = MODELS[name]()
    plain = copy.deepcopy(model).train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w = _train(model.train(), args, kwargs, watched=True)
    _train(plain, args, kwargs, watched=False)
    ours = [str(c.message) for c in caught if issubclass(c.category, ll.LayerlensWarning)]
    assert ours == []
    assert [r.step for r in w.history] == [1, 2, 3]
    kinds = {a.kind for a in w.alerts}
    assert kinds == ({"exploding_grad"} if name in _EXPLODING else set()), [str(a) for a in w.alerts[:5]]
    for (key, a), b in zip(model.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{key} differs from the unwatched training"
