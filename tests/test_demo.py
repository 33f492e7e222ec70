"""`layerlens demo`: trains (or reuses) the abc model, traces it, writes its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerlens.cli import main


def test_demo_writes_everything_and_reuses_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "├─ rnn" in printed and "accuracy on 2,000 fresh strings: " in printed
    for name in ("abc_model.pt", "abc_vocab.json", "training_curve.csv", "table.txt", "table.md", "trace.json",
                 "diagram.dot", "predictions.md"):  # fmt: skip
        assert (out / name).is_file(), name
        assert f"wrote {out / name}" in printed
    assert json.loads((out / "trace.json").read_text())["schema"] == "layerlens.trace/1"
    assert (out / "table.md").read_text().startswith("| Layer")
    assert "| xyzab | 0 |" in (out / "predictions.md").read_text()
    weights = (out / "abc_model.pt").stat().st_mtime_ns
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    assert "reused the model saved in the output folder" in capsys.readouterr().out
    assert (out / "abc_model.pt").stat().st_mtime_ns == weights


def test_demo_reports_a_broken_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "abc_model.pt").write_bytes(b"junk")
    (out / "abc_vocab.json").write_text('{"vocab": [], "seq_len": 6}')
    assert main(["demo", "--out", str(out), "--quiet"]) == 2
    assert "does not describe this model's vocabulary" in capsys.readouterr().err
