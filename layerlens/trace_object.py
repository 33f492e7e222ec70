"""`Trace`: a trace's data with its output methods (tables, diagrams, JSON,
notebook display), and `load_trace` to read a saved one back.

This is the top of the output side: records -> `TraceData` -> renderers ->
`Trace`. Renderers read `TraceData` only, so nothing below depends on this.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import graphviz
from typing_extensions import Unpack

from .render import json_doc, notebook
from .render.dot import DrawOptions, dot_source, to_digraph
from .render.graphviz_run import FORMATS, find_renderer, render_svg, run, with_dpi
from .render.table import render_table
from .trace_data import Summary, TraceData, TraceMeta

__all__ = ["Summary", "Trace", "TraceMeta", "load_trace"]


class Trace(TraceData):
    """A sequence of `LayerRecord`, one per module call, in call-start order,
    with its table, diagram and JSON."""

    def table(self, fmt: str = "simple", columns: Sequence[str] | None = None, depth: int | None = None) -> str:
        """The records as a table (any `tabulate` format) with a totals row."""
        return render_table(self, fmt=fmt, columns=columns, depth=self.shown_depth(depth))

    def to_json(self, indent: int | None = 1) -> str:
        """The trace as JSON (schema `layerlens.trace/1`), without full values."""
        return json_doc.dumps(self, indent=indent)

    def save(self, path: str | Path) -> Path:
        """Write the JSON to `path`; full values, if any, to an `.npz` beside it."""
        return json_doc.save(self, Path(path))

    def to_dot(self, depth: int | None = None, **drawing: Unpack[DrawOptions]) -> str:
        """The data-flow diagram as Graphviz DOT text (no Graphviz needed).

        `depth` collapses everything below that depth into one node per module;
        `rankdir` is "TB" (top to bottom) or "LR"; `roll` draws each reused
        module once, with its call count; `collapse` (default True) draws a run
        of identical blocks once, marked "× n"; `bookkeeping=True` also draws the
        ops that only compute masks, positions or shapes.
        """
        return dot_source(self, depth=self.shown_depth(depth), **drawing)

    def graph(self, depth: int | None = None, **drawing: Unpack[DrawOptions]) -> graphviz.Digraph:
        """The data-flow diagram as a `graphviz.Digraph` (options as for `to_dot`)."""
        return to_digraph(self, depth=self.shown_depth(depth), **drawing)

    def render(
        self,
        path: str | Path,
        depth: int | None = None,
        *,
        dpi: float | None = None,
        scale: float | None = None,
        **drawing: Unpack[DrawOptions],
    ) -> Path:
        """Write the diagram to `path`: `.svg`, `.png`, `.pdf`, or `.dot`/`.gv` (DOT text).

        A `.png` is drawn at `dpi` (Graphviz's default 96), or `scale` times that
        (`scale=2` for sharp images on HiDPI screens). Uses Graphviz's `dot`, or
        `graphviz-pure` when `dot` is missing; raises `RenderError` saying how to
        get one (before doing any work) when neither is there.
        """
        target = Path(path)
        suffix = target.suffix.lower()
        if suffix not in (*FORMATS, ".dot", ".gv"):
            raise ValueError(
                f"render() writes .svg, .png, .pdf, .dot or .gv, not {suffix or 'a path without suffix'!r}"
            )
        if (dpi is not None or scale is not None) and suffix != ".png":
            raise ValueError(f"dpi and scale apply to a .png, not to {suffix}")
        command = find_renderer(FORMATS[suffix]) if suffix in FORMATS else None
        source = with_dpi(self.to_dot(depth=depth, **drawing), dpi, scale)
        if command is None:
            target.write_text(source, encoding="utf-8")
        else:
            target.write_bytes(run(source, FORMATS[suffix], command))
        return target

    def svg(self, depth: int | None = None, **drawing: Unpack[DrawOptions]) -> str:
        """The diagram as SVG text, sized to fit its container (width at most 100%)."""
        return render_svg(self.to_dot(depth=depth, **drawing))

    def __str__(self) -> str:
        return self.table()

    def show(
        self,
        depth: int | None = None,
        columns: Sequence[str] | None = None,
        height: int = notebook.FRAME_HEIGHT,
        **drawing: Unpack[DrawOptions],
    ) -> notebook.TraceView:
        """The notebook display with these options: `t.show(depth=1, rankdir="LR")`
        as a cell's last line. `height` bounds the diagram's frame (px); it scrolls."""
        self.table(columns=columns, depth=depth)  # bad options fail here, not inside the notebook's display
        if isinstance(height, bool) or not isinstance(height, int) or height < 50:
            raise ValueError(f"height must be an int >= 50 (px), got {height!r}")
        return notebook.TraceView(self, depth, columns, height, **drawing)

    def _repr_html_(self) -> str:
        """One HTML output: the framed diagram and the table (the SVG once, not also as image/svg+xml)."""
        return notebook.trace_html(self)


def load_trace(source: str | Path) -> Trace:
    """A Trace from JSON text or from the path of a saved trace (with its `.npz`)."""
    return json_doc.load(source, Trace)
