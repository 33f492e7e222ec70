"""How a Trace shows itself in Jupyter: the diagram in a bounded, scrollable,
zoomable frame above a left-aligned table, as one HTML output holding one copy
of the SVG. Self-contained: no script, no network; the zoom is CSS radio buttons,
so it works wherever the output's HTML and styles are shown."""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Sequence
from typing import Any

from .. import html_blocks
from ..errors import RenderError
from ..trace_data import TraceData
from .dot import dot_source
from .graphviz_run import render_svg
from .table import table_cells

# Past this many calls, the notebook diagram collapses to depth 1 (the table has everything).
NOTEBOOK_CALLS = 200
FRAME_HEIGHT = 560  # px: a taller diagram scrolls inside its frame
_ZOOMS = (("fit", None), ("100%", 1.0), ("200%", 2.0))
_COUNTER = itertools.count()


def trace_svg(trace: TraceData, depth: int | None = None, **drawing: Any) -> str | None:
    """The diagram for a notebook, or None when no Graphviz is installed."""
    depth = trace.shown_depth(depth)
    if depth is None and len(trace) > NOTEBOOK_CALLS:
        depth = 1
    try:
        return render_svg(dot_source(trace, depth=depth, **drawing))
    except RenderError:
        return None


def trace_html(
    trace: TraceData,
    depth: int | None = None,
    columns: Sequence[str] | None = None,
    height: int = FRAME_HEIGHT,
    **drawing: Any,
) -> str:
    """The framed diagram (when it can be drawn) above the HTML table."""
    svg = trace_svg(trace, depth, **drawing)
    if svg is None:
        note = "diagram unavailable: install Graphviz or `pip install torch-layerlens[render]`"
        figure = f"<p><em>{html_blocks.text(note)}</em></p>"
    else:
        figure = framed(svg[svg.find("<svg") :], height)
    cells = table_cells(trace, columns, trace.shown_depth(depth))
    table = html_blocks.table(cells.headers, cells.rows) + html_blocks.notes(cells.notes)
    return f'<div class="layerlens-trace">{figure}{table}</div>'


def framed(svg: str, height: int = FRAME_HEIGHT) -> str:
    """The SVG in a frame at most `height` px tall that scrolls both ways, with
    fit / 100% / 200% zoom buttons."""
    uid = f"ll{next(_COUNTER)}{secrets.token_hex(3)}"
    width = _natural_width_px(svg)
    rules = [f"#{uid} .ll-frame{{max-height:{int(height)}px;overflow:auto;border:1px solid #d0d7de;padding:4px}}"]
    buttons = []
    for k, (label, zoom) in enumerate(_ZOOMS):
        if zoom is None or width is None:
            size = "max-width:100%!important"
        else:
            size = f"width:{width * zoom:.0f}px!important;max-width:none!important"
        rules.append(f"#{uid}-z{k}:checked~.ll-frame svg{{{size}}}")
        checked = " checked" if k == 0 else ""
        buttons.append(
            f'<input type="radio" name="{uid}-zoom" id="{uid}-z{k}"{checked} style="margin:0 2px 0 8px">'
            f'<label for="{uid}-z{k}" style="font-size:12px;cursor:pointer">{label}</label>'
        )
    style = "<style>" + "".join(rules) + "</style>"
    return f'<div id="{uid}" class="layerlens-figure">{style}{"".join(buttons)}<div class="ll-frame">{svg}</div></div>'


def _natural_width_px(svg: str) -> float | None:
    """The width Graphviz gave the SVG, in CSS px (it writes pt)."""
    found = re.search(r'<svg[^>]*?\swidth="([\d.]+)(pt|px)?"', svg)
    if found is None:
        return None
    value = float(found.group(1))
    return value * 4 / 3 if found.group(2) in (None, "pt") else value


class TraceView:
    """What `Trace.show(...)` returns: the trace displayed with these options."""

    def __init__(self, trace: TraceData, depth: int | None, columns: Sequence[str] | None, height: int, **drawing: Any):
        self._trace = trace
        self._depth = depth
        self._columns = columns
        self._height = height
        self._drawing = drawing

    def _repr_html_(self) -> str:
        return trace_html(self._trace, self._depth, self._columns, self._height, **self._drawing)

    def __repr__(self) -> str:
        return f"<view of {self._trace!r}>"
