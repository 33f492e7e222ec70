"""Sphinx configuration of layerlens's documentation (`make docs`).

Sphinx, not MkDocs: the API reference comes from the docstrings (autodoc),
cross-references are checked under `-W`, and LaTeX/PDF output comes for free.
The pages are MyST Markdown; every diagram and table in them is made by
layerlens's own directives when the docs are built.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import layerlens

sys.path.insert(0, str(Path(__file__).resolve().parent))  # models.py: the factories the diagrams trace

project = "layerlens"
author = "the layerlens authors"
copyright = "2026, the layerlens authors"
release = version = layerlens.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "layerlens.sphinx"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"
numfig = True
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "alabaster"
html_title = f"layerlens {release}"
html_theme_options = {"description": "See what every layer of a PyTorch model does.", "page_width": "1100px"}


def _markdown_code(app: object, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    """layerlens's docstrings write code as `x` (Markdown, as on GitHub and in help()):
    make that reStructuredText literal text, and a bare | plain text."""
    text = "\n".join(lines)
    parts = re.split(r"(?<![`\\])`([^`]+?)`(?!`)", text)
    out = []
    for k, part in enumerate(parts):
        if k % 2 == 0:
            out.append(part.replace("|", "\\|").replace("*", "\\*"))
            continue
        glued = k + 1 < len(parts) and parts[k + 1][:1].isalnum()  # `Check`s: end the literal before the s
        out.append(f"``{part}``" + ("\\ " if glued else ""))
    lines[:] = "".join(out).split("\n")


def setup(app: object) -> None:
    app.connect("autodoc-process-docstring", _markdown_code)  # type: ignore[attr-defined]
