"""Which calls a diagram draws as one: repeated identical blocks and rolled modules.

A *repeat* is a run of consecutive sibling calls of containers with the same
type, the same input and output shapes and the same inner structure, each
feeding the next (a ViT's twelve encoder blocks): the run is drawn once,
marked "× 12". Every call, op and edge inside a later member maps onto its
counterpart in the first, and edges from one member to the next disappear.

With `roll`, all calls of a container module share one drawing (a block
applied in a loop); a leaf module called several times inside one call is
drawn once per call unless each call feeds the next (a recurrent cell), so a
ReLU reused three times in a ResNet bottleneck does not tangle it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..records import Edge, LayerRecord, NodeRef, OpRecord


@dataclass
class Stand:
    """Who stands for whom: `call[i]`/`op[j]` is the record/op index drawn for call i/op j."""

    call: list[int]
    op: list[int]
    repeats: dict[int, tuple[int, ...]] = field(default_factory=dict)  # first member -> all members
    plumbing: set[int] = field(default_factory=set)  # ops between two members (an `outputs[0]`): not drawn
    member: dict[int, tuple[tuple[int, int], ...]] = field(default_factory=dict)  # call -> ((run, k), ...)
    op_member: dict[int, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    rolled: dict[int, int] = field(default_factory=dict)  # representative -> number of calls

    def apart(self, a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> bool:
        """Whether two ends lie in different members of one repeat (an edge between them is not drawn)."""
        runs = dict(a)
        return any(run in runs and runs[run] != k for run, k in b)


class _Tree:
    """Records as a call tree: children, subtree extents and edges by source."""

    def __init__(self, records: Sequence[LayerRecord], ops: Sequence[OpRecord], edges: Sequence[Edge]) -> None:
        self.records = records
        self.ops = ops
        self.kids: list[list[int]] = [[] for _ in records]
        self.own_ops: list[list[int]] = [[] for _ in records]
        for i, r in enumerate(records):
            if r.parent is not None:
                self.kids[r.parent].append(i)
        for o in ops:
            if o.parent is not None and o.parent < len(records):
                self.own_ops[o.parent].append(o.index)
        self.end = list(range(1, len(records) + 1))  # exclusive end of each call's subtree
        for i in range(len(records) - 1, -1, -1):
            if self.kids[i]:
                self.end[i] = self.end[self.kids[i][-1]]
        self.first_op = [len(ops)] * len(records)  # first op index inside each subtree
        for o in ops:
            p = o.parent
            while p is not None and o.index < self.first_op[p]:
                self.first_op[p] = o.index
                p = records[p].parent
        self.out: dict[NodeRef, list[NodeRef]] = {}
        for e in edges:
            self.out.setdefault(e.src, []).append(e.dst)

    def call_of(self, end: NodeRef) -> int | None:
        """The call an edge end lies in (itself, or the op's parent)."""
        if end.kind == "call":
            return end.index if end.index < len(self.records) else None
        if end.kind == "op" and end.index < len(self.ops):
            return self.ops[end.index].parent
        return None

    def inside(self, end: NodeRef, i: int) -> bool:
        c = self.call_of(end)
        return c is not None and i <= c < self.end[i]

    def feeds(self, a: int, b: int, level: int | None, through: tuple[str, ...] | None = None) -> set[int] | None:
        """Whether call a's subtree passes a tensor to call b's, directly or through ops
        of the call `level` that holds both (only ops named in `through`, when given):
        the ops passed through, or None if it does not."""
        todo = [src for src in self.out if self.inside(src, a)]
        seen = set(todo)
        passed: set[int] = set()
        found = False
        while todo:
            for dst in self.out.get(todo.pop(), ()):
                if self.inside(dst, b):
                    found = True
                elif dst.kind == "op" and dst not in seen and self.call_of(dst) == level:
                    if through is not None and self.ops[dst.index].name not in through:
                        continue
                    seen.add(dst)
                    passed.add(dst.index)
                    todo.append(dst)
        return passed if found else None


def find_stand_ins(
    records: Sequence[LayerRecord],
    ops: Sequence[OpRecord],
    edges: Sequence[Edge],
    containers: Sequence[bool],
    expanded: Sequence[bool],
    collapse: bool,
    roll: bool,
) -> Stand:
    """The stand-ins for a diagram: repeats of `containers` collapsed (`collapse`),
    modules rolled (`roll`; those drawn `expanded` as clusters merge all their calls)."""
    tree = _Tree(records, ops, edges)
    stand = Stand(list(range(len(records))), list(range(len(ops))))
    if roll:
        _roll(tree, expanded, stand)
    elif collapse:
        _collapse(tree, containers, stand)
    for i, j in enumerate(stand.call):  # nested repeats: follow the chain to its end (always to a lower index)
        stand.call[i] = stand.call[j]
    for i, j in enumerate(stand.op):
        stand.op[i] = stand.op[j]
    return stand


def _signatures(tree: _Tree) -> list[int]:
    """Equal numbers for calls with the same type, tensors and inner structure."""
    ids: dict[tuple[object, ...], int] = {}
    sig = [0] * len(tree.records)
    for i in range(len(tree.records) - 1, -1, -1):
        r = tree.records[i]
        key = (
            r.type_path or r.type_name,
            tuple((t.shape, t.dtype) for t in r.inputs),
            tuple((t.shape, t.dtype) for t in r.outputs),
            tuple(sig[c] for c in tree.kids[i]),
            tuple(tree.ops[j].name for j in tree.own_ops[i]),
        )
        sig[i] = ids.setdefault(key, len(ids))
    return sig


# Ops that only unpack what a block returned (`outputs[0]`): a chain of blocks may
# pass through them and still be one repeat. Any other op between two blocks (`* 2`)
# is part of what repeats, and drawing the blocks once would lose it.
_PLUMBING = ("__getitem__", "getitem")


def _collapse(tree: _Tree, containers: Sequence[bool], stand: Stand) -> None:
    sig = _signatures(tree)
    runs = 0
    for p, kids in enumerate(tree.kids):
        k = 0
        while k < len(kids):
            run, between = [kids[k]], set()
            while k + len(run) < len(kids) and containers[kids[k]] and sig[kids[k + len(run)]] == sig[kids[k]]:
                passed = tree.feeds(run[-1], kids[k + len(run)], p, _PLUMBING)
                if passed is None:
                    break
                run.append(kids[k + len(run)])
                between |= passed
            if len(run) > 1:
                _map_run(tree, run, runs, stand)
                stand.plumbing |= between
                runs += 1
            k += len(run)


def _map_run(tree: _Tree, run: list[int], run_id: int, stand: Stand) -> None:
    """Map every call and op of the run's later members onto the first member's.
    A run inside a later member of an outer run is already mapped (onto its
    counterpart in the outer run's first member): only its members are noted."""
    first = run[0]
    mapped = stand.call[first] != first
    if not mapped:
        stand.repeats[first] = tuple(run)
    for k, m in enumerate(run):
        for i in range(m, tree.end[m]):
            stand.member[i] = (*stand.member.get(i, ()), (run_id, k))
            if k and not mapped:
                stand.call[i] = first + (i - m)
        for j in range(tree.first_op[m], tree.first_op[m] + _op_count(tree, m)):
            stand.op_member[j] = (*stand.op_member.get(j, ()), (run_id, k))
            if k and not mapped:
                stand.op[j] = tree.first_op[first] + (j - tree.first_op[m])


def _op_count(tree: _Tree, i: int) -> int:
    return sum(len(tree.own_ops[c]) for c in range(i, tree.end[i]))


def _roll(tree: _Tree, expanded: Sequence[bool], stand: Stand) -> None:
    keys: list[tuple[object, ...]] = []
    first: dict[tuple[object, ...], int] = {}
    last: dict[tuple[int | None, str], tuple[int, int]] = {}  # (parent call, name) -> (call, ordinal)
    for i, r in enumerate(tree.records):
        up = keys[r.parent] if r.parent is not None else ()
        if expanded[i]:
            key: tuple[object, ...] = (r.name, up)
        else:
            key = (r.name, up, _ordinal(tree, i, last))
        keys.append(key)
        rep = first.setdefault(key, i)
        stand.call[i] = rep
        stand.rolled[rep] = stand.rolled.get(rep, 0) + 1
    for o in tree.ops:
        if o.parent is not None and stand.call[o.parent] != o.parent:
            stand.op[o.index] = _counterpart_op(tree, o, stand.call[o.parent])


def _ordinal(tree: _Tree, i: int, last: dict[tuple[int | None, str], tuple[int, int]]) -> int:
    """Which drawing of a leaf module inside its parent call this call joins: the
    previous call's when that one feeds this one, a new one otherwise."""
    r = tree.records[i]
    prev = last.get((r.parent, r.name))
    ordinal = 0 if prev is None else prev[1] if tree.feeds(prev[0], i, r.parent) is not None else prev[1] + 1
    last[(r.parent, r.name)] = (i, ordinal)
    return ordinal


def _counterpart_op(tree: _Tree, o: OpRecord, rep_parent: int) -> int:
    """The op at the same position among the representative call's own ops (itself if none)."""
    own = tree.own_ops[o.parent] if o.parent is not None else []
    theirs = tree.own_ops[rep_parent]
    k = own.index(o.index)
    return theirs[k] if k < len(theirs) and tree.ops[theirs[k]].name == o.name else o.index
