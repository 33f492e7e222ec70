"""Tabulate text that is safe in the format it lands in.

Every cell layerlens prints is plain text (a module name, a class name, a
message), whatever its source: a model's names can hold a newline, a `|` or
`<script>`. So each cell is escaped for its format: control characters
shown as escapes (a newline or tab would break the row of every format, an
ESC would drive the terminal), `|` escaped where it separates cells, HTML
escaped where the format's readers render HTML (Markdown, MediaWiki,
Textile), Markdown's inline syntax escaped in Markdown, and the "raw"/"unsafe"
formats rendered as their escaping twins.
"""

from __future__ import annotations

import html
import inspect
import re
from collections.abc import Sequence

import tabulate as _tabulate

# formats whose cells tabulate escapes itself, used instead of their raw twins
_ESCAPING_TWIN = {"unsafehtml": "html", "latex_raw": "latex"}
# where `|` separates cells, what stands for a `|` inside one (Markdown's own escapes below)
_BAR = {
    "asciidoc": "\\|", "jira": "\\|",
    "mediawiki": "&#124;", "textile": "&#124;",
    "moinmoin": "¦", "orgtbl": "¦", "youtrack": "¦",
}  # fmt: skip
# formats whose readers render HTML written into them (GitHub, MkDocs, Jupyter, wikis)
_RENDERS_HTML = {"github", "pipe", "mediawiki", "textile"}
# a blank line ends a Markdown table: a note right below it would be read as one more row
_MARKDOWN = {"github", "pipe"}
# Markdown's inline syntax, backslash-escaped so that a name `*x*` or `[x](javascript:...)`
# is text, not markup: code, emphasis and strikethrough marks, the cell separator, a `(`
# right after a `]` (an inline link or image), and an `_` that is not inside a word (one
# inside, as in `down_proj`, marks nothing and stays as it is; so do shapes' brackets)
_MARKDOWN_SYNTAX = re.compile(r"[\\`*~|]|(?<=\])\(|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PRESERVE = "preserve_whitespace" in inspect.signature(_tabulate.tabulate).parameters


def tabulate_text(rows: Sequence[Sequence[str]], headers: Sequence[str], fmt: str) -> str:
    """`tabulate(rows, headers, fmt)` with every cell escaped for `fmt` (and kept as text)."""
    fmt = _ESCAPING_TWIN.get(fmt, fmt)
    cells = [[cell_text(c, fmt) for c in row] for row in rows]
    heads = [cell_text(h, fmt) for h in headers]
    if _PRESERVE:
        return _tabulate.tabulate(cells, headers=heads, tablefmt=fmt, disable_numparse=True, preserve_whitespace=True)
    old = _tabulate.PRESERVE_WHITESPACE
    _tabulate.PRESERVE_WHITESPACE = True
    try:
        return _tabulate.tabulate(cells, headers=heads, tablefmt=fmt, disable_numparse=True)
    finally:
        _tabulate.PRESERVE_WHITESPACE = old


def check_format(fmt: str) -> None:
    """A ValueError for a table format tabulate does not know (every table layerlens prints)."""
    if fmt not in _tabulate.tabulate_formats:
        raise ValueError(f"unknown table format {fmt!r}; tabulate knows {', '.join(_tabulate.tabulate_formats)}")


def cell_text(text: object, fmt: str) -> str:
    """One cell's text, safe inside a `fmt` table."""
    s = _CONTROL.sub(_escaped, str(text))
    if fmt in _RENDERS_HTML:
        s = html.escape(s, quote=False)
    if fmt in _MARKDOWN:
        return _MARKDOWN_SYNTAX.sub(_backslashed, s)
    bar = _BAR.get(fmt)
    return s.replace("|", bar) if bar is not None else s


def note_lines(notes: Sequence[str], fmt: str) -> list[str]:
    """Notes printed below a `fmt` table: paragraphs below an HTML table, HTML
    escaped where it would be rendered, after a blank line in Markdown (where a
    line right below a table is one more row)."""
    if not notes:
        return []
    if _ESCAPING_TWIN.get(fmt, fmt) == "html":
        return [f"<p>{html.escape(n)}</p>" for n in notes]
    if fmt in _RENDERS_HTML:
        notes = [html.escape(n, quote=False) for n in notes]
    if fmt in _MARKDOWN:
        return ["", *(_MARKDOWN_SYNTAX.sub(_backslashed, n) for n in notes)]
    return list(notes)


def _backslashed(match: re.Match[str]) -> str:
    return "\\" + match.group()


def _escaped(match: re.Match[str]) -> str:
    """A control character as the escape Python would write for it (`\\n`, `\\x1b`)."""
    return repr(match.group())[1:-1]
