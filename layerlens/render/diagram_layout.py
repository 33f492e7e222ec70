"""Which nodes, clusters and edges a diagram shows, before any drawing.

A module call is drawn as a cluster when something ran inside it and it is
above the `depth` limit; otherwise as one node, which stands for everything
that ran inside it. Functional ops show inside the cluster of the call whose
code ran them. Every recorded edge is then mapped to the visible nodes that
stand for its ends; edges inside one node disappear. With `roll=True`, all
calls of one module share one node (or cluster) with a call count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..records import Edge, LayerRecord, NodeRef, OpRecord, TensorInfo


@dataclass
class Node:
    """A drawn node: a module call (or all calls of a module), an op, or a model input/output."""

    id: str
    kind: str  # "call" | "op" | "input" | "output"; ids: c<i>, o<j>, in<k>, out<k>
    cluster: str | None  # id of the enclosing cluster
    record: LayerRecord | None = None
    op: OpRecord | None = None
    tensor: TensorInfo | None = None
    calls: int = 1


@dataclass
class Cluster:
    """A drawn container: a module call (or all calls of a module) with what ran inside."""

    id: str
    record: LayerRecord
    parent: str | None
    calls: int = 1


@dataclass
class View:
    """Everything a renderer needs, in a deterministic order."""

    nodes: dict[str, Node] = field(default_factory=dict)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    edges: list[tuple[str, str, str, str]] = field(default_factory=list)  # src, dst, shape text, dtype


def build_view(
    records: list[LayerRecord],
    ops: list[OpRecord],
    edges: list[Edge],
    depth: int | None = None,
    roll: bool = False,
) -> View:
    """The view of a trace at `depth` (None: down to the leaves)."""
    return _Builder(records, ops, depth, roll).build(edges)


class _Builder:
    def __init__(self, records: list[LayerRecord], ops: list[OpRecord], depth: int | None, roll: bool) -> None:
        self.records = records
        self.ops = ops
        self.roll = roll
        inner = {r.parent for r in records if r.parent is not None} | {o.parent for o in ops if o.parent is not None}
        self.expanded = [i in inner and (depth is None or r.depth < depth) for i, r in enumerate(records)]
        if roll:  # a module is a cluster if any of its calls is
            by_name: dict[str, bool] = {}
            for i, r in enumerate(records):
                by_name[r.name] = by_name.get(r.name, False) or self.expanded[i]
            self.expanded = [by_name[r.name] for r in records]
        self.owner: list[int | None] = []  # the call whose node stands for call i (None: i is a cluster)
        for i, r in enumerate(records):
            up = self.owner[r.parent] if r.parent is not None else None
            self.owner.append(up if up is not None else (None if self.expanded[i] else i))
        self.first: dict[str, int] = {}
        for i, r in enumerate(records):
            self.first.setdefault(r.name, i)
        root = records[0] if records else None  # model inputs and outputs, by path -> node id
        self.inputs = {t.path: f"in{k}" for k, t in enumerate(root.inputs if root else ())}
        self.outputs = {t.path: f"out{k}" for k, t in enumerate(root.outputs if root else ())}

    def build(self, edges: list[Edge]) -> View:
        view = View()
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.name] = counts.get(r.name, 0) + 1
        for i, r in enumerate(self.records):
            calls = counts[r.name] if self.roll else 1
            cid = self._call_id(i)
            if self.owner[i] is None and cid not in view.clusters:
                view.clusters[cid] = Cluster(cid, r, self._cluster_of(r.parent), calls)
            elif self.owner[i] == i and cid not in view.nodes:
                view.nodes[cid] = Node(cid, "call", self._cluster_of(r.parent), record=r, calls=calls)
        for o in self.ops:
            if self._op_node(o) == f"o{o.index}":
                view.nodes[f"o{o.index}"] = Node(f"o{o.index}", "op", self._cluster_of(o.parent), op=o)
        for k, t in enumerate(self.records[0].inputs if self.records else ()):
            view.nodes[f"in{k}"] = Node(f"in{k}", "input", None, tensor=t)
        for k, t in enumerate(self.records[0].outputs if self.records else ()):
            view.nodes[f"out{k}"] = Node(f"out{k}", "output", None, tensor=t)
        view.edges = self._edges(edges, view)
        return view

    def _call_id(self, i: int) -> str:
        return f"c{self.first[self.records[i].name] if self.roll else i}"

    def _cluster_of(self, parent: int | None) -> str | None:
        """The cluster a node inside call `parent` is drawn in."""
        return self._call_id(parent) if parent is not None and self.owner[parent] is None else None

    def _op_node(self, o: OpRecord) -> str | None:
        if o.parent is None:
            return f"o{o.index}"
        holder = self.owner[o.parent]
        return f"o{o.index}" if holder is None else self._call_id(holder)

    def _node(self, end: NodeRef) -> str | None:
        if end.kind == "call":
            holder = self.owner[end.index] if end.index < len(self.owner) else None
            return self._call_id(holder) if holder is not None else None
        if end.kind == "op":
            return self._op_node(self.ops[end.index]) if end.index < len(self.ops) else None
        ends = self.inputs if end.kind == "input" else self.outputs
        return ends.get(end.key)

    def _edges(self, edges: list[Edge], view: View) -> list[tuple[str, str, str, str]]:
        seen = set()
        drawn = []
        for e in edges:
            src, dst = self._node(e.src), self._node(e.dst)
            if src is None or dst is None or src == dst or src not in view.nodes or dst not in view.nodes:
                continue  # into a cluster (its contents carry the edge), or inside one node
            shape = "[" + ", ".join(str(d) for d in e.shape) + "]"
            key = (src, dst, shape, e.dtype)
            if key not in seen:
                seen.add(key)
                drawn.append(key)
        return drawn
