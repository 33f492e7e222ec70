"""The README shows real output: the demo block is what `layerlens trace --checks`
prints, and the failure block is what the described change raises."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import layerlens as ll
from layerlens.cli import main
from layerlens.examples import abc

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


def test_demo_block_is_real_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "--checks"]) == 0
    assert capsys.readouterr().out.strip() == _blocks()[0].strip()


def test_failure_block_is_real_output() -> None:
    model = abc.build_model()
    model.rnn = nn.RNN(10, 21, num_layers=2, batch_first=True)
    with pytest.raises(ll.TraceError) as info:
        ll.trace(model, abc.encode(["xyzab"] * 64))
    assert f"layerlens.errors.TraceError: {info.value}" == _blocks()[1].strip()
    assert torch.equal(model.embedding.weight[0], torch.zeros(10))
