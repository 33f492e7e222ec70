"""JSON: a lossless round trip (full values via an .npz beside the file), strict
JSON, and clear errors for anything that is not a layerlens trace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import layerlens as ll
from tests.conftest import Tagger


def _rich_trace() -> ll.Trace:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.5), nn.LSTM(4, 2))
    t = ll.trace(model, torch.randn(5, 3))
    return t


def test_round_trip_is_lossless(tagger: Tagger) -> None:
    t = ll.trace(tagger, torch.randint(0, 20, (2, 7)), kwargs={"mask": torch.ones(2, 7)})
    back = ll.load_trace(t.to_json())
    assert back == t
    assert back.records == t.records
    assert back["lstm"].details == t["lstm"].details
    assert back.checks == t.checks
    assert back.table() == t.table()


def test_round_trip_with_non_finite_values_is_strict_json() -> None:
    x = torch.tensor([1.0, float("nan"), float("inf")])
    t = ll.trace(nn.Identity(), x)
    text = t.to_json()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    back = ll.load_trace(text)
    s = back[0].inputs[0].stats
    assert s is not None and np.isnan(s.mean) and s.nan_count == 1 and s.inf_count == 1


def test_save_and_load_full_values(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    t = ll.trace(model, torch.randn(5, 3), values="full")
    path = t.save(tmp_path / "trace.json")
    assert (tmp_path / "trace.npz").is_file()
    back = ll.load_trace(path)
    assert back == t
    for r, s in zip(t, back, strict=True):
        for a, b in zip(r.outputs, s.outputs, strict=True):
            np.testing.assert_array_equal(a.value, b.value)  # type: ignore[arg-type]
    assert json.loads(path.read_text())["records"][1]["outputs"][0]["value"] == "r1.out0"
    assert ll.load_trace(str(path)) == t


def test_schema_is_versioned_and_documented() -> None:
    doc = json.loads(_rich_trace().to_json())
    assert doc["schema"] == "layerlens.trace/1"
    docs = (Path(__file__).parents[1] / "docs" / "json-schema.md").read_text()
    record_fields = set(doc["records"][0])
    tensor_fields = set(doc["records"][0]["inputs"][0])
    for field in (*doc, *doc["meta"], *record_fields, *tensor_fields):
        assert f"`{field}`" in docs, f"{field} is not documented"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"a": 1}', "no 'schema' field"),
        ('{"schema": "torchinfo/2"}', "unsupported schema 'torchinfo/2'"),
        ("[1, 2]", "not a layerlens trace"),
    ],
)
def test_foreign_or_malformed_json(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ll.load_trace(text)


def test_missing_and_mistyped_fields_are_named() -> None:
    doc = json.loads(_rich_trace().to_json())
    del doc["records"][1]["outputs"][0]["shape"]
    with pytest.raises(ValueError, match=r"missing field 'records\[1\]\.outputs\[0\]\.shape'"):
        ll.load_trace(json.dumps(doc))
    doc = json.loads(_rich_trace().to_json())
    doc["records"][2]["depth"] = "one"
    with pytest.raises(ValueError, match=r"'records\[2\]\.depth' should be an integer, got str"):
        ll.load_trace(json.dumps(doc))
    doc = json.loads(_rich_trace().to_json())
    del doc["meta"]["total_params"]
    with pytest.raises(ValueError, match=r"missing field 'meta\.total_params'"):
        ll.load_trace(json.dumps(doc))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither JSON text nor an existing file"):
        ll.load_trace(tmp_path / "nope.json")


def test_loading_never_unpickles(tmp_path: Path) -> None:
    """An .npz holding a pickled object array is refused, not executed."""
    t = ll.trace(nn.Identity(), torch.ones(2), values="full")
    path = t.save(tmp_path / "t.json")
    np.savez(tmp_path / "t.npz", **{"r0.in0": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="pickle"):
        ll.load_trace(path)


def test_partial_trace_round_trips() -> None:
    with pytest.raises(ll.TraceError) as info:
        ll.trace(nn.Sequential(nn.Linear(2, 3), nn.Linear(4, 1)), torch.ones(1, 2))
    partial = info.value.trace
    back = ll.load_trace(partial.to_json())
    assert back == partial and back.error == partial.error and not back.ok
