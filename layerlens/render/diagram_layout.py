"""Which nodes, clusters and edges a diagram shows, before any drawing.

A module call is drawn as a cluster when module calls that took tensors ran
inside it and it is above the `depth` limit; otherwise as one node, which
stands for everything that ran inside it (MultiheadAttention, whose
`out_proj` is used but never called, and a parametrized convolution, whose
inner calls only make its weight, are one node each, not boxes). Functional ops show inside the
cluster of the call whose code ran them. Repeated identical blocks are drawn
once ("× 12", `collapse`), reused modules once per module (`roll`): see
`diagram_repeats`. Ops that only compute masks, positions or shapes from the
inputs (no activation flows through them) fold into a dashed edge from the
input they come from (`bookkeeping=True` draws them). Every recorded edge is
then mapped to the visible nodes that stand for its ends; edges inside one
node disappear. Names are relative to the cluster they are drawn in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..records import Edge, LayerRecord, NodeRef, OpRecord, TensorInfo
from .diagram_repeats import Stand, find_stand_ins


@dataclass
class Node:
    """A drawn node: a module call (or the calls it stands for), an op, or a model input/output."""

    id: str
    kind: str  # "call" | "op" | "input" | "output"; ids: c<i>, o<j>, in<k>, out<k>
    cluster: str | None  # id of the enclosing cluster
    record: LayerRecord | None = None
    op: OpRecord | None = None
    tensor: TensorInfo | None = None
    calls: int = 1
    title: str = ""  # the name as drawn: relative to the enclosing cluster
    uses: tuple[str, ...] = ()  # folded bookkeeping ops that fed it
    repeat: int = 1  # identical blocks drawn as this one
    members: tuple[str, ...] = ()  # their full names, when repeat > 1


@dataclass
class Cluster:
    """A drawn container: a module call (or the calls it stands for) with what ran inside."""

    id: str
    record: LayerRecord
    parent: str | None
    calls: int = 1
    title: str = ""
    repeat: int = 1  # identical blocks drawn as this one
    members: tuple[str, ...] = ()  # their full names, when repeat > 1


@dataclass(frozen=True)
class DrawnEdge:
    src: str
    dst: str
    shape: str
    dtype: str
    dashed: bool = False  # a mask or other bookkeeping tensor


@dataclass
class View:
    """Everything a renderer needs, in a deterministic order."""

    nodes: dict[str, Node] = field(default_factory=dict)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    edges: list[DrawnEdge] = field(default_factory=list)


def build_view(
    records: list[LayerRecord],
    ops: list[OpRecord],
    edges: list[Edge],
    depth: int | None = None,
    roll: bool = False,
    collapse: bool = True,
    bookkeeping: bool = False,
) -> View:
    """The view of a trace at `depth` (None: down to the leaves)."""
    return _Builder(records, ops, edges, depth, roll, collapse, bookkeeping).build()


def expandable(records: list[LayerRecord], edges: list[Edge]) -> list[bool]:
    """Whether each call could be drawn as a cluster: a module call inside it received a
    tensor. Calls that only compute from parameters (a parametrized weight's
    `_WeightNorm`) do not make their module a box of its own."""
    fed = {e.dst.index for e in edges if e.dst.kind == "call"}
    inner = [False] * len(records)
    for i, r in enumerate(records):
        if r.parent is not None and (i in fed or not edges):
            inner[r.parent] = True
    return inner


class _Builder:
    def __init__(
        self,
        records: list[LayerRecord],
        ops: list[OpRecord],
        edges: list[Edge],
        depth: int | None,
        roll: bool,
        collapse: bool,
        bookkeeping: bool,
    ) -> None:
        self.records, self.ops, self.recorded = records, ops, edges
        inner = expandable(records, edges)
        self.expanded = [inner[i] and (depth is None or r.depth < depth) for i, r in enumerate(records)]
        self.stand: Stand = find_stand_ins(records, ops, edges, inner, self.expanded, collapse, roll)
        if roll:  # a module is a cluster if any of its calls is
            for i in range(len(records)):
                rep = self.stand.call[i]
                self.expanded[rep] = self.expanded[rep] or self.expanded[i]
            self.expanded = [self.expanded[self.stand.call[i]] for i in range(len(records))]
        self.owner: list[int | None] = []  # the call whose node stands for call i (None: i is a cluster)
        for i, r in enumerate(records):
            up = self.owner[r.parent] if r.parent is not None else None
            self.owner.append(up if up is not None else (None if self.expanded[i] else i))
        self.fed_by = _fed_by(edges)  # op index -> the edges into it
        self.bookkeeping = set() if bookkeeping else _bookkeeping_ops(records, ops, self.fed_by)
        self.hidden = self.bookkeeping | self.stand.plumbing
        root = records[0] if records else None  # model inputs and outputs, by path -> node id
        self.inputs = {t.path: f"in{k}" for k, t in enumerate(root.inputs if root else ())}
        self.outputs = {t.path: f"out{k}" for k, t in enumerate(root.outputs if root else ())}

    def build(self) -> View:
        view = View()
        for i, r in enumerate(self.records):
            if self.stand.call[i] != i:
                continue
            cid, where = f"c{i}", self._cluster_of(r.parent)
            holder = self.records[self.stand.call[r.parent]] if where and r.parent is not None else None
            title = _relative(r, holder)
            if self.owner[i] is None:
                view.clusters[cid] = self._cluster(i, where, title)
            elif self.owner[i] == i:
                calls = self.stand.rolled.get(i, 1)
                title, repeat, members = self._repeat(i, title)
                view.nodes[cid] = Node(cid, "call", where, r, None, None, calls, title, (), repeat, members)
        for o in self.ops:
            drawn = self._op_node(o) == f"o{o.index}" and self.stand.op[o.index] == o.index
            if drawn and o.index not in self.hidden:
                view.nodes[f"o{o.index}"] = Node(f"o{o.index}", "op", self._cluster_of(o.parent), op=o)
        for k, t in enumerate(self.records[0].inputs if self.records else ()):
            view.nodes[f"in{k}"] = Node(f"in{k}", "input", None, tensor=t)
        for k, t in enumerate(self.records[0].outputs if self.records else ()):
            view.nodes[f"out{k}"] = Node(f"out{k}", "output", None, tensor=t)
        view.edges = self._edges(view)
        _drop_loose_ops(view)
        return view

    def _cluster(self, i: int, where: str | None, title: str) -> Cluster:
        title, repeat, members = self._repeat(i, title)
        return Cluster(f"c{i}", self.records[i], where, self.stand.rolled.get(i, 1), title, repeat, members)

    def _repeat(self, i: int, title: str) -> tuple[str, int, tuple[str, ...]]:
        """Title, count and full names of the identical blocks call i stands for."""
        members = self.stand.repeats.get(i, ())
        if not members:
            return title, 1, ()
        names = tuple(self.records[m].label for m in members)
        return _span(title, list(names)), len(members), names

    def _cluster_of(self, parent: int | None) -> str | None:
        """The cluster a node inside call `parent` is drawn in."""
        if parent is None or self.owner[parent] is not None:
            return None
        return f"c{self.stand.call[parent]}"

    def _op_node(self, o: OpRecord) -> str | None:
        if o.parent is None:
            return f"o{self.stand.op[o.index]}"
        holder = self.owner[o.parent]
        return f"o{self.stand.op[o.index]}" if holder is None else f"c{self.stand.call[holder]}"

    def _node(self, end: NodeRef) -> str | None:
        if end.kind == "call":
            holder = self.owner[end.index] if end.index < len(self.owner) else None
            return f"c{self.stand.call[holder]}" if holder is not None else None
        if end.kind == "op":
            return self._op_node(self.ops[end.index]) if end.index < len(self.ops) else None
        ends = self.inputs if end.kind == "input" else self.outputs
        return ends.get(end.key)

    def _membership(self, end: NodeRef) -> tuple[tuple[int, int], ...]:
        if end.kind == "call":
            return self.stand.member.get(end.index, ())
        if end.kind == "op":
            return self.stand.op_member.get(end.index, ())
        return ()

    def _edges(self, view: View) -> list[DrawnEdge]:
        seen: set[DrawnEdge] = set()
        drawn: list[DrawnEdge] = []
        sources = _mask_sources(self.fed_by, self.bookkeeping)
        for e in self.recorded:
            if self.stand.apart(self._membership(e.src), self._membership(e.dst)):
                continue  # from one repeated block to the next: drawn once, as one block
            if _op_in(e.src, self.stand.plumbing) or _op_in(e.dst, self.stand.plumbing):
                continue
            dst = self._node(e.dst)
            dashed = e.src.kind == "op" and e.src.index in self.bookkeeping
            if dashed and dst in view.nodes and not (e.dst.kind == "op" and e.dst.index in self.bookkeeping):
                folded = self.ops[e.src.index]
                view.nodes[dst].uses = tuple(dict.fromkeys((*view.nodes[dst].uses, folded.label)))
                ends = [self._node(s) for s in sorted(sources.get(e.src.index, ()), key=str)]
            elif dashed:
                continue
            else:
                ends = [self._node(e.src)]
            shape = "[" + ", ".join(str(d) for d in e.shape) + "]"
            dashed = dashed and not _main_input(view.nodes.get(dst or ""), e)
            for src in ends:
                edge = DrawnEdge(src or "", dst or "", shape, e.dtype, dashed)
                if src is None or dst is None or src == dst or src not in view.nodes or dst not in view.nodes:
                    continue  # into a cluster (its contents carry the edge), or inside one node
                if edge not in seen:
                    seen.add(edge)
                    drawn.append(edge)
        return drawn


def _main_input(node: Node | None, e: Edge) -> bool:
    """Whether the tensor is what the called module mainly works on (an Embedding's ids
    after a reshape), not a mask beside it: it matches the call's first input."""
    r = node.record if node is not None else None
    first = r.inputs[0] if r is not None and r.inputs else None
    return first is not None and first.shape == tuple(e.shape) and first.dtype == e.dtype


def _relative(r: LayerRecord, parent: LayerRecord | None) -> str:
    """The call's name relative to the call whose cluster holds it (full name at the top)."""
    if parent is not None and parent.name and r.name.startswith(parent.name + "."):
        base = r.name[len(parent.name) + 1 :]
        return base if r.call_index == 0 else f"{base} #{r.call_index}"
    return r.label


def _span(title: str, names: list[str]) -> str:
    """`blocks.0–11` for blocks.0 ... blocks.11, else the first name and a count."""
    heads = {n.rpartition(".")[0] for n in names}
    tails = [n.rpartition(".")[2] for n in names]
    if len(heads) == 1 and all(t.isdigit() for t in tails):
        stem = title.rpartition(".")[0]
        return f"{stem}.{tails[0]}–{tails[-1]}" if stem else f"{tails[0]}–{tails[-1]}"
    return title


def _fed_by(edges: list[Edge]) -> dict[int, list[Edge]]:
    fed_by: dict[int, list[Edge]] = {}
    for e in edges:
        if e.dst.kind == "op":
            fed_by.setdefault(e.dst.index, []).append(e)
    return fed_by


def _bookkeeping_ops(records: list[LayerRecord], ops: list[OpRecord], fed_by: dict[int, list[Edge]]) -> set[int]:
    """Ops no activation flows through: fed only by non-float model inputs, constants
    and other such ops (an attention mask's `expand`, position ids' `arange`). An op
    that combines such a tensor with a weight of its own (`F.embedding(ids, self.W)`)
    computes activations: a float input that no edge brings is a parameter or buffer."""
    float_inputs = {t.path for t in (records[0].inputs if records else ()) if _floating(t.dtype)}
    data: set[int] = set()
    for o in ops:  # in run order: an op's sources ran before it
        fed = fed_by.get(o.index, [])
        brought = sum(1 for e in fed if _floating(e.dtype))
        weights = sum(1 for t in o.inputs if _floating(t.dtype)) > brought
        if (fed and weights) or any(_is_data(e.src, float_inputs, data) for e in fed):
            data.add(o.index)
    return {o.index for o in ops} - data


def _is_data(src: NodeRef, float_inputs: set[str], data: set[int]) -> bool:
    return src.kind == "call" or (src.kind == "input" and src.key in float_inputs) or _op_in(src, data)


def _op_in(end: NodeRef, ops: set[int]) -> bool:
    return end.kind == "op" and end.index in ops


def _mask_sources(fed_by: dict[int, list[Edge]], bookkeeping: set[int]) -> dict[int, set[NodeRef]]:
    """For each bookkeeping op, the model inputs it was computed from."""
    sources: dict[int, set[NodeRef]] = {}
    for j in sorted(bookkeeping):  # in run order: an op's sources ran before it
        got = sources.setdefault(j, set())
        for src in (e.src for e in fed_by.get(j, ())):
            if src.kind == "input":
                got.add(src)
            elif _op_in(src, bookkeeping):
                got |= sources.get(src.index, set())
    return sources


def _floating(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat", "complex"))


def _drop_loose_ops(view: View) -> None:
    """An op with no drawn edge at all says nothing: leave it out."""
    linked = {e.src for e in view.edges} | {e.dst for e in view.edges}
    for nid in [n.id for n in view.nodes.values() if n.kind == "op" and n.id not in linked]:
        del view.nodes[nid]
