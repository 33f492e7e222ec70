"""The docs cannot rot: every ```python block in README.md and docs/*.md runs
(blocks of one page share a namespace, in order), and a plain ``` block right
after a python block must be exactly what that block printed."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block, in order."""
    blocks, body, lang = [], [], None
    for line in text.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, body = line[3:].strip(), []
            else:
                blocks.append((lang, "\n".join(body)))
                lang = None
        elif lang is not None:
            body.append(line)
    return blocks


class MyLayer(nn.Module):
    """The layer the docs' custom-inspector snippets talk about."""

    def __init__(self, gain: float = 2.0) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


def _namespace() -> dict[str, object]:
    import layerlens
    from layerlens.models import abc

    return {
        "torch": torch,
        "nn": nn,
        "layerlens": layerlens,
        "ll": layerlens,
        "model": abc.build_model(),
        "x": abc.encode(["xyzab", "qwbert"]),
        "MyLayer": MyLayer,
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_code_runs_and_prints_what_it_shows(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = _namespace()
    blocks = _blocks(page.read_text(encoding="utf-8"))
    ran = 0
    for i, (lang, body) in enumerate(blocks):
        if lang != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(body, f"{page.name}[{i}]", "exec"), namespace)
        ran += 1
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        if following is not None and following[0] == "":
            assert out.getvalue().rstrip() == following[1].rstrip(), f"{page.name}: block {i} prints otherwise"
    if page.name in ("README.md", "getting-started.md", "abc-walkthrough.md", "diagrams.md", "checks.md"):
        assert ran, f"{page.name} has no python block"
    import layerlens

    layerlens.unregister(MyLayer)
