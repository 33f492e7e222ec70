"""Third-party layer families by entry point: the example plugin package
(examples/plugin, installed by `make setup`) teaches layerlens a layer it does
not know, with no change to layerlens; a broken plugin is a warning naming it."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from importlib.metadata import EntryPoint

import pytest
import torch
from torch import nn

import layerlens as ll
from layerlens.layers import registry
from tests.conftest import judged_as

clampnet = pytest.importorskip("clampnet", reason="the example plugin is installed by `make setup`")


def test_the_installed_plugin_adds_facts_checks_and_a_reference() -> None:
    model = nn.Sequential(nn.Linear(4, 4), clampnet.Clamp(-0.5, 0.5))
    t = ll.trace(model, torch.randn(8, 4) * 3)
    record = t["1"]
    assert record.family == "clampnet.clamp" and record.details["low"] == -0.5
    (check,) = record.checks
    assert check.name == "clamp_range" and check.ok and check.actual == (-0.5, 0.5)
    report = ll.verify(model, torch.randn(8, 4))
    assert report["1"].status == "pass" and report["1"].reference == "reference.clip"


def test_the_plugins_rule_judges_only_its_own_computation() -> None:
    class Leaky(clampnet.Clamp):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.clamp(self.low * 2, self.high * 2)  # a bug: the band is twice as wide

    x = torch.linspace(-1, 1, 11)
    t = ll.trace(Leaky(-0.25, 0.25), x)
    assert t.ok and "forward overridden by" in (t[0].not_checked or "") and "not checked" in t.table()
    with judged_as(Leaky, clampnet.Clamp):
        t = ll.trace(Leaky(-0.25, 0.25), x)
    assert not t.ok and t.failures[0].name == "clamp_range"


def test_the_plugin_is_loaded_lazily_on_first_use() -> None:
    code = (
        "import sys, torch, layerlens as ll\n"
        "assert 'clampnet.layerlens_plugin' not in sys.modules\n"
        "ll.trace(torch.nn.Identity(), torch.ones(1))\n"
        "assert 'clampnet.layerlens_plugin' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> registry.Registry:
    """A registry of its own, so fake entry points touch nothing else."""
    mine = registry.Registry()
    monkeypatch.setattr(registry, "REGISTRY", mine)
    return mine


def _entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name, value, registry.ENTRY_POINT_GROUP)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("no_such_package.plugin", "ModuleNotFoundError"),
        ("json:dumps", "TypeError"),  # not a family
        ("json", "no FAMILIES list"),
    ],
)
def test_a_broken_plugin_is_a_warning_naming_it(
    fresh: registry.Registry, monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    good = _entry("clampnet", "clampnet.layerlens_plugin")
    monkeypatch.setattr(registry, "_entry_points", lambda: iter([_entry("broken", value), good]))
    with pytest.warns(ll.LayerlensWarning, match=rf"plugin 'broken' \({re.escape(value)}\).*{why}"):
        cover = fresh.coverage(clampnet.Clamp)
    assert cover.judged and cover.family is not None and cover.family.name == "clampnet.clamp"  # the others load
    assert fresh.coverage(nn.Conv1d).family is not None  # and the built-ins


def test_family_types_by_name_resolve_once_their_module_is_imported(
    fresh: registry.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    family = ll.LayerFamily("later", ("fake_layer_lib.layers:Later",), inspect=lambda m, r: None)
    fresh.add(family)  # the library is not imported: nothing happens, nothing is imported

    class Later(nn.Module):
        pass

    library = types.ModuleType("fake_layer_lib.layers")
    library.Later = Later  # type: ignore[attr-defined]
    assert fresh.coverage(Later).family is not family
    monkeypatch.setitem(sys.modules, "fake_layer_lib.layers", library)
    fresh.resolve_pending()  # what every trace does first
    assert fresh.coverage(Later).family is family
    with pytest.raises(ValueError, match=r"package\.module:Class"):
        fresh.add(ll.LayerFamily("bad", ("no_colon",)))


def test_register_and_unregister_are_complete() -> None:
    class Gain(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    def expect(module: nn.Module, args: tuple[object, ...]) -> str:
        return "a gain expects anything"

    ll.register(ll.LayerFamily("gain", (Gain,), inspect=lambda m, r: r.details.update(g=2), expect=expect))
    assert ll.layers.coverage(Gain).hook("expect") is expect
    ll.register(Gain)(lambda m, r: r.details.update(replaced=True))  # replaces the inspector only
    assert ll.trace(Gain(), torch.ones(1))[0].details == {"replaced": True}
    assert ll.layers.coverage(Gain).hook("expect") is expect
    ll.unregister(Gain)  # back to the family registered first
    assert ll.trace(Gain(), torch.ones(1))[0].details == {"g": 2}
    ll.unregister(Gain)  # and then to nothing of its own: every hook gone
    cover = ll.layers.coverage(Gain)
    assert cover.family is not None and cover.family.name == "generic"
    assert cover.hook("expect") is not expect
