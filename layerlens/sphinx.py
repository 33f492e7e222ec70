"""Sphinx extension: `extensions = ["layerlens.sphinx"]`, then

    .. layerlens-diagram:: mypackage.models:make_model
       :input-size: 1, 3, 224, 224
       :caption: The model

    .. layerlens-table:: mypackage.models:make_model
       :input-size: 1, 3, 224, 224

The model is built and traced when the document is read; the diagram is drawn
as SVG for HTML builders and PNG for LaTeX. Figures are cached (config value
`layerlens_cache_dir`, default `<doctreedir>/layerlens`): a document is read
again when its model's source changes, and a figure is traced again only when
the model's source, its options or layerlens change. A model that fails is a
warning at the directive's line (an error under `-W`).
"""

from __future__ import annotations

import html
import posixpath
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from ._version import __version__
from .doc_figures import (
    Figure,
    FigureError,
    Request,
    code_fingerprint,
    image_name,
    make_figure,
    parse_request,
    render_image,
    spec_files,
    write_atomic,
)

logger = logging.getLogger(__name__)


class layerlens_diagram(nodes.General, nodes.Inline, nodes.Element):  # noqa: N801 (docutils node naming)
    """A traced diagram: its DOT text, drawn by the builder's format at write time."""


def _flag_or_value(argument: str | None) -> str:
    return "" if argument is None else argument


_TRACE_OPTIONS: dict[str, Any] = {
    "input-size": directives.unchanged_required,
    "dtypes": directives.unchanged_required,
    "inputs": directives.unchanged_required,
    "mode": directives.unchanged_required,
    "ops": directives.unchanged_required,
    "depth": directives.unchanged_required,
}


class _FigureDirective(SphinxDirective):
    required_arguments = 1
    final_argument_whitespace = False
    kind = "diagram"
    figure_options: ClassVar[tuple[str, ...]] = ()

    def run(self) -> list[nodes.Node]:
        trace_options = {k: v for k, v in self.options.items() if k not in self.figure_options}
        self.env.layerlens_docs = getattr(self.env, "layerlens_docs", set()) | {self.env.docname}  # type: ignore[attr-defined]
        try:
            request = parse_request(self.arguments[0], trace_options, self.kind)
            figure, deps, _ = make_figure(request, _cache_dir(self.env))
        except FigureError as exc:
            for path in spec_files(self.arguments[0], trace_options.get("inputs")):  # read again once it is fixed
                self.env.note_dependency(path)
            logger.warning(
                "layerlens-%s %s: %s", self.kind, self.arguments[0], exc,
                location=self.get_location(), type="layerlens", subtype=self.kind,
            )  # fmt: skip
            return []
        for path in deps:
            self.env.note_dependency(path)
        return self.make_nodes(figure)

    def make_nodes(self, figure: Figure) -> list[nodes.Node]:
        raise NotImplementedError

    def caption(self, text: str) -> nodes.caption:
        inodes, messages = self.state.inline_text(text, self.lineno)
        caption = nodes.caption(text, "", *inodes)
        caption.extend(messages)
        self.set_source_info(caption)
        return caption


class DiagramDirective(_FigureDirective):
    """`.. layerlens-diagram:: module:factory` — the model's data-flow diagram."""

    kind = "diagram"
    option_spec: ClassVar[dict[str, Any]] = {
        **_TRACE_OPTIONS,
        "roll": _flag_or_value,
        "collapse": directives.unchanged_required,
        "bookkeeping": _flag_or_value,
        "rankdir": directives.unchanged_required,
        "caption": directives.unchanged,
        "name": directives.unchanged,
        "class": directives.class_option,
        "alt": directives.unchanged,
        "align": lambda a: directives.choice(a, ("left", "center", "right")),
        "width": directives.length_or_percentage_or_unitless,
    }
    figure_options = ("caption", "name", "class", "alt", "align", "width")

    def make_nodes(self, figure: Figure) -> list[nodes.Node]:
        alt = self.options.get("alt") or f"Data-flow diagram of {figure.title}"
        node = layerlens_diagram(dot=figure.dot, alt=alt, width=self.options.get("width"))
        node["classes"] += self.options.get("class", [])
        self.set_source_info(node)
        text = " ".join(t for t in (self.options.get("caption", ""), figure.depth_note()) if t)
        if not text:
            if "align" in self.options:
                node["align"] = self.options["align"]
            self.add_name(node)
            return [node]
        wrapper = nodes.figure("", node, classes=["layerlens-figure"])
        if "align" in self.options:
            wrapper["align"] = self.options["align"]
        wrapper += self.caption(text)
        self.set_source_info(wrapper)
        self.add_name(wrapper)
        return [wrapper]


class TableDirective(_FigureDirective):
    """`.. layerlens-table:: module:factory` — the model's layer table (a real table, any builder)."""

    kind = "table"
    option_spec: ClassVar[dict[str, Any]] = {
        **_TRACE_OPTIONS,
        "columns": directives.unchanged_required,
        "caption": directives.unchanged,
        "name": directives.unchanged,
        "class": directives.class_option,
        "align": lambda a: directives.choice(a, ("left", "center", "right")),
        "widths": directives.unchanged,
    }
    figure_options = ("caption", "name", "class", "align", "widths")

    def make_nodes(self, figure: Figure) -> list[nodes.Node]:
        table = nodes.table(classes=["layerlens-table", *self.options.get("class", [])])
        if "align" in self.options:
            table["align"] = self.options["align"]
        if self.options.get("caption"):
            inodes, messages = self.state.inline_text(self.options["caption"], self.lineno)
            table += nodes.title(self.options["caption"], "", *inodes)
            table.extend(messages)
        group = nodes.tgroup(cols=len(figure.headers))
        table += group
        for k, header in enumerate(figure.headers):  # widths in characters (the text builder uses them)
            group += nodes.colspec(colwidth=max(len(header), *(len(r[k]) for r in figure.rows if k < len(r))))
        group += nodes.thead("", _row(figure.headers))
        group += nodes.tbody("", *[_row(r) for r in figure.rows])
        self.set_source_info(table)
        self.add_name(table)
        notes = [nodes.paragraph(n, n, classes=["layerlens-note"]) for n in figure.notes]
        return [table, *notes]


def _row(cells: list[str]) -> nodes.row:
    row = nodes.row()
    for text in cells:
        row += nodes.entry("", nodes.paragraph(text, text))
    return row


# -- writing: SVG for HTML, PNG for LaTeX, the alt text elsewhere ---------------------------


def _html_visit(self: Any, node: layerlens_diagram) -> None:
    name = image_name(node["dot"], "svg")
    target = Path(self.builder.outdir) / self.builder.imagedir / name
    if not target.is_file():
        write_atomic(target, _draw(self, node, "svg"))
    uri = posixpath.join(self.builder.imgpath, name)
    style = f' style="width: {html.escape(css_length(node["width"]))}"' if node.get("width") else ""
    alt = html.escape(node["alt"])
    align = f" align-{node['align']}" if node.get("align") else ""
    classes = " ".join(["layerlens-diagram", *node["classes"]])
    ids = "".join(f'<span id="{html.escape(i)}"></span>' for i in node["ids"])
    self.body.append(
        f'<div class="{html.escape(classes)}{align}">{ids}'
        f'<object data="{html.escape(uri)}" type="image/svg+xml"{style} aria-label="{alt}">'
        f'<img src="{html.escape(uri)}" alt="{alt}"{style}></object></div>\n'
    )
    raise nodes.SkipNode


def _latex_visit(self: Any, node: layerlens_diagram) -> None:
    name = image_name(node["dot"], "png")
    target = Path(self.builder.outdir) / name
    if not target.is_file():
        write_atomic(target, _draw(self, node, "png"))
    length = self.latex_image_length(str(node["width"])) if node.get("width") else None
    width = f"width={length}" if length else ""
    self.body.append(f"\n\\sphinxincludegraphics[{width}]{{{name}}}\n")
    raise nodes.SkipNode


def _text_visit(self: Any, node: layerlens_diagram) -> None:
    self.new_state(0)
    self.add_text(f"[{node['alt']}]")
    self.end_state()
    raise nodes.SkipNode


def _alt_visit(self: Any, node: layerlens_diagram) -> None:
    """Builders without images (man, texinfo): the alt text, escaped by the writer's own rules."""
    self.visit_Text(nodes.Text(f"[{node['alt']}]"))
    self.body.append("\n")
    raise nodes.SkipNode


def css_length(width: str) -> str:
    """A CSS length: a bare number is pixels."""
    text = str(width).strip()
    return f"{text}px" if text.replace(".", "", 1).isdigit() else text


def _draw(translator: Any, node: layerlens_diagram, fmt: str) -> bytes:
    try:
        return render_image(node["dot"], fmt, _cache_dir(translator.builder.env))
    except Exception as exc:
        logger.warning("layerlens-diagram: cannot draw: %s", exc, location=node, type="layerlens", subtype="diagram")
        raise nodes.SkipNode from None


# -- the environment: cache location, and re-reading when layerlens changes -----------------


def _cache_dir(env: BuildEnvironment) -> Path:
    configured = env.config.layerlens_cache_dir
    return Path(env.srcdir, configured) if configured else Path(env.doctreedir) / "layerlens"


def _outdated(app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]) -> list[str]:
    """Documents with figures, to read again when layerlens itself changed since they were read."""
    fingerprint = code_fingerprint()
    if getattr(env, "layerlens_fingerprint", fingerprint) == fingerprint:
        env.layerlens_fingerprint = fingerprint  # type: ignore[attr-defined]
        return []
    env.layerlens_fingerprint = fingerprint  # type: ignore[attr-defined]
    return sorted(getattr(env, "layerlens_docs", set()) - removed)


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    docs: set[str] = getattr(env, "layerlens_docs", set())
    docs.discard(docname)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment) -> None:
    """Parallel reading: take the worker's figure documents into the main environment."""
    env.layerlens_docs = getattr(env, "layerlens_docs", set()) | getattr(other, "layerlens_docs", set())  # type: ignore[attr-defined]


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directives, the node's writers and the cache setting."""
    app.add_config_value("layerlens_cache_dir", "", "env", types=[str])
    app.add_node(
        layerlens_diagram,
        html=(_html_visit, None),
        latex=(_latex_visit, None),
        text=(_text_visit, None),
        man=(_alt_visit, None),
        texinfo=(_alt_visit, None),
    )
    app.add_directive("layerlens-diagram", DiagramDirective)
    app.add_directive("layerlens-table", TableDirective)
    app.connect("env-get-outdated", _outdated)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}


__all__ = ["DiagramDirective", "Request", "TableDirective", "setup"]
