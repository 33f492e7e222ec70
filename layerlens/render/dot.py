"""Draw a trace's data flow as a Graphviz graph.

Labels are HTML-like, built from escaped text only, and node ids are our own
(`c3`, `o1`, `in:0`), so no module name can break the DOT or inject
attributes. Colours are mid-tone fills with dark text on a transparent
background, readable on light and dark pages alike.
"""

from __future__ import annotations

import html
import warnings
from typing import Any, TypedDict

import graphviz
from typing_extensions import Unpack

from ..errors import LayerlensWarning
from ..layers.registry import families
from ..records import LayerRecord
from ..trace_data import TraceData, check_depth
from .diagram_layout import Cluster, Node, View, build_view
from .facts import key_facts

# Above this many nodes a diagram stops being readable: suggest depth= or roll=.
LARGE = 400

FONT = "Helvetica"  # known to dot (fontconfig) and to graphviz-pure (metric-compatible Arimo)
TEXT = "#1f2328"
MUTED = "#6e7781"
FAILED = ("#ffd8d3", "#d1242f")

_OTHER = "#e8ebef"
_OP = "#ffffff"
_IO = "#d0d7de"


class DrawOptions(TypedDict, total=False):
    """How a diagram is drawn, besides its depth (see `Trace.to_dot`)."""

    rankdir: str
    roll: bool
    collapse: bool
    bookkeeping: bool


def to_digraph(trace: TraceData, depth: int | None = None, **drawing: Unpack[DrawOptions]) -> graphviz.Digraph:
    """The trace as a `graphviz.Digraph`."""
    rankdir = drawing.get("rankdir", "TB")
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError(f"rankdir must be 'TB', 'LR', 'BT' or 'RL', got {rankdir!r}")
    check_depth(depth)
    unknown = set(drawing) - set(DrawOptions.__annotations__)
    if unknown:
        known = ", ".join(DrawOptions.__annotations__)
        raise TypeError(f"unknown diagram option(s) {sorted(unknown)}; known: depth, {known}")
    roll, collapse, bookkeeping = (_flag(drawing, k, k == "collapse") for k in ("roll", "collapse", "bookkeeping"))
    view = build_view(trace.records, trace.ops, trace.edges, depth, roll, collapse, bookkeeping)
    if len(view.nodes) > LARGE:
        warnings.warn(
            f"the diagram has {len(view.nodes)} nodes: pass depth=1 or 2, or roll=True, for one you can read",
            LayerlensWarning,
            stacklevel=3,
        )
    g = graphviz.Digraph(name=_safe_name(trace.meta.model_type))
    g.attr(rankdir=rankdir, bgcolor="transparent", fontname=FONT, fontcolor=MUTED, nodesep="0.25", ranksep="0.35")
    g.attr("node", shape="box", style="rounded,filled", fontname=FONT, fontsize="10", color="#8c959f", fontcolor=TEXT)
    g.attr("edge", fontname=FONT, fontsize="9", color="#8c959f", fontcolor=MUTED, arrowsize="0.7")
    _fill(g, view, None, trace.meta.input_names, _colours())
    for e in view.edges:
        label = e.shape if e.dtype == "float32" else f"{e.shape} {e.dtype}"
        g.edge(e.src, e.dst, label=f" {label} ", **({"style": "dashed"} if e.dashed else {}))
    return g


def _flag(drawing: DrawOptions, name: str, default: bool) -> bool:
    value = drawing.get(name, default)
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _fill(
    g: graphviz.Digraph, view: View, cluster: str | None, names: tuple[str, ...], colours: dict[str | None, str]
) -> None:
    """Draw the nodes and sub-clusters that belong directly in `cluster`."""
    for node in view.nodes.values():
        if node.cluster == cluster:
            g.node(node.id, **_node_attrs(node, names, colours))
    for c in view.clusters.values():
        if c.parent == cluster:
            with g.subgraph(name=f"cluster_{c.id}") as sub:
                sub.attr(**_cluster_attrs(c))
                _fill(sub, view, c.id, names, colours)


def _node_attrs(node: Node, names: tuple[str, ...], colours: dict[str | None, str]) -> dict[str, str]:
    if node.kind in ("input", "output"):
        assert node.tensor is not None
        name = _input_name(node.tensor.path, names) if node.kind == "input" else _output_name(node.tensor.path)
        return {"label": _html([(name, True), (node.tensor.describe(), False)]), "shape": "oval", "fillcolor": _IO}
    if node.kind == "op":
        assert node.op is not None
        tip = f"{node.op.name} -> " + ", ".join(t.describe() for t in node.op.outputs)
        tips = [tip, *_uses(node)]
        return {
            "label": _html([(node.op.label, False)]),
            "shape": "box",
            "style": "rounded,filled",
            "fillcolor": _OP,
            "fontsize": "9",
            "height": "0.25",
            "margin": "0.06,0.02",
            "tooltip": _tip(tips),
        }
    assert node.record is not None
    return _record_attrs(node, colours.get(node.record.family, _OTHER))


def _uses(node: Node) -> list[str]:
    """The folded bookkeeping ops that fed a node, for its tooltip."""
    return [f"also uses {', '.join(node.uses)} (bookkeeping, drawn with bookkeeping=True)"] if node.uses else []


def _input_name(path: str, names: tuple[str, ...]) -> str:
    """`x` for positional input 0 of `forward(self, x)`, `x.1` inside it, keywords as named."""
    head, _, rest = path.partition(".")
    if head.isdigit() and int(head) < len(names):
        head = names[int(head)]
    elif head.isdigit():
        head = f"input {head}"
    return f"{head}.{rest}" if rest else head


def _output_name(path: str) -> str:
    return f"output {path}" if path else "output"


def _title(title: str, calls: int) -> str:
    """A rolled node (all its calls) goes by the module's name, without a call number."""
    return title.rpartition(" #")[0] or title if calls > 1 else title


def _record_attrs(node: Node, fill: str) -> dict[str, str]:
    r, calls = node.record, node.calls
    assert r is not None
    lines = [(_title(node.title, calls), True), (_subtitle(r, calls), False)]
    if node.repeat > 1:
        lines[1] = (f"{lines[1][0]}  ×{node.repeat}", False)
    if r.num_params:
        each = " each" if node.repeat > 1 else ""
        lines.append((f"{r.num_params:,} params{each}", False))
    tips = _tooltip_lines(r)
    if node.repeat > 1:
        tips[0] = f"{node.repeat} identical blocks, drawn once: " + ", ".join(node.members) + f" ({r.type_name})"
    if node.uses:
        tips.append("also uses " + ", ".join(node.uses) + " (bookkeeping ops, drawn with bookkeeping=True)")
    attrs = {"label": _html(lines), "fillcolor": fill, "tooltip": _tip(tips)}
    if not r.ok:
        attrs.update(fillcolor=FAILED[0], color=FAILED[1], penwidth="2")
    return attrs


def _cluster_attrs(c: Cluster) -> dict[str, str]:
    r = c.record
    times = c.calls if c.calls > 1 else c.repeat
    extra = f" ×{times}" if times > 1 else ""
    tips = _tooltip_lines(r)
    if c.repeat > 1:
        tips[0] = f"{c.repeat} identical blocks, drawn once: " + ", ".join(c.members) + f" ({r.type_name})"
    attrs = {
        "label": _html([(f"{_title(c.title, c.calls)}  ", True), (f"{r.type_name}{extra}", False)], inline=True),
        "style": "rounded,dashed",
        "color": "#8c959f",
        "fontcolor": MUTED,
        "fontsize": "10",
        "labeljust": "l",
        "tooltip": _tip(tips),
    }
    if not r.ok:
        attrs.update(color=FAILED[1], fontcolor=FAILED[1], penwidth="2")
    return attrs


def _subtitle(r: LayerRecord, calls: int) -> str:
    facts = key_facts(r)
    text = f"{r.type_name}  {facts}" if facts else r.type_name
    return f"{text}  ×{calls} calls" if calls > 1 else text


def _tooltip_lines(r: LayerRecord) -> list[str]:
    lines = [f"{r.label} ({r.type_name})"]
    if r.error:
        lines.append(f"raised {r.error}")
    lines += [("✓ " if c.ok else "✗ ") + c.message for c in r.checks if not c.ok] or [
        "✓ " + c.message for c in r.checks
    ]
    if r.not_checked and not r.checks:
        lines.append(f"not checked: {r.not_checked}")
    return lines


def _colours() -> dict[str | None, str]:
    """Fill colours by layer family name (the families' own `color`)."""
    return {f.name: f.color for f in families() if f.color}


def _html(lines: list[tuple[str, bool]], inline: bool = False) -> str:
    """An HTML-like label from plain text lines, escaped: bold where flagged,
    the others smaller; on one line (`inline`) or one per line."""
    parts = [f"<B>{_text(t)}</B>" if bold else f'<FONT POINT-SIZE="9">{_text(t)}</FONT>' for t, bold in lines]
    return "<" + ("" if inline else "<BR/>").join(parts) + ">"


def _text(text: str) -> str:
    """Escaped for an HTML-like label; control characters shown, not obeyed; brackets
    as character references (Graphviz's label lexer stumbles on a bare `]`)."""
    cleaned = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return html.escape(cleaned, quote=True).translate(_BRACKETS)


_BRACKETS = str.maketrans({"[": "&#91;", "]": "&#93;"})


def _tip(lines: list[str]) -> str:
    """A tooltip: plain text for an escString (backslashes doubled, lines joined by
    \\n), never read as an HTML-like string (one that starts with < and ends with >)."""
    tip: str = graphviz.nohtml("\\n".join(graphviz.escape(_printable(line)) for line in lines))
    return tip


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text) or "model"


def dot_source(trace: TraceData, **options: Any) -> str:
    """The DOT text of `to_digraph`."""
    return str(to_digraph(trace, **options).source)
