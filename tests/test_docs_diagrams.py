"""The committed docs diagrams are golden files: their DOT must be what the
current code draws (regenerate with `make docs-diagrams`, review, commit)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

DOCS = Path(__file__).parents[1] / "docs"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


GEN = _generator()


@pytest.mark.parametrize("example", GEN.EXAMPLES, ids=lambda e: e.name)
def test_committed_dot_is_current(example: object) -> None:
    committed = (DOCS / "diagrams" / f"{example.name}.dot").read_text(encoding="utf-8")  # type: ignore[attr-defined]
    assert GEN.dot_of(example) == committed, "stale diagram: run `make docs-diagrams`, review, commit"


@pytest.mark.parametrize("example", GEN.EXAMPLES, ids=lambda e: e.name)
def test_committed_page_is_current_and_links_its_svg(example: object) -> None:
    name = example.name  # type: ignore[attr-defined]
    page = (DOCS / "examples" / f"{name}.md").read_text(encoding="utf-8")
    assert GEN.page_of(example, GEN.trace_of(example)) == page, "stale page: run `make docs-diagrams`"
    assert page.index(f"../diagrams/{name}.svg") < page.index("| Layer")  # the diagram above its table
    assert (DOCS / "diagrams" / f"{name}.svg").is_file()
