"""Small HTML pieces for notebook displays: a table and a list of facts that
notebook stylesheets cannot right-align or re-flow.

JupyterLab and the classic notebook right-align table cells and collapse
whitespace, which breaks the tree column's `├─` glyphs; every cell here says
its alignment and whitespace inline (inline styles win over stylesheets).
Every string is escaped, whatever its source. No layerlens imports: records,
reports and renderers all use it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

_FONT = "font-family:var(--jp-code-font-family,SFMono-Regular,Menlo,Consolas,monospace);font-size:12px"
_CELL = f"text-align:left;vertical-align:top;padding:1px 12px 1px 0;white-space:pre;{_FONT}"
_WRAP = f"{_CELL};white-space:pre-wrap;overflow-wrap:anywhere"  # long messages wrap inside the cell
_HEAD = f"{_CELL};font-weight:600;border-bottom:1px solid #d0d7de"
_TABLE = "border-collapse:collapse;margin:0 0 6px 0;width:auto;max-width:none"


def text(value: object) -> str:
    """`value` as escaped HTML text (quotes included, for attributes too)."""
    return html.escape(str(value), quote=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], css_class: str = "layerlens-table") -> str:
    """A left-aligned table whose cells keep their whitespace."""
    head = "".join(f'<th style="{_HEAD}">{text(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="{_CELL}">{text(c)}</td>' for c in row) + "</tr>" for row in rows)
    inner = (
        f'<table class="{text(css_class)}" style="{_TABLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )
    return f'<div style="overflow-x:auto;max-width:100%">{inner}</div>'  # a wide table scrolls, the page does not


def facts(title: str, pairs: Iterable[tuple[str, str]]) -> str:
    """A titled two-column list: one fact per row."""
    rows = "".join(
        f'<tr><td style="{_CELL};color:#57606a">{text(k)}</td><td style="{_WRAP}">{text(v)}</td></tr>' for k, v in pairs
    )
    return f'<div><strong>{text(title)}</strong><table style="{_TABLE}"><tbody>{rows}</tbody></table></div>'


def notes(lines: Iterable[str]) -> str:
    """Lines below a table (warnings, errors), each kept as written."""
    return "".join(f'<div style="white-space:pre-wrap;{_FONT}">{text(line)}</div>' for line in lines)
