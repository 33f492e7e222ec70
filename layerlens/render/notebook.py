"""How a Trace shows itself in Jupyter: the diagram above the table, sized to
fit the cell (the SVG scales down to the cell's width instead of being cut)."""

from __future__ import annotations

import html

from ..errors import RenderError
from ..trace_data import TraceData
from .dot import dot_source
from .graphviz_run import render_svg
from .table import render_table

# Past this many calls, the notebook diagram collapses to depth 1 (the table has everything).
NOTEBOOK_CALLS = 200


def trace_svg(trace: TraceData) -> str | None:
    """The diagram for a notebook, or None when no Graphviz is installed."""
    try:
        return render_svg(dot_source(trace, depth=1 if len(trace) > NOTEBOOK_CALLS else None))
    except RenderError:
        return None


def trace_html(trace: TraceData) -> str:
    """The diagram (when it can be drawn) above the HTML table."""
    svg = trace_svg(trace)
    if svg is None:
        note = "diagram unavailable: install Graphviz or `pip install torch-layerlens[render]`"
        figure = f"<p><em>{html.escape(note)}</em></p>"
    else:
        figure = f'<div style="max-width:100%;overflow-x:auto">{svg[svg.find("<svg") :]}</div>'
    return f"<div>{figure}{render_table(trace, fmt='html')}</div>"
