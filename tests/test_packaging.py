"""The distribution a user installs: a name nobody else holds, the licence, and
install instructions that name it."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import layerlens as ll

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "torch-layerlens"  # `layerlens` on PyPI is another author's project


def test_the_installed_distribution_is_torch_layerlens() -> None:
    meta = metadata.metadata(DISTRIBUTION)
    assert metadata.version(DISTRIBUTION) == ll.__version__
    assert "License :: OSI Approved :: MIT License" in meta.get_all("Classifier", [])
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_every_install_instruction_names_the_distribution() -> None:
    wrong = re.compile(r"pip install (layerlens)\b(?!-)|`layerlens\[")
    files = [*ROOT.joinpath("layerlens").rglob("*.py"), *ROOT.joinpath("docs").glob("*.md"), ROOT / "README.md"]
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in files for m in wrong.finditer(p.read_text("utf-8"))]
    assert not found, found
