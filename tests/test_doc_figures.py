"""The shared core of the doc directives: options parsed from directive text and
from YAML alike, clear errors, the cache (what invalidates it, what survives a
damaged entry) and the default depth that fits the page."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import layerlens as ll
from layerlens.doc_figures import FigureError, Request, fitting_depth, make_figure, parse_request

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")

MODEL = """
from torch import nn
CALLS = []

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        return self.b(self.a(x).relu()).relu() * x

def make(n=3):
    CALLS.append(n)
    return nn.Sequential(*[nn.Sequential(Block(), nn.LayerNorm(8), Block()) for _ in range(n)])
"""


@pytest.fixture
def model_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "docmodels_under_test.py"
    path.write_text(MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield path
    sys.modules.pop("docmodels_under_test", None)


def test_text_and_yaml_options_mean_the_same() -> None:
    text = parse_request("m:f", {"input-size": "(2, 16), (2, 16)", "dtypes": "long, long", "roll": None, "depth": "2"})
    yaml = parse_request("m:f", {"input_size": [[2, 16], [2, 16]], "dtypes": ["long"] * 2, "roll": True, "depth": 2})
    assert text == yaml == Request("m:f", input_size=((2, 16), (2, 16)), dtypes=("long", "long"), roll=True, depth=2)
    assert parse_request("m:f", {"input-size": "1, 3, 224, 224"}).input_size == ((1, 3, 224, 224),)
    assert parse_request("m:f", {"input_size": [1, 3, 8]}).input_size == ((1, 3, 8),)
    assert parse_request("m:f", {"collapse": "false", "depth": "auto"}) == Request("m:f", collapse=False)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input-size": "2, three"}, "input-size must be integers"),
        ({"input_size": [2, -1]}, "non-negative"),
        ({"input_size": [2, True]}, "must be integers"),
        ({"dtypes": "long, banana"}, "unknown dtype 'banana'"),
        ({"depth": "-1"}, "depth must be an integer >= 0 or auto"),
        ({"depth": True}, "depth must be an integer"),
        ({"roll": "maybe"}, "roll must be true or false"),
        ({"mode": "training"}, "mode must be one of train, eval"),
        ({"rankdir": "UP"}, "rankdir must be one of"),
        ({"columns": "layer, colour"}, "unknown column(s) colour"),
        ({"inputs": "no_colon"}, "inputs must be module:attribute"),
        ({"widht": "3"}, "unknown option 'widht'"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], message: str) -> None:
    with pytest.raises(FigureError, match=re.escape(message)):
        parse_request("m:f", options)


def test_the_model_must_be_module_colon_factory() -> None:
    with pytest.raises(FigureError, match="module:factory"):
        parse_request("just_a_name", {})


@given(st.lists(st.lists(st.integers(0, 512), min_size=1, max_size=5), min_size=1, max_size=3))
def test_any_shape_list_round_trips_through_text(shapes: list[list[int]]) -> None:
    text = ", ".join("(" + ", ".join(map(str, s)) + ")" for s in shapes)
    assert parse_request("m:f", {"input-size": text}).input_size == tuple(tuple(s) for s in shapes)


def test_failures_are_one_line_figure_errors(model_module: Path) -> None:
    cases = {
        "nowhere_at_all:make": "cannot import 'nowhere_at_all'",
        "docmodels_under_test:nothing": "has no attribute 'nothing'",
        "docmodels_under_test:CALLS": "is a list, not an nn.Module or a function returning one",
    }
    for target, message in cases.items():
        with pytest.raises(FigureError, match=re.escape(message)) as info:
            make_figure(parse_request(target, {"input-size": "2, 8"}), None)
        assert "\n" not in str(info.value)
    with pytest.raises(FigureError, match=r"forward failed in '0\.0\.a' \(Linear\)"):
        make_figure(parse_request("docmodels_under_test:make", {"input-size": "2, 5"}), None)
    with pytest.raises(FigureError, match="give input-size"):
        make_figure(parse_request("docmodels_under_test:make", {}), None)


@needs_dot
def test_cache_is_used_until_the_model_source_or_options_change(model_module: Path, tmp_path: Path) -> None:
    import docmodels_under_test as m

    cache = tmp_path / "cache"
    request = parse_request("docmodels_under_test:make", {"input-size": "2, 8"})
    first, deps, hit = make_figure(request, cache)
    assert not hit and str(model_module.resolve()) in deps and len(m.CALLS) == 1
    again, _, hit = make_figure(request, cache)
    assert hit and again == first and len(m.CALLS) == 1
    make_figure(parse_request("docmodels_under_test:make", {"input-size": "2, 8", "roll": None}), cache)
    assert len(m.CALLS) == 2  # other options: traced again
    model_module.write_text(MODEL + "\n# edited\n")
    _, _, hit = make_figure(request, cache)
    assert not hit and len(m.CALLS) == 3  # the model's source changed
    for entry in cache.glob("*.json"):
        entry.write_text("{not json")
    figure, _, hit = make_figure(request, cache)
    assert not hit and figure == first  # a damaged entry is traced again (the same figure), not an error


@needs_dot
def test_a_module_edited_after_import_is_not_cached_under_its_new_source(
    model_module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from layerlens import doc_figures

    cache = tmp_path / "cache"
    request = parse_request("docmodels_under_test:make", {"input-size": "2, 8"})
    make_figure(request, cache)
    model_module.write_text(MODEL.replace("relu()).relu()", "relu()).tanh()"))  # in memory: still relu
    stale, _, _ = make_figure(request, cache)
    assert "relu" in stale.dot  # this process still runs the module it imported
    monkeypatch.setattr(doc_figures, "_FIRST_SEEN", {})  # a new process, which imports the edited file
    _, _, hit = make_figure(request, cache)
    assert not hit  # the figure traced from the old module was not filed under the new source


def test_malformed_cache_entries_are_traced_again(model_module: Path, tmp_path: Path) -> None:
    request = parse_request("docmodels_under_test:make", {"input-size": "2, 8"})
    make_figure(request, tmp_path)
    for entry in tmp_path.glob("*.json"):
        entry.write_text('{"figure": {}, "deps": []}')
    assert not make_figure(request, tmp_path)[2]


@needs_dot
def test_default_depth_is_the_deepest_that_fits(model_module: Path) -> None:
    import docmodels_under_test as m

    t = ll.trace(m.make(), torch.randn(2, 8))
    request = Request("docmodels_under_test:make", collapse=False)

    def height(depth: int | None) -> float:
        svg = subprocess.run(["dot", "-Tsvg"], input=t.to_dot(depth=depth, collapse=False), capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        return float(re.search(r'height="([\d.]+)pt"', svg).group(1))  # type: ignore[union-attr]

    full, two = height(None), height(2)
    assert fitting_depth(t, request, height=full + 1) is None  # everything fits
    limit = (full + two) / 2
    chosen = fitting_depth(t, request, height=limit)
    assert chosen is not None and height(chosen) <= limit and (chosen + 1 >= 3 or height(chosen + 1) > limit)
    assert fitting_depth(t, request, height=1) == 1  # nothing fits: the shallowest useful picture


@needs_dot
def test_a_cut_off_diagram_says_so(model_module: Path) -> None:
    figure, _, _ = make_figure(parse_request("docmodels_under_test:make", {"input-size": "2, 8", "depth": 1}), None)
    assert figure.depth_note() == "Drawn to depth 1 of 3."
    whole, _, _ = make_figure(parse_request("docmodels_under_test:make", {"input-size": "2, 8", "depth": 9}), None)
    assert whole.depth_note() == ""


def test_table_cells_keep_the_tree_indentation(model_module: Path) -> None:
    figure, _, _ = make_figure(Request("docmodels_under_test:make", kind="table", input_size=((2, 8),)), None)
    assert figure.headers[0] == "Layer" and figure.rows[-1][0] == "Total"
    nested = [r[0] for r in figure.rows if r[0].startswith("│")]
    assert nested and all("\u00a0" in name and "  " not in name for name in nested)
    assert len(figure.rows) == len(ll.trace(__import__("docmodels_under_test").make(), torch.randn(2, 8))) + 1
