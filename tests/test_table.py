"""Tables: every call appears once, indented under its parent, with its shapes,
params and checks, in any tabulate format, with a totals row."""

from __future__ import annotations

import html
import re

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

import layerlens as ll
from layerlens.models import abc
from layerlens.render.table_text import cell_text
from tests.conftest import ConvNet, judged_as


@pytest.fixture
def trace(convnet: ConvNet) -> ll.Trace:
    return ll.trace(convnet, torch.randn(2, 4, 32))


def _rows(text: str) -> list[str]:
    return text.splitlines()[2:]  # below the header and its rule


def test_default_table_lists_every_call_with_shapes_params_and_checks(trace: ll.Trace) -> None:
    text = trace.table()
    assert str(trace) == text
    rows = _rows(text)
    assert len(rows) == len(trace) + 1  # plus the totals row
    assert rows[0].startswith("(root)") and "ConvNet" in rows[0]
    conv = next(r for r in rows if "Conv1d" in r)
    assert (
        conv.startswith("│  ├─ 0 ") and "[2, 4, 32]" in conv and "[2, 8, 32]" in conv and "104" in conv and "✓" in conv
    )
    assert rows[-2].startswith("└─ head")
    assert rows[-1].startswith("Total") and "765 (765 trainable)" in rows[-1] and "4/4 ✓" in rows[-1]


def test_totals_count_tied_weights_once_and_trainable_separately() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False), nn.Linear(10, 2))
    model[1].weight = model[0].weight
    model[2].requires_grad_(False)
    t = ll.trace(model, torch.tensor([[1, 2]]))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert (total, trainable) == (40 + 22, 40)
    assert f"{total} ({trainable} trainable)" in _rows(t.table())[-1]


def test_failed_checks_are_named(trace: ll.Trace) -> None:
    class Trimmed(nn.Conv1d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x)[..., :-1]

    with judged_as(Trimmed, nn.Conv1d):
        t = ll.trace(nn.Sequential(Trimmed(1, 1, 3)), torch.randn(1, 1, 9))
    rows = _rows(t.table())
    assert "✗ conv_output_length" in rows[1]
    assert "✗ 1 of 1 failed" in rows[-1]


def test_multiple_outputs_are_all_shown() -> None:
    t = ll.trace(nn.LSTM(3, 4, batch_first=True), torch.randn(2, 5, 3))
    assert "[2, 5, 4], [1, 2, 4], [1, 2, 4]" in t.table()


def test_non_float_dtypes_are_marked() -> None:
    t = ll.trace(abc.build_model(), abc.encode(["xyzab", "qwbert"]))
    assert "[2, 6] int64" in t.table()


@pytest.mark.parametrize(
    ("fmt", "marker"),
    [("github", "|---"), ("html", "<table>"), ("latex", "\\begin{tabular}"), ("grid", "+===")],
)
def test_any_tabulate_format(trace: ll.Trace, fmt: str, marker: str) -> None:
    text = trace.table(fmt=fmt)
    assert marker in text and "Conv1d" in text


def test_depth_limits_the_rows(trace: ll.Trace) -> None:
    rows = _rows(trace.table(depth=1))
    assert [r.split()[0] for r in rows] == ["(root)", "├─", "└─", "Total"]
    assert "8 calls" in rows[-1]


def test_optional_columns(trace: ll.Trace) -> None:
    text = trace.table(columns=["layer", "details", "mean", "std", "zeros", "nonfinite", "train", "dtype"])
    header = text.splitlines()[0]
    for name in ("Details", "Out mean", "Out std", "Out zeros", "Out NaN/Inf", "Mode", "Out dtype"):
        assert name in header
    conv = next(r for r in text.splitlines() if r.startswith("│  ├─ 0"))
    stats = trace["features.0"].outputs[0].stats
    assert stats is not None and f"{stats.mean:.4g}" in conv and "k=3 p=1" in conv


def test_unknown_column_and_format_are_clear_errors(trace: ll.Trace) -> None:
    with pytest.raises(ValueError, match=r"unknown table column.*'shape'.*choose from"):
        trace.table(columns=["layer", "shape"])
    with pytest.raises(ValueError, match="unknown table format 'fancy'"):
        trace.table(fmt="fancy")


def test_warnings_and_errors_follow_the_table() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 1))
    with pytest.raises(ll.TraceError) as info:
        ll.trace(model, torch.randn(2, 3))
    text = info.value.trace.table()
    assert "✗ raised RuntimeError" in text and "error: forward failed in '1' (Linear)" in text


def test_html_repr_for_notebooks(trace: ll.Trace) -> None:
    page = trace._repr_html_()
    assert "<table " in page and page.index("<svg") < page.index("<table ")


class _Hostile(nn.Module):
    """One layer under a name (and a class name) that every format must survive."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.add_module(name, type(name, (nn.Linear,), {})(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return next(iter(self.children()))(x)


_HOSTILE = st.text(min_size=1, max_size=10).filter(lambda s: "." not in s and "\x00" not in s) | st.sampled_from(
    ["<script>alert(1)</script>", "a|b", "a\nb", "\x1b[31mred", "x\ty", "&amp;", "**b**", "\\|"]
)


@settings(max_examples=60, deadline=None)
@given(_HOSTILE)
def test_a_markdown_table_renders_every_name_as_text_in_its_own_cell(name: str) -> None:
    """GitHub/pipe tables go through a real Markdown renderer (markdown-it, as MkDocs
    and Jupyter do): no raw HTML gets through, each call stays one row, and each
    cell reads back as the text it holds (a `|` in a name splits no cell)."""
    from markdown_it import MarkdownIt

    t = ll.trace(_model_named(name), torch.randn(1, 2))
    for fmt in ("github", "pipe"):
        page = MarkdownIt("commonmark").enable("table").render(t.table(fmt=fmt))
        assert "<script" not in page
        rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)
        assert len(rows) == 1 + len(t) + 1  # the header, one per call, the totals
        cells = [
            html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[2], re.S)
        ]
        shown = cell_text(name, "plain").strip()  # (Markdown trims a cell's spaces)
        assert cells[0].endswith(shown) and cells[1] == shown


@settings(max_examples=60, deadline=None)
@given(_HOSTILE)
def test_every_format_keeps_one_line_per_row_and_no_control_characters(name: str) -> None:
    """A newline, tab or ESC in a name would break a row of any format (or drive the
    terminal): it is shown as its escape, and the table keeps one line per call."""
    t = ll.trace(_model_named(name), torch.randn(1, 2))
    plain = t.table(fmt="plain").splitlines()
    assert len(plain) == 1 + len(t) + 1
    tsv = t.table(fmt="tsv").splitlines()
    assert max(len(line.split("\t")) for line in tsv) == len(tsv[0].split("\t"))  # (empty last cells are cut)
    for fmt in ("simple", "github", "grid", "latex_raw", "mediawiki", "jira", "orgtbl", "textile"):
        text = t.table(fmt=fmt)
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text), fmt
        if fmt in ("github", "mediawiki", "textile"):  # read as HTML where they are rendered
            assert "<script" not in text, fmt


def _model_named(name: str) -> nn.Module:
    try:
        return _Hostile(name)
    except KeyError:  # a name torch itself refuses ("__dict__", ...)
        assume(False)
        raise


def test_notes_below_a_markdown_table_are_not_read_as_rows() -> None:
    """GitHub Markdown reads a line right below a table as one more row: a blank line first."""
    from markdown_it import MarkdownIt

    class Loose(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = [nn.Linear(2, 2)]  # unregistered: a warning note below the table

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.hidden[0](x)

    with pytest.warns(ll.LayerlensWarning, match="not registered"):
        t = ll.trace(Loose(), torch.randn(1, 2))
    page = MarkdownIt("commonmark").enable("table").render(t.table(fmt="github"))
    assert len(re.findall(r"<tr>", page)) == 1 + len(t) + 1
    assert "<p>warning:" in page and "not registered" in page.split("</table>")[1]
