"""The README shows real output: the demo block is what `layerlens trace --checks`
prints, and the failure block is what the described change raises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import layerlens as ll
from layerlens.cli import main
from layerlens.models import abc

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def _fenced(lang: str) -> list[str]:
    """Bodies of the README's fenced blocks with this language tag ("" for none)."""
    blocks, body, current = [], [], None
    for line in README.splitlines():
        if line.startswith("```"):
            if current is None:
                current, body = line[3:].strip(), []
            else:
                if current == lang:
                    blocks.append("\n".join(body))
                current = None
        elif current is not None:
            body.append(line)
    return blocks


def _blocks() -> list[str]:
    return _fenced("")


def test_readme_starts_with_the_two_commands() -> None:
    first = _fenced("bash")[0]
    commands = [line.split("#")[0].strip() for line in first.splitlines()]
    assert commands == ["make demo", "make test"]
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "make test" in ci


def _timeless(text: str) -> str:
    return re.sub(r"\d+\.\d s", "N s", text)


def test_demo_blocks_are_real_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quiet"]) == 0
    assert _timeless(capsys.readouterr().out.strip()) == _timeless(_blocks()[0].strip())
    table = (tmp_path / "layerlens-demo" / "table.txt").read_text(encoding="utf-8")
    check_lines = [line for line in table.splitlines() if line.startswith(("✓ ", "✗ "))]
    assert check_lines == _blocks()[1].strip().splitlines()


def test_failure_block_is_real_output() -> None:
    model = abc.build_model()
    model.rnn = nn.RNN(10, 21, num_layers=2, batch_first=True)
    with pytest.raises(ll.TraceError) as info:
        ll.trace(model, abc.encode(["xyzab"] * 64))
    assert f"layerlens.errors.TraceError: {info.value}" == _blocks()[2].strip()
    assert torch.equal(model.embedding.weight[0], torch.zeros(10))
