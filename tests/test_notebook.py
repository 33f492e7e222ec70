"""What a notebook shows: one HTML output per trace with the SVG once, a
left-aligned table whose tree survives notebook stylesheets, a bounded
zoomable diagram frame, display options, and short rich reprs for records,
summaries, verify reports and watches. (tests/test_browser.py looks at the
same outputs in a real browser.)"""

from __future__ import annotations

import html
import re
import shutil

import pytest
import torch
from torch import nn

import layerlens as ll
from layerlens.models import abc

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")


@pytest.fixture
def abc_trace() -> ll.Trace:
    return ll.trace(abc.build_model(), abc.encode(list(abc.SAMPLE_STRINGS)))


def _cells(page: str, column: int = 0) -> list[str]:
    rows = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>", 1)[1])
    return [html.unescape(re.findall(r"<td[^>]*>(.*?)</td>", row)[column]) for row in rows]


@needs_dot
def test_a_trace_is_one_html_output_with_one_copy_of_its_svg(abc_trace: ll.Trace) -> None:
    ipython = pytest.importorskip("IPython.core.formatters")
    data, _ = ipython.DisplayFormatter().format(abc_trace)
    assert "image/svg+xml" not in data and set(data) == {"text/html", "text/plain"}
    assert data["text/html"].count("<svg") == 1


def test_the_table_is_left_aligned_and_keeps_the_tree_whatever_the_stylesheet(abc_trace: ll.Trace) -> None:
    page = abc_trace._repr_html_()
    tds = re.findall(r"<td style=\"([^\"]*)\"", page)
    assert tds and all("text-align:left" in s and "white-space:pre" in s for s in tds)
    names = [line.split("  ")[0] for line in abc_trace.table().splitlines()[2:]]
    assert _cells(page) == [n.rstrip() for n in names]  # every glyph and space of the tree column, as in text


@needs_dot
def test_large_diagrams_sit_in_a_bounded_scrollable_frame_with_zoom(abc_trace: ll.Trace) -> None:
    page = abc_trace._repr_html_()
    frame = re.search(r"\.ll-frame\{max-height:(\d+)px;overflow:auto", page)
    assert frame is not None and int(frame.group(1)) == 560
    assert [m for m in re.findall(r"<label [^>]*>([^<]+)</label>", page)] == ["fit", "100%", "200%"]
    width = float(re.search(r'<svg[^>]*width="([\d.]+)pt"', page).group(1)) * 4 / 3
    sizes = [float(w) for w in re.findall(r"svg\{width:(\d+)px", page)]
    assert sizes == [pytest.approx(width, abs=1), pytest.approx(2 * width, abs=1)]
    assert "<script" not in page and "http" not in page.split("<svg")[0]  # self-contained, no network


@needs_dot
def test_show_takes_the_display_options(abc_trace: ll.Trace) -> None:
    shallow = abc_trace.show(depth=0)._repr_html_()
    assert _cells(shallow) == ["(root)", "Total"]
    wide = abc_trace.show(rankdir="LR", columns=["layer", "output"], height=300)._repr_html_()
    assert "max-height:300px" in wide and len(re.findall(r"<th ", wide)) == 2
    assert abc_trace.show(depth=1)._repr_html_() != abc_trace._repr_html_()
    for bad, message in (({"depth": -1}, "depth must be"), ({"columns": ["nope"]}, "unknown table column"),
                         ({"height": 0}, "height must be")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            abc_trace.show(**bad)  # type: ignore[arg-type]


def test_records_summaries_reports_and_watches_have_short_reprs_and_html(abc_trace: ll.Trace) -> None:
    record = abc_trace["rnn"]
    assert len(repr(record)) < 160 and "'rnn' RNN" in repr(record) and "checks ✓" in repr(record)
    page = record._repr_html_()
    assert "rnn (RNN)" in page and "✓ rnn_final_state" in page
    summary = abc_trace.summary()
    text = str(summary)
    assert "Total params:" in text and "Forward/backward pass size:" in text and f"{summary.total_params:,}" in text
    assert "Estimated total size" in summary._repr_html_()
    report = ll.verify(abc.build_model(), abc.encode(list(abc.SAMPLE_STRINGS)))
    assert report.summary() in html.unescape(report._repr_html_()) and "<table " in report._repr_html_()

    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with ll.watch(net, every=1, optimizer=opt) as w:
        assert "no sampled step yet" in w._repr_html_()
        for _ in range(2):
            loss = net(torch.randn(8, 4)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    page = w._repr_html_()
    assert "step 2" in page and "Grad norm" in page and "no alerts" in page


def test_every_string_in_the_html_is_escaped() -> None:
    hostile = type("<img src=x onerror=alert(1)>", (nn.Linear,), {})
    t = ll.trace(nn.Sequential(hostile(2, 2)), torch.randn(1, 2))
    for page in (t._repr_html_(), t[1]._repr_html_(), t.summary()._repr_html_()):
        assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in t[1]._repr_html_()


def test_a_trace_pickled_before_traces_had_a_default_depth_still_renders(abc_trace: ll.Trace) -> None:
    import pickle

    state = abc_trace.__getstate__()
    state.pop("depth", None)
    old = ll.Trace.__new__(ll.Trace)
    old.__setstate__(state)
    assert old.depth is None and old.table() == abc_trace.table()
    assert pickle.loads(pickle.dumps(ll.trace(abc.build_model(), abc.encode(["abcde"]), depth=0))).depth == 0
