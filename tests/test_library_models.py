"""What people trace besides hand-written models: TorchScript and compiled
modules, library subclasses of the layers layerlens inspects, fused fast
paths. Each leaves the model and torch itself exactly as before."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.modules import module as torch_module

import layerlens as ll


def _global_tables() -> dict[str, dict[Any, Any]]:
    """Every global hook table of torch.nn.modules.module, copied."""
    return {k: dict(v) for k, v in vars(torch_module).items() if k.startswith("_global") and isinstance(v, dict)}


def _snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[bool], bool]:
    tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return tensors, [m.training for m in model.modules()], torch.backends.mha.get_fastpath_enabled()


def _unchanged(model: nn.Module, before: tuple[dict[str, torch.Tensor], list[bool], bool]) -> bool:
    tensors, flags, fastpath = _snapshot(model)
    same = tensors.keys() == before[0].keys() and all(torch.equal(v, before[0][k]) for k, v in tensors.items())
    return same and flags == before[1] and fastpath == before[2]


def test_a_scripted_submodule_is_one_opaque_call_and_the_model_is_untouched() -> None:
    inner = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)))
    model = nn.Sequential(nn.Linear(4, 4), inner, nn.ReLU()).train()
    x = torch.randn(8, 4)
    before, rng = _snapshot(model), torch.get_rng_state()
    t = ll.trace(model, x)
    assert [(r.name, r.type_name) for r in t] == [("", "Sequential"), ("0", "Linear"), ("1", "Sequential"),
                                                  ("2", "ReLU")]  # fmt: skip
    scripted = t["1"]
    assert scripted.details["torchscript"] is True and not scripted.checks and scripted.output_shapes == ((8, 4),)
    assert scripted.outputs[0].stats is not None
    assert _unchanged(model, before) and torch.equal(rng, torch.get_rng_state())  # BN statistics restored


def test_a_wholly_scripted_model_is_traced_at_the_root() -> None:
    model = torch.jit.script(nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3))).train()
    before = _snapshot(model)
    t = ll.trace(model, torch.randn(2, 2, 8))
    assert len(t) == 1 and t[0].type_name == "Sequential" and t[0].output_shapes == ((2, 3, 6),) and t.ok
    assert _unchanged(model, before)


def test_a_compiled_model_is_traced_eagerly_through_its_original_module() -> None:
    from torch._dynamo.utils import counters

    eager = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    compiled = torch.compile(eager, backend="eager")
    x = torch.randn(2, 4)
    compiled(x)  # compiled once, as a user's model would be
    graphs = dict(counters["stats"])
    with pytest.warns(ll.LayerlensWarning, match="traced through its original module, eagerly"):
        t = ll.trace(compiled, x)
    assert [r.name for r in t] == ["", "0", "1"] and t[0].type_name == "Sequential"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about hooks, or anything else
        compiled(x)
    assert dict(counters["stats"]) == graphs  # no recompilation


def test_a_compiled_submodule_runs_eagerly_during_the_trace() -> None:
    block = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    model = nn.Sequential(torch.compile(block, backend="eager"), nn.Linear(4, 2))
    t = ll.trace(model, torch.randn(3, 4))
    assert [r.name for r in t] == ["", "0", "0._orig_mod", "0._orig_mod.0", "0._orig_mod.1", "1"]


@pytest.mark.parametrize(
    "run",
    [
        lambda m, x: ll.trace(m, x),
        lambda m, x: ll.verify(m, x),
        lambda m, x: _watched_step(m, x),
    ],
    ids=["trace", "verify", "watch"],
)
def test_no_global_hook_table_changes(run: Callable[[nn.Module, torch.Tensor], Any]) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    before = _global_tables()
    for _ in range(3):
        run(model, torch.randn(5, 4))
    assert _global_tables() == before


def _watched_step(model: nn.Module, x: torch.Tensor) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ll.watch(model, every=1, optimizer=opt):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()


class _Boom(nn.Module):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.linear(x)
        raise self.error


@pytest.mark.parametrize("error", [ValueError("bad"), KeyboardInterrupt()], ids=["exception", "interrupt"])
def test_no_global_hook_table_changes_after_a_failure(error: BaseException) -> None:
    model = nn.Sequential(nn.Linear(4, 4), _Boom(error))
    before, state = _global_tables(), _snapshot(model)
    with pytest.raises((ll.TraceError, KeyboardInterrupt)):
        ll.trace(model, torch.randn(2, 4))
    assert _global_tables() == before and _unchanged(model, state)
    assert not any("_call_impl" in vars(m) for m in model.modules())  # the wrappers are gone


def test_a_subclass_with_its_own_forward_is_not_checked_never_failed() -> None:
    class ShiftedNorm(nn.BatchNorm1d):  # a library's BN followed by something of its own
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + 1.0

    t = ll.trace(nn.Sequential(nn.Linear(3, 4), ShiftedNorm(4)).train(), torch.randn(8, 3))
    assert t.ok and not t["1"].checks
    assert t["1"].not_checked == f"forward overridden by {ShiftedNorm.__module__}.{ShiftedNorm.__qualname__}"
    assert t["1"].details["num_features"] == 4  # the family's facts stay
    assert "not checked" in t.table() and "not checked: ShiftedNorm" in t.table()
    report = ll.verify(nn.Sequential(nn.Linear(3, 4), ShiftedNorm(4)), torch.randn(8, 3))
    assert report["1"].status == "unchecked" and "forward overridden" in report["1"].note


def test_a_fused_transformer_encoder_says_where_an_untraced_call_differs() -> None:
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0)
    encoder = nn.TransformerEncoder(layer, 2).eval()
    x = torch.randn(2, 5, 16)
    mask = torch.tensor([[False] * 5, [False, False, False, True, True]])
    with torch.no_grad():
        untraced = encoder(x, src_key_padding_mask=mask)
    t = ll.trace(encoder, x, kwargs={"src_key_padding_mask": mask})
    note = t[0].details["untraced_differs"]
    assert "0 at the 2 positions src_key_padding_mask pads" in note
    assert untraced[1, 3:].abs().max() == 0  # what the note says of the untraced call
    assert torch.backends.mha.get_fastpath_enabled()  # and the switch is back
    without = ll.trace(encoder, x)  # no mask: the two paths agree, nothing to say
    assert "untraced_differs" not in without[0].details
