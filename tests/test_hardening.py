"""Hostile documents, names and arguments: a clear error or a correct result, never a crash from inside."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import layerlens as ll


def _doc() -> dict[str, Any]:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    return json.loads(ll.trace(model, torch.randn(2, 3)).to_json())


_DOC = _doc()
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _paths(obj: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here]
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += _paths(v, (*here, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _paths(v, (*here, i))
    return found


_ALL_PATHS = [p for p in _paths(_DOC) if p]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_ALL_PATHS), st.booleans(), _JSON), min_size=1, max_size=4))
def test_a_damaged_document_is_a_value_error_or_a_trace_that_renders(edits: list[Any]) -> None:
    doc = json.loads(json.dumps(_DOC))
    for path, delete, value in edits:
        parent: Any = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            if delete and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed this place
    try:
        t = ll.load_trace(json.dumps(doc))
    except ValueError:
        return
    t.table()
    t.to_dot()
    ll.load_trace(t.to_json())


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"schema": "layerlens.trace/1"}', "{}", "[]", "nul", '{"schema": 3}'],
)
def test_broken_text_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="load_trace"):
        ll.load_trace(text)


def test_a_parent_cycle_is_refused_instead_of_looping() -> None:
    doc = json.loads(json.dumps(_DOC))
    doc["records"][0]["parent"] = 2
    with pytest.raises(ValueError, match=r"records\[0\]\.parent"):
        ll.load_trace(json.dumps(doc))
    doc["records"][0]["parent"] = 0
    with pytest.raises(ValueError, match=r"records\[0\]\.parent"):
        ll.load_trace(json.dumps(doc))


def test_an_edge_to_nowhere_is_refused() -> None:
    doc = json.loads(json.dumps(_DOC))
    doc["edges"].append(["call:0", "call:99", [1], "float32"])
    with pytest.raises(ValueError, match=r"edges\[\d+\] refers to call:99"):
        ll.load_trace(json.dumps(doc))


@pytest.mark.parametrize("source", [None, 3, b"{}", ["{}"]])
def test_load_trace_of_a_non_document_is_a_type_error(source: Any) -> None:
    with pytest.raises(TypeError, match="JSON text or a path"):
        ll.load_trace(source)


def test_a_broken_values_file_is_a_value_error(tmp_path: Path) -> None:
    t = ll.trace(nn.Linear(2, 2), torch.randn(1, 2), values="full")
    saved = t.save(tmp_path / "run.json")
    values = next(tmp_path.glob("*.npz"))
    values.write_bytes(values.read_bytes()[:40])
    with pytest.raises(ValueError, match="values file"):
        ll.load_trace(saved)


def test_nan_statistics_round_trip_equal() -> None:
    class Poison(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * float("nan")

    t = ll.trace(Poison(), torch.randn(3))
    stats = t[0].outputs[0].stats
    assert stats is not None and math.isnan(stats.mean) and stats.nan_count == 3
    assert ll.load_trace(t.to_json()) == t


def test_one_nan_encoding_in_every_document(tmp_path: Path) -> None:
    class Poison(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * float("nan")

    def strict(text: str) -> Any:
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))

    assert '{"$float": "nan"}' in json.dumps(strict(ll.trace(Poison(), torch.randn(3)).to_json()))
    model = nn.Sequential(nn.Linear(2, 2), Poison())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ll.watch(model, every=1, optimizer=opt) as w:
        w.to_jsonl(tmp_path / "w.jsonl")
        model(torch.randn(4, 2)).sum().backward()
        opt.step()
    lines = (tmp_path / "w.jsonl").read_text().splitlines()
    assert lines and all(strict(line) for line in lines)
    assert '{"$float": "nan"}' in "".join(lines)
    assert not [v for line in lines for v in _strings(strict(line)) if v in ("nan", "inf", "-inf")]


def _strings(obj: Any) -> list[str]:
    """String values of a document, except alert kinds and inside {"$float": ...} objects."""
    if isinstance(obj, dict):
        if set(obj) == {"$float"}:
            return []
        return [s for k, v in obj.items() if k != "kind" for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [obj] if isinstance(obj, str) else []


@pytest.mark.parametrize("names", [("run.json", "run.trace"), ("x.npz",), ("a.json", "a.JSON.trace", "a")])
def test_each_trace_file_has_its_own_values_file(tmp_path: Path, names: tuple[str, ...]) -> None:
    traces = [ll.trace(nn.Linear(2, 2), torch.full((1, 2), float(i)), values="full") for i in range(len(names))]
    for name, t in zip(names, traces, strict=True):
        t.save(tmp_path / name)
    for name, t in zip(names, traces, strict=True):
        back = ll.load_trace(tmp_path / name)
        assert back == t
        np_in = back[0].inputs[0].value
        assert np_in is not None and float(np_in.ravel()[0]) == float(t[0].inputs[0].value.ravel()[0])


@pytest.mark.parametrize("make", [torch.optim.Adam, torch.optim.AdamW, lambda p: torch.optim.SGD(p, 0.1, momentum=0.9)])
def test_verify_optimizer_leaves_the_optimizer_and_model_as_they_were(make: Any) -> None:
    model = nn.Linear(3, 3)
    opt = make(model.parameters())
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(2, 3)).sum().backward()
        opt.step()
    state = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in opt.state[model.weight].items()}
    weight = model.weight.detach().clone()
    batches = [(torch.randn(2, 3), torch.randn(2, 3)) for _ in range(3)]
    assert ll.verify_optimizer(model, opt, nn.functional.mse_loss, batches).ok
    for key, value in opt.state[model.weight].items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(state[key])), key
    assert torch.equal(model.weight, weight)


def test_lazy_batchnorm_models_trace_on_a_copy() -> None:
    model = nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d(), nn.ReLU())
    with pytest.warns(ll.LayerlensWarning, match="a copy of the model was traced"):
        t = ll.trace(model, torch.randn(5, 3))
    assert [r.type_name for r in t] == ["Sequential", "Linear", "BatchNorm1d", "ReLU"] and t.ok
    assert t["1"].outputs[0].shape == (5, 4)
    assert type(model[1]) is nn.LazyBatchNorm1d and isinstance(model[1].running_mean, nn.parameter.UninitializedBuffer)


def test_jagged_nested_tensors_print_save_and_draw() -> None:
    class Inner(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sin() + 1

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) * 2

    x = torch.nested.nested_tensor([torch.randn(2, 3), torch.randn(4, 3)], layout=torch.jagged)
    t = ll.trace(Outer(), x)
    assert t[0].inputs[0].shape == (2, -1, 3)  # the ragged dimension as -1
    assert "[2, -1, 3]" in t.table()
    assert ll.load_trace(t.to_json()) == t
    assert "digraph" in t.to_dot()


def test_watch_step_before_attach_says_how() -> None:
    w = ll.watch(nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="not attached"):
        w.step()


def test_a_trace_inside_a_watched_loop_is_not_a_training_step() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ll.watch(model, every=1, optimizer=opt) as w:
        for i in range(3):
            opt.zero_grad()
            model(torch.randn(4, 2)).sum().backward()
            opt.step()
            if i == 1:
                ll.trace(model, torch.randn(4, 2), mode="train")
    assert w.step_count == 3 and [r.step for r in w.history] == [1, 2, 3]


def test_verify_report_refuses_an_unknown_table_format() -> None:
    report = ll.verify(nn.Linear(2, 2), torch.randn(1, 2))
    with pytest.raises(ValueError, match="unknown table format 'bogus'"):
        report.table(fmt="bogus")
    assert "Linear" in report.table(fmt="github")


class _Named(nn.Module):
    """A model whose only layer has a name (and a class name) chosen by the test."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.add_module(name, nn.Linear(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.children():
            x = m(x)
        return x


_NAMES = st.text(min_size=1, max_size=12).filter(lambda s: "." not in s) | st.sampled_from(
    ['" URL="javascript:alert(1)', "<script>alert(1)</script>", "]", "\\", "a\nb", "&amp;", "{x}", "\x00\x01"]
)


@settings(max_examples=40, deadline=None)
@given(_NAMES)
def test_any_module_name_renders_to_valid_dot_svg_and_escaped_html(name: str) -> None:
    import xml.etree.ElementTree as ET

    from layerlens.render.graphviz_run import find_renderer

    layer = type(name.replace("\x00", "?"), (nn.Linear,), {})(2, 2)  # a hostile class name too
    try:
        model = _Named(name)
        model.add_module("second", layer)
    except KeyError:  # a name torch itself refuses ("__dict__", an attribute of Module)
        assume(False)
    t = ll.trace(model, torch.randn(1, 2))
    doc = json.loads(t.to_json())
    doc["warnings"].append(name)
    doc["error"] = name
    for r in doc["records"]:
        r["details"]["note"] = name
        r["checks"].append({"name": name, "ok": False, "expected": name, "actual": name, "message": name})
        r["not_checked"] = name
    hostile = ll.load_trace(json.dumps(doc))
    for trace in (t, ll.load_trace(t.to_json()), hostile):
        html = trace.table(fmt="html") + trace.table(fmt="unsafehtml") + trace._repr_html_()
        assert "<script" not in html.lower()
        dot = trace.to_dot()
        assert "javascript:" not in _attributes(dot, ("URL", "href", "target"))
        find_renderer("svg")  # dot, or graphviz-pure (a dev dependency)
        svg = trace.svg()
        root = ET.fromstring(svg)  # well-formed XML
        for el in root.iter():
            assert not el.tag.endswith("script")
            for key, value in el.attrib.items():
                assert not (key.endswith("href") and "javascript" in value.lower()), (key, value)


def _attributes(dot: str, keys: tuple[str, ...]) -> str:
    import re

    return " ".join(m.group(0) for k in keys for m in re.finditer(rf"\b{k}\s*=\s*\"[^\"]*\"", dot))


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(4, 2)).sum().backward()
        opt.step()


def test_watch_keeps_a_bounded_history_and_the_whole_run_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from layerlens.watching import watcher

    monkeypatch.setattr(watcher, "HISTORY", 3)
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ll.watch(model, every=1, optimizer=opt, jsonl=tmp_path / "run.jsonl") as w:
        _train(model, opt, 7)
    assert [r.step for r in w.history] == [5, 6, 7]
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6, 7]


def test_watch_stops_rather_than_write_half_a_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os as os_module

    from layerlens.watching import output

    real_write = os_module.write
    budget = {"bytes": 40}

    def short_write(fd: int, data: bytes) -> int:  # a disk that fills up after 40 bytes
        n = min(len(data), budget["bytes"])
        budget["bytes"] -= n
        return real_write(fd, data[:n]) if n else 0

    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    w = ll.watch(model, every=1, optimizer=opt, jsonl=tmp_path / "run.jsonl").attach()
    monkeypatch.setattr(output.os, "write", short_write)
    try:  # the training loop goes on: one warning says why watching stopped
        with pytest.warns(ll.LayerlensWarning, match="stopped watching: .*only 40 of"):
            _train(model, opt, 3)
    finally:
        monkeypatch.undo()
        w.detach()
    assert (tmp_path / "run.jsonl").read_bytes().count(b"\n") <= 1  # no line claimed complete that is not


def test_a_forward_that_adds_a_submodule_is_traced_and_undone() -> None:
    class Grows(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.extra = nn.Linear(2, 2)  # registered as a submodule, during the forward
            return self.extra(self.first(x))

    model = Grows()
    t = ll.trace(model, torch.randn(1, 2))
    assert not hasattr(model, "extra") and list(model._modules) == ["first"]
    assert t[0].num_params == 6 and t.meta.total_params == 6  # the model as it was traced


def test_two_threads_tracing_at_once_leave_torch_as_it_was() -> None:
    import threading

    model, x = __import__("layerlens.models.gallery", fromlist=["x"]).build_transformer(layers=1, d=16)
    before = torch.backends.mha.get_fastpath_enabled()
    results: list[Any] = []

    def work() -> None:
        for _ in range(5):
            results.append(len(ll.trace(model, x)))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 15 and len(set(results)) == 1
    assert torch.backends.mha.get_fastpath_enabled() == before
    assert all("_call_impl" not in vars(m) for m in model.modules())


def test_what_a_forward_breaks_is_put_back_and_each_part_on_its_own() -> None:
    class Vandal(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("swapped", torch.zeros(3))
            self.register_buffer("resized", torch.zeros(3))
            self.bn = nn.BatchNorm1d(4)
            self.att = nn.MultiheadAttention(4, 1, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                self.swapped = torch.ones(3)  # replaced by an inference tensor
            self.resized.resize_(5)
            self.bn.train()  # switched to train: its running statistics move
            torch.rand(3)  # the RNG moves
            return self.bn(x)

    model = Vandal().eval()
    x = torch.randn(8, 4) + 3
    rng, fast = torch.get_rng_state(), torch.backends.mha.get_fastpath_enabled()
    swapped, stats = model.swapped, model.bn.running_mean.clone()
    ll.trace(model, x)
    assert model.swapped is swapped and model.resized.shape == (3,) and not model.bn.training
    assert torch.equal(model.bn.running_mean, stats) and int(model.bn.num_batches_tracked) == 0
    assert torch.equal(torch.get_rng_state(), rng) and torch.backends.mha.get_fastpath_enabled() == fast


@pytest.mark.parametrize("fmt", ["unsafehtml", "github", "mediawiki"])
def test_watch_and_verify_tables_escape_a_hostile_layer_name(fmt: str) -> None:
    """The watch step table and the verify report go through the same escaping as
    the trace table: no raw HTML where the format is read as HTML."""
    name = "<script>alert(1)</script>"
    model = _Named(name)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ll.watch(model, every=1, optimizer=opt) as w:
        _train(model, opt, 2)
    report = ll.verify(model, torch.randn(3, 2))
    for text in (w.table(fmt=fmt), report.table(fmt=fmt)):
        assert "<script" not in text and "alert(1)" in text


def test_watch_takes_the_optimizer_second_as_one_writes_it() -> None:
    """`watch(model, opt)` is the call people type first: it means optimizer=opt, every 10."""
    model = _Named("layer")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ll.watch(model, opt) as w:
        _train(model, opt, 11)
    steps = [r.step for r in w.history]
    assert w.every == 10 and len(steps) == 2 and steps[1] - steps[0] == 10
    assert w.history[-1].params and all(p.update_ratio is not None for p in w.history[-1].params)
    with pytest.raises(TypeError, match="sampling interval"):
        ll.watch(model, opt, optimizer=opt)
