"""Tracing is invisible: parameters, buffers, every module's own train/eval flag,
RNG states, hooks and devices are as before, on success and when the forward
raises halfway through a module."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import layerlens as ll


class Stateful(nn.Module):
    """BatchNorm (running stats move in training), Dropout (consumes the RNG), and
    an optional failure halfway through a module, after the stats have moved."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Dropout(0.5))
        self.norm = nn.BatchNorm1d(6)
        self.head = nn.Linear(6, 2)
        self.fail = fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.block(x))
        if self.fail:
            raise RuntimeError("boom halfway")
        return self.head(x)


def _snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "objects": {k: id(v) for k, v in [*model.named_parameters(), *model.named_buffers()]},
        "flags": {n: m.training for n, m in model.named_modules()},
        "hooks": {n: (dict(m._forward_hooks), dict(m._forward_pre_hooks)) for n, m in model.named_modules()},
        "rng": (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()),
        "devices": {k: v.device for k, v in model.state_dict().items()},
    }


def _assert_same(before: dict[str, Any], model: nn.Module) -> None:
    after = _snapshot(model)
    assert before["state"].keys() == after["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), k
    assert before["objects"] == after["objects"]
    assert before["flags"] == after["flags"]
    assert before["hooks"] == after["hooks"]
    assert torch.equal(before["rng"][0], after["rng"][0])
    assert before["rng"][1] == after["rng"][1]
    assert np.array_equal(before["rng"][2], after["rng"][2])
    assert before["devices"] == after["devices"]


def _mixed_flags(model: nn.Module) -> None:
    model.train()
    model.block[1].eval()  # a frozen BatchNorm inside a training model
    model.head.eval()


def test_training_trace_changes_nothing() -> None:
    model = Stateful()
    _mixed_flags(model)
    x = torch.randn(8, 6)
    before = _snapshot(model)
    t = ll.trace(model, x)
    assert t["norm"].training and not t["block.1"].training  # it ran in the mode it was in
    _assert_same(before, model)
    assert model.norm.num_batches_tracked.item() == 0


def test_forward_really_moves_the_state_that_trace_restores() -> None:
    """The premise of the test above: a plain forward does change these."""
    model = Stateful()
    _mixed_flags(model)
    x = torch.randn(8, 6)
    before = _snapshot(model)
    model(x)
    with pytest.raises(AssertionError):
        _assert_same(before, model)


def test_exception_halfway_changes_nothing() -> None:
    model = Stateful(fail=True)
    _mixed_flags(model)
    x = torch.randn(8, 6)
    before = _snapshot(model)
    with pytest.raises(ll.TraceError):
        ll.trace(model, x)
    _assert_same(before, model)
    assert not torch.nn.modules.module._global_forward_hooks


def test_mode_override_is_temporary() -> None:
    model = Stateful()
    _mixed_flags(model)
    x = torch.randn(8, 6)
    before = _snapshot(model)
    t = ll.trace(model, x, mode="eval")
    assert not any(r.training for r in t)
    _assert_same(before, model)
    model.eval()
    before = _snapshot(model)
    t = ll.trace(model, x, mode="train")
    assert all(r.training for r in t)
    _assert_same(before, model)


def test_user_hooks_still_fire_and_stay_registered() -> None:
    model = Stateful()
    fired: list[str] = []
    model.head.register_forward_hook(lambda m, a, o: fired.append("head"))
    model.norm.register_forward_pre_hook(lambda m, a: fired.append("norm-pre"))
    global_handle = torch.nn.modules.module.register_module_forward_hook(lambda m, a, o: None)
    try:
        x = torch.randn(8, 6)
        before = _snapshot(model)
        globals_before = dict(torch.nn.modules.module._global_forward_hooks)
        ll.trace(model, x)
        assert fired == ["norm-pre", "head"]
        _assert_same(before, model)
        assert dict(torch.nn.modules.module._global_forward_hooks) == globals_before
    finally:
        global_handle.remove()


def test_reassigned_buffers_and_new_buffers_are_undone() -> None:
    class Counter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("steps", torch.zeros(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.steps = self.steps + 1  # reassignment, not in-place
            self.register_buffer("cache", x.detach())
            return x

    model = Counter()
    original = model.steps
    ll.trace(model, torch.ones(2))
    assert model.steps is original and model.steps.item() == 0
    assert "cache" not in dict(model.named_buffers())


def test_in_place_parameter_edit_is_reported_or_restored() -> None:
    class Drifty(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                self.w.mul_(2)
            return x * self.w

    model = Drifty()
    with pytest.warns(ll.LayerlensWarning, match="edited parameters in place"):
        ll.trace(model, torch.ones(3))
    assert torch.equal(model.w, torch.full((3,), 2.0))  # reported, honestly not undone
    model = Drifty()
    ll.trace(model, torch.ones(3), snapshot_params=True)
    assert torch.equal(model.w, torch.ones(3))


def test_lazy_modules_stay_uninitialized() -> None:
    model = nn.Sequential(nn.LazyLinear(4), nn.ReLU())
    hooks_before = dict(model[0]._forward_pre_hooks)
    with pytest.warns(ll.LayerlensWarning, match="copy of the model was traced"):
        t = ll.trace(model, torch.randn(2, 7))
    assert t["0"].num_params == 7 * 4 + 4
    assert model[0].has_uninitialized_params()
    assert dict(model[0]._forward_pre_hooks).keys() == hooks_before.keys()


def test_fastpath_switch_restored_even_if_user_turned_it_off() -> None:
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        ll.trace(nn.Linear(2, 2), torch.ones(1, 2))
        assert not torch.backends.mha.get_fastpath_enabled()
    finally:
        torch.backends.mha.set_fastpath_enabled(True)


def test_grad_flags_and_grads_untouched() -> None:
    model = Stateful()
    model.head.weight.requires_grad_(False)
    ll.trace(model, torch.randn(8, 6), grad=True)
    assert not model.head.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_keyboard_interrupt_propagates_and_leaves_nothing_behind() -> None:
    class Interrupting(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise KeyboardInterrupt

    model = nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), Interrupting())
    x = torch.randn(8, 6)
    before = _snapshot(model)
    with pytest.raises(KeyboardInterrupt):
        ll.trace(model, x)
    _assert_same(before, model)
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_forward_pre_hooks
    assert torch._C._len_torch_function_stack() == 0
    assert torch.backends.mha.get_fastpath_enabled()
    import gc

    assert gc.isenabled()


def test_buffers_of_a_custom_norm_forward_are_restored_in_eval_too() -> None:
    """Running statistics of torch's own norms in eval mode are only read, so they
    are not copied; a subclass with its own forward gets no such trust."""

    class Drifting(nn.BatchNorm1d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.running_mean.add_(1.0)  # type: ignore[union-attr]
            return super().forward(x)

    model = nn.Sequential(nn.BatchNorm1d(3), Drifting(3)).eval()
    x = torch.randn(4, 3)
    before = _snapshot(model)
    ll.trace(model, x)
    ll.trace(model, x, mode="train")
    _assert_same(before, model)


def test_the_garbage_collector_is_as_before_after_a_trace() -> None:
    import gc

    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    before = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())
    ll.trace(model, torch.randn(2, 3))
    assert (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()) == before
    with pytest.raises(ll.TraceError):
        ll.trace(model, torch.randn(2, 4))
    assert (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()) == before
    gc.freeze()  # a process that froze its own objects (a pre-fork server) keeps them frozen
    try:
        frozen = gc.get_freeze_count()
        ll.trace(model, torch.randn(2, 3))
        assert gc.get_freeze_count() > frozen // 2  # still frozen (objects freed meanwhile leave it)
    finally:
        gc.unfreeze()


def test_the_collector_keeps_collecting_the_forwards_garbage() -> None:
    """Cycles a forward makes (each holding an activation, say) are collected as
    they pile up, not when the trace ends: the peak memory stays the forward's."""
    import gc
    import weakref

    class Cyclic(nn.Module):
        alive_at_end = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            refs = []
            for _ in range(3000):
                a: dict[str, Any] = {}
                b: dict[str, Any] = {"a": a}
                a["b"] = b
                holder = _Holder(b)
                refs.append(weakref.ref(holder))
                b["holder"] = holder
            Cyclic.alive_at_end = sum(r() is not None for r in refs)
            return x

    assert gc.isenabled()
    ll.trace(Cyclic(), torch.ones(2))
    assert Cyclic.alive_at_end < 1500  # young collections ran during the forward


class _Holder:
    def __init__(self, ref: Any) -> None:
        self.ref = ref


def test_a_large_trace_does_not_set_off_full_collections() -> None:
    """A full collection walks every object in the process. The young collections
    a 3,000-call trace ran counted toward the oldest generation's trigger, so
    one started as soon as each trace returned; now the counters start from
    zero after a trace."""
    import gc

    model = nn.Sequential(*[m for _ in range(1500) for m in (nn.Linear(4, 4), nn.ReLU())])
    x = torch.randn(2, 4)
    kept = [ll.trace(model, x)]  # warm; kept, as a user keeps traces in a notebook
    full = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    gc.collect()
    gc.callbacks.append(count)
    try:
        kept += [ll.trace(model, x) for _ in range(6)]
    finally:
        gc.callbacks.remove(count)
    assert len(kept[-1].records) == 3001
    assert not full


def test_full_collections_still_come_for_the_programs_own_garbage_after_traces() -> None:
    """The trace does not switch full collections off: cycles the program leaves in
    the oldest generation after a few traces are still collected, without an
    explicit gc.collect()."""
    import gc
    import weakref

    model = nn.Sequential(*[m for _ in range(500) for m in (nn.Linear(4, 4), nn.ReLU())])
    kept = [ll.trace(model, torch.randn(2, 4)) for _ in range(3)]
    full = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    refs: list[weakref.ref[_Holder]] = []
    gc.callbacks.append(count)
    try:
        for _ in range(60):
            live = []
            for _ in range(10000):  # kept through young collections: promoted to the oldest generation
                a, b = _Holder(None), _Holder(None)
                a.ref, b.ref = b, a
                live.append(a)
            refs += [weakref.ref(h) for h in live[:20]]
            del live, a, b  # now cyclic garbage there
            if full and sum(r() is not None for r in refs[:-20]) == 0:
                break
    finally:
        gc.callbacks.remove(count)
    assert len(kept) == 3 and full
    assert sum(r() is not None for r in refs[:-20]) == 0
