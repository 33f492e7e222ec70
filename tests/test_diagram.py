"""Diagrams: the real data flow (parsed back from the DOT), nesting and depth,
labels, failures in red, hostile names, and rendering with both renderers."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import layerlens as ll
from layerlens.models import abc
from layerlens.models.gallery import build_lstm_tagger, build_resnet_like, build_reused_block
from layerlens.render import graphviz_run, notebook
from layerlens.render.graphviz_run import RenderError
from tests.conftest import judged_as

# -- a small DOT reader for our own output ---------------------------------------

_NODE = re.compile(r"^\s*(\w+) \[label=<(.*?)>( .*)?\]$", re.M)
_EDGE = re.compile(r"^\s*(\w+) -> (\w+) \[label=\" (.*?) \"( style=dashed)?\]$", re.M)
_FULL_NAME = re.compile(r'tooltip="([^"(]*?) \([\w.]+\)')
_CLUSTER = re.compile(r"subgraph (cluster_\w+) \{\n\s*(.*)\n")


def _lines(label: str) -> list[str]:
    """The text lines of an HTML-like label, tags removed and entities decoded."""
    return [html.unescape(re.sub(r"<[^>]+>", "", part)).strip() for part in label.split("<BR/>")]


class Dot:
    """Nodes (id -> label text), edges (src, dst, label) and attributes of a DOT text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.labels = {m.group(1): _lines(m.group(2)) for m in _NODE.finditer(text)}
        self.attrs = {m.group(1): m.group(3) or "" for m in _NODE.finditer(text)}
        self.edges = [(m.group(1), m.group(2), m.group(3)) for m in _EDGE.finditer(text)]
        self.dashed = [(m.group(1), m.group(2), m.group(3)) for m in _EDGE.finditer(text) if m.group(4)]
        self.names = {i: m.group(1) for i, a in self.attrs.items() if (m := _FULL_NAME.search(a))}

    def node(self, title: str) -> str:
        """The id of the node with this full module name (its tooltip), or else label title."""
        found = [i for i, name in self.names.items() if name == title]
        found = found or [i for i, lines in self.labels.items() if lines[0] == title]
        assert len(found) == 1, (title, found)
        return found[0]

    def inputs(self, node: str) -> list[str]:
        return [s for s, d, _ in self.edges if d == node]

    def outputs(self, node: str) -> list[str]:
        return [d for s, d, _ in self.edges if s == node]

    def title(self, node: str) -> str:
        """The full module name of a call's node, the label of any other."""
        return self.names.get(node, self.labels[node][0])


def _dot(model: nn.Module, x: object, **options: object) -> Dot:
    return Dot(ll.trace(model, x).to_dot(**options))  # type: ignore[arg-type]


# -- data flow --------------------------------------------------------------------


def test_abc_reshape_sits_between_rnn_and_linear() -> None:
    d = _dot(abc.build_model(), abc.encode(["xyzab", "qwbert"]))
    rnn, reshape, linear = d.node("rnn"), d.node("reshape"), d.node("linear")
    assert d.outputs(rnn) == [reshape] and d.inputs(linear) == [reshape]
    assert d.inputs(d.node("embedding")) == [d.node("x")]  # named after forward(self, x)
    assert d.outputs(linear) == [d.node("output")]
    assert ("c2", "o0", "[2, 6, 20]") in d.edges  # the RNN's output, not its hidden state, flows on
    assert any(lbl == "[2, 6] int64" for _, _, lbl in d.edges)  # dtype shown when not float32


def test_skip_connection_has_two_incoming_edges_at_the_add() -> None:
    model, x = build_resnet_like()
    t = ll.trace(model, x)
    d = Dot(t.to_dot())
    adds = [n for n, lines in d.labels.items() if lines == ["+"]]
    assert len(adds) == 2
    first = adds[0]
    producers = sorted(d.title(p) for p in d.inputs(first))
    assert producers == ["block1.bn2", "block1.shortcut"]  # the identity shortcut is an (empty) Sequential
    second = sorted(d.title(p) for p in d.inputs(adds[1]))
    assert second == ["block2.bn2", "block2.shortcut.1"]
    # the shortcut branches off the stem's output: that relu feeds both conv1 and the shortcut
    stem_out = d.node("stem.2")
    assert sorted(d.title(n) for n in d.outputs(stem_out)) == ["block1.conv1", "block1.shortcut"]


def test_edges_come_from_tensors_not_definition_order() -> None:
    class Backwards(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.last = nn.Linear(4, 2)  # defined first, called last
            self.first = nn.Linear(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.last(self.first(x))

    d = _dot(Backwards(), torch.randn(1, 3))
    assert d.inputs(d.node("last")) == [d.node("first")]


def test_reused_module_shows_each_call_or_rolls_up() -> None:
    model, x = build_reused_block()
    t = ll.trace(model, x)
    d = Dot(t.to_dot(collapse=False))
    assert len(re.findall(r"subgraph cluster_", d.text)) == 4  # the root and three calls of block
    assert {"0", "0 #1", "0 #2"} <= {w[0] for w in d.labels.values()}  # names relative to their cluster
    assert {"block.0", "block.0 #1", "block.0 #2"} <= set(d.names.values())  # full names in the tooltips
    rolled = Dot(t.to_dot(roll=True))
    block0 = rolled.node("block.0")
    assert rolled.labels[block0][0] == "0" and "×3 calls" in " ".join(rolled.labels[block0])
    assert len(re.findall(r"subgraph cluster_", rolled.text)) == 2
    assert sorted(rolled.title(n) for n in rolled.inputs(block0)) == ["+", "+", "inp"]


def test_depth_collapses_modules_with_their_boundary_shapes() -> None:
    model, x = build_resnet_like()
    t = ll.trace(model, x)
    d = Dot(t.to_dot(depth=1))
    titles = {w[0] for w in d.labels.values()}
    assert {"stem", "block1", "block2", "pool", "fc"} <= titles
    assert not any(t.startswith("block1.") for t in titles)
    assert d.inputs(d.node("block2")) == [d.node("block1")]
    assert ("c" in d.node("block2")) and any(lbl == "[8, 32, 32, 32]" for _, _, lbl in d.edges)
    assert "4,608 params" not in d.text and f"{sum(p.numel() for p in model.block2.parameters()):,} params" in d.text
    root_only = Dot(t.to_dot(depth=0))
    assert [w[0] for w in root_only.labels.values()] == ["(root)", "x", "output"]
    assert len(root_only.edges) == 2


def test_functional_ops_appear_and_nothing_stays_installed() -> None:
    class Ops(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.cat([self.a(x), self.b(x)], dim=1).transpose(0, 1)
            return nn.functional.gelu(y[:, -1] @ y[:, 0:2])

    d = _dot(Ops(), torch.randn(3, 4))
    assert {"cat", "transpose", "[:, -1]", "[:, 0:2]", "@", "gelu"} <= {w[0] for w in d.labels.values()}
    cat = d.node("cat")
    assert sorted(d.title(n) for n in d.inputs(cat)) == ["a", "b"]
    assert not torch._C._is_torch_function_mode_enabled()


def test_ops_can_be_left_out() -> None:
    t = ll.trace(abc.build_model(), abc.encode(["xyzab"]), ops=False)
    assert not t.ops and not t.edges
    assert "rnn" in t.to_dot()


def test_dot_is_deterministic() -> None:
    model, x = build_resnet_like()
    assert ll.trace(model, x).to_dot() == ll.trace(model, x.clone()).to_dot()


# -- labels, colours, failures --------------------------------------------------------


def test_labels_carry_name_type_facts_and_params() -> None:
    d = _dot(abc.build_model(), abc.encode(["xyzab"]))
    words = " ".join(d.labels[d.node("rnn")])
    for part in ("rnn", "RNN", "hidden=20", "layers=2", "batch_first", "1,480 params"):
        assert part in words
    tagger = _dot(*build_lstm_tagger())
    assert "p=0.1" in " ".join(tagger.labels[tagger.node("dropout")])
    assert 'fillcolor="#e0d4f7"' in d.attrs[d.node("rnn")]  # the recurrent family's colour


def test_failed_check_is_red_with_its_message_as_tooltip() -> None:
    class Trimmed(nn.Conv1d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x)[..., :-1]

    with judged_as(Trimmed, nn.Conv1d):
        d = _dot(nn.Sequential(Trimmed(1, 1, 3), nn.ReLU()), torch.randn(1, 1, 9))
    attrs = d.attrs[d.node("0")]
    assert 'fillcolor="#ffd8d3"' in attrs and 'color="#d1242f"' in attrs
    assert "conv_output_length" not in attrs and "floor((L_in" in attrs  # the message, in the tooltip
    assert "#ffd8d3" not in d.attrs[d.node("1")]


def test_partial_trace_draws_the_failing_module_red_and_nothing_after() -> None:
    model = abc.build_model()
    model.rnn = nn.RNN(10, 21, num_layers=2, batch_first=True)
    with pytest.raises(ll.TraceError) as info:
        ll.trace(model, abc.encode(["xyzab"] * 4))
    d = Dot(info.value.trace.to_dot())
    linear = d.node("linear")
    assert "#ffd8d3" in d.attrs[linear] and "raised RuntimeError" in d.attrs[linear]
    assert d.inputs(linear) == [d.node("reshape")]
    assert not d.outputs(linear) and "output" not in {w[0] for w in d.labels.values()}


@pytest.mark.parametrize(
    "name", ['<b>"bold"</b>', "a\nb", "x{y}|z", 'q" fillcolor="red', "back\\slash\\N", "-> c9", "&amp;"]
)
def test_hostile_module_names_cannot_break_the_dot(name: str, tmp_path: Path) -> None:
    model = nn.Sequential()
    model.add_module(name, nn.Linear(2, 2))
    model.add_module("after", nn.ReLU())
    t = ll.trace(model, torch.randn(1, 2))
    d = Dot(t.to_dot())
    assert len(d.edges) == 3  # x -> layer -> after -> output: nothing injected or cut
    assert 'fillcolor="red"' not in d.text
    node = next(n for n in d.labels if n.startswith("c") and n != d.node("after"))
    assert d.inputs(d.node("after")) == [node]
    if shutil.which("dot"):
        t.render(tmp_path / "hostile.svg")  # Graphviz accepts it, without a warning
        assert (tmp_path / "hostile.svg").read_text().startswith("<?xml")


def test_huge_graphs_suggest_depth() -> None:
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(450)])
    t = ll.trace(model, torch.randn(1, 4), values=None)
    with pytest.warns(ll.LayerlensWarning, match="452 nodes: pass depth=1"):
        t.to_dot()
    small = Dot(t.to_dot(depth=0))  # no warning here: the test config turns warnings into errors
    assert [lines[0] for lines in small.labels.values()] == ["(root)", "input", "output"]


def test_bad_options() -> None:
    t = ll.trace(nn.Linear(2, 2), torch.randn(1, 2))
    with pytest.raises(ValueError, match="rankdir"):
        t.to_dot(rankdir="UP")
    with pytest.raises(ValueError, match="depth"):
        t.to_dot(depth=-1)
    with pytest.raises(ValueError, match=r"writes \.svg, \.png, \.pdf, \.dot or \.gv"):
        t.render("diagram.jpg")


def test_rankdir_and_graph_object() -> None:
    t = ll.trace(abc.build_model(), abc.encode(["xyzab"]))
    assert "rankdir=LR" in t.to_dot(rankdir="LR")
    g = t.graph()
    assert g.source == t.to_dot()


def test_loaded_trace_draws_the_same() -> None:
    model, x = build_resnet_like()
    t = ll.trace(model, x)
    assert ll.load_trace(t.to_json()).to_dot() == t.to_dot()


# -- rendering ----------------------------------------------------------------------

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")
needs_pure = pytest.mark.skipif(
    graphviz_run._beside_python("graphviz-pure") is None and shutil.which("graphviz-pure") is None,
    reason="graphviz-pure not installed",
)


@pytest.fixture
def resnet_trace() -> ll.Trace:
    model, x = build_resnet_like()
    return ll.trace(model, x)


@needs_dot
@pytest.mark.parametrize("suffix", [".svg", ".png", ".pdf", ".dot", ".gv"])
def test_render_with_dot(resnet_trace: ll.Trace, tmp_path: Path, suffix: str) -> None:
    path = resnet_trace.render(tmp_path / f"model{suffix}")
    data = path.read_bytes()
    magic = {".svg": b"<?xml", ".png": b"\x89PNG", ".pdf": b"%PDF", ".dot": b"digraph", ".gv": b"digraph"}
    assert data.startswith(magic[suffix])
    if suffix == ".svg":
        assert "block1.conv1" in data.decode()


@needs_pure
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_render_with_graphviz_pure(resnet_trace: ll.Trace, fmt: str) -> None:
    command = graphviz_run.find_renderer(fmt, prefer="graphviz-pure")
    assert Path(command[0]).name == "graphviz-pure"
    data = graphviz_run.run(resnet_trace.to_dot(), fmt, command)
    assert data.startswith(b"<?xml" if fmt == "svg" else b"\x89PNG")


@needs_pure
def test_falls_back_to_graphviz_pure_without_dot(
    resnet_trace: ll.Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(graphviz_run.shutil, "which", lambda name: None if name == "dot" else real_which(name))
    path = resnet_trace.render(tmp_path / "m.svg")
    assert b"block2.conv1" in path.read_bytes()
    with pytest.raises(RenderError, match="graphviz-pure writes svg and png"):
        resnet_trace.render(tmp_path / "m.pdf")


def test_without_any_renderer_render_fails_first_and_to_dot_still_works(
    resnet_trace: ll.Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graphviz_run.shutil, "which", lambda name: None)
    monkeypatch.setattr(graphviz_run, "_beside_python", lambda name: None)

    def no_work(*args: object, **kwargs: object) -> str:
        raise AssertionError("the DOT was built before the renderer was checked")

    monkeypatch.setattr(ll.Trace, "to_dot", no_work)
    with pytest.raises(RenderError, match=r"pip install torch-layerlens\[render\]"):
        resnet_trace.render(tmp_path / "m.svg")
    assert not (tmp_path / "m.svg").exists()
    monkeypatch.undo()
    assert resnet_trace.to_dot().startswith("digraph")
    monkeypatch.setattr(graphviz_run.shutil, "which", lambda name: None)
    monkeypatch.setattr(graphviz_run, "_beside_python", lambda name: None)
    assert notebook.trace_svg(resnet_trace) is None
    assert "diagram unavailable" in resnet_trace._repr_html_()


@needs_dot
def test_notebook_display_is_svg_that_fits_the_cell(resnet_trace: ll.Trace) -> None:
    svg = notebook.trace_svg(resnet_trace)
    assert svg is not None and 'style="max-width:100%;height:auto"' in svg
    page = resnet_trace._repr_html_()
    assert page.index("<svg") < page.index("<table ")


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
def test_svg_carries_tooltips_as_titles_without_links_so_themes_cannot_underline_labels() -> None:
    import xml.etree.ElementTree as ET

    t = ll.trace(abc.build_model(), abc.encode(list(abc.SAMPLE_STRINGS)))
    svg = t.svg()
    root = ET.fromstring(svg.split("\n", 3)[-1] if svg.startswith("<?xml") else svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert not list(root.iter(f"{ns}a")), "no link elements"
    assert "layerlens-diagram" in root.get("class", "") and "text-decoration:none" in svg
    tips = {html.unescape(m) for m in re.findall(r'tooltip="([^"]*)"', t.to_dot())}
    titles = {el.text for el in root.iter(f"{ns}title")}
    assert {tip.replace("\\n", "\n").replace("\\\\", "\\") for tip in tips} <= titles
