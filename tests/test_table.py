"""Tables: every call appears once, indented under its parent, with its shapes,
params and checks, in any tabulate format, with a totals row."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerlens as ll
from layerlens.models import abc
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
