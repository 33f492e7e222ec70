"""Pluggable inspectors: registered globally or per call, found along the MRO,
and used by trace, table and JSON alike."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

import layerlens as ll


class Gain(nn.Module):
    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class LoudGain(Gain):
    pass


@pytest.fixture
def gain_inspector() -> Iterator[None]:
    @ll.register(Gain)
    def inspect_gain(module: Gain, record: ll.LayerRecord) -> Iterator[ll.Check]:
        record.details["gain"] = module.gain
        yield ll.Check("gain_positive", module.gain > 0, ">0", module.gain, "gain must be positive")

    yield
    ll.unregister(Gain)


@pytest.mark.usefixtures("gain_inspector")
def test_registered_inspector_is_used_by_trace_table_and_json() -> None:
    model = nn.Sequential(Gain(2.0), LoudGain(-1.0))
    t = ll.trace(model, torch.ones(3))
    assert t["0"].details["gain"] == 2.0 and t["0"].checks[0].ok
    assert t["1"].details["gain"] == -1.0  # a subclass inherits it through the MRO
    assert [c.ok for c in t.failures] == [False] and not t.ok
    assert "✗ gain_positive" in t.table()
    assert ll.load_trace(t.to_json()) == t


@pytest.mark.usefixtures("gain_inspector")
def test_per_call_override_and_disable() -> None:
    def quiet(module: nn.Module, record: ll.LayerRecord) -> None:
        record.details["quiet"] = True

    model = nn.Sequential(Gain(2.0), LoudGain(-1.0))
    t = ll.trace(model, torch.ones(3), inspectors={LoudGain: quiet})
    assert t["1"].details == {"quiet": True} and t.ok
    assert t["0"].details["gain"] == 2.0
    t = ll.trace(model, torch.ones(3), inspectors={Gain: None})
    assert t["1"].details == {} and not t.checks
    t = ll.trace(model, torch.ones(3))  # the override was for one call only
    assert not t.ok


def test_a_user_inspector_can_override_a_builtin() -> None:
    def mine(module: nn.Linear, record: ll.LayerRecord) -> list[ll.Check]:
        return [ll.Check("square", module.in_features == module.out_features, "square", module.weight.shape, "")]

    t = ll.trace(nn.Linear(3, 4), torch.ones(1, 3), inspectors={nn.Linear: mine})
    assert [c.name for c in t.checks] == ["square"] and not t.ok
    assert t[0].checks[0].actual == (4, 3)  # torch.Size made a plain tuple


def test_register_rejects_non_modules() -> None:
    with pytest.raises(TypeError, match=r"nn\.Module subclasses"):
        ll.register(int)


def test_inspector_returning_garbage_is_reported() -> None:
    def wrong(module: nn.Module, record: ll.LayerRecord) -> list[str]:
        return ["not a check"]

    with pytest.warns(ll.LayerlensWarning, match="must return or yield Check"):
        ll.trace(Gain(1.0), torch.ones(1), inspectors={Gain: wrong})  # type: ignore[dict-item]


def test_tensor_valued_check_fields_become_plain_values() -> None:
    def tensor_check(module: nn.Module, record: ll.LayerRecord) -> Iterator[ll.Check]:
        out = torch.tensor(2.5)
        yield ll.Check("positive", out > 0, 0, out, "tensor fields")

    t = ll.trace(Gain(1.0), torch.ones(1), inspectors={Gain: tensor_check})
    check = t[0].checks[0]
    assert check.ok is True and check.actual == 2.5
    assert ll.load_trace(t.to_json()) == t
