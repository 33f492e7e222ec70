"""The benchmark's hook floor (watch's hooks with no numbers) is a fair baseline:
it installs the hooks it claims, changes nothing in training, and leaves nothing behind."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.models import TRAINING_CASES, training_loss
from benchmarks.watch_floor import HookFloor


def _train(model: nn.Module, x: torch.Tensor, opt: torch.optim.Optimizer, steps: int, floor: HookFloor | None) -> None:
    if floor is not None:
        floor.attach()
    for _ in range(steps):
        opt.zero_grad()
        training_loss(model(x)).backward()
        opt.step()
    if floor is not None:
        floor.detach()


def test_the_floor_changes_no_training_step_and_removes_its_hooks() -> None:
    case = TRAINING_CASES[-1]
    assert case.short == "small MLP"
    (a, x), (b, _) = case.build(), case.build()
    opt_a, opt_b = torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    floor = HookFloor(b, opt_b, every=2)
    _train(a, x, opt_a, 5, None)
    _train(b, x, opt_b, 5, floor)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert floor.step == 5 and floor.nonfinite == 0
    assert floor.update is not None and floor.update.numel() == sum(p.numel() for p in b.parameters())
    assert not b._forward_hooks and not b._forward_pre_hooks
    assert not opt_b._optimizer_step_pre_hooks and not opt_b._optimizer_step_post_hooks
    assert not nn.modules.module._global_forward_hooks and not nn.modules.module._global_forward_pre_hooks


def test_the_floor_hooks_every_module_call_on_a_sampled_step_only() -> None:
    model, x = TRAINING_CASES[-1].build()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    floor = HookFloor(model, opt, every=2).attach()
    seen: list[int] = []
    original = floor._layer_start
    floor._layer_start = lambda m, a: seen.append(floor.step) or original(m, a)  # type: ignore[method-assign]
    _train(model, x, opt, 4, None)
    floor.detach()
    inner = len(list(model.modules())) - 1  # the five layers (the root's own call began before the hook)
    assert seen == [0] * inner + [2] * inner


def test_the_trace_floor_records_every_call_like_torch_and_leaves_nothing_behind() -> None:
    """The trace floor's recorder is a fair baseline: a start and an end entry per module call,
    the calls torch's own hooks see, and every module's `__dict__` as before."""
    from benchmarks.trace_floor import floors

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))
    x = torch.randn(3, 4)
    seen: list[nn.Module] = []
    handles = [m.register_forward_pre_hook(lambda m, a: seen.append(m)) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    before = [dict(m.__dict__) for m in model.modules()]
    calls = floors(model, x)["recorder appending shapes (with the forward)"]()
    starts = [c[0] for c in calls if isinstance(c, tuple) and c and isinstance(c[0], nn.Module)]
    assert starts == seen and len(calls) == 2 * len(seen)  # a start and an end per call, in call order
    assert calls[-1] == (3, 2) and [dict(m.__dict__) for m in model.modules()] == before
