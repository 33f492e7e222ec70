"""How a Trace shows itself in Jupyter: the diagram above the table, sized to
fit the cell (the SVG scales down to the cell's width instead of being cut)."""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

from .graphviz_run import RenderError

if TYPE_CHECKING:
    from ..result import Trace

# Past this many calls, the notebook diagram collapses to depth 1 (the table has everything).
NOTEBOOK_CALLS = 200


def fit_svg(svg: str) -> str:
    """Let an SVG shrink to its container: keep its natural size as a maximum."""
    return re.sub(
        r"<svg ([^>]*?)width=\"([^\"]+)\" height=\"([^\"]+)\"",
        r'<svg \1width="\2" height="\3" style="max-width:100%;height:auto"',
        svg,
        count=1,
    )


def trace_svg(trace: Trace) -> str | None:
    """The diagram for a notebook, or None when no Graphviz is installed."""
    try:
        return trace.svg(depth=1 if len(trace) > NOTEBOOK_CALLS else None)
    except RenderError:
        return None


def trace_html(trace: Trace) -> str:
    """The diagram (when it can be drawn) above the HTML table."""
    svg = trace_svg(trace)
    if svg is None:
        note = "diagram unavailable: install Graphviz or `pip install layerlens[render]`"
        figure = f"<p><em>{html.escape(note)}</em></p>"
    else:
        figure = f'<div style="max-width:100%;overflow-x:auto">{svg[svg.find("<svg") :]}</div>'
    return f"<div>{figure}{trace.table(fmt='html')}</div>"
