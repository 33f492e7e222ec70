"""Diagrams of real-sized models stay readable: identical blocks drawn once,
bookkeeping ops folded into dashed edges, containers without inner calls as
one node, names relative to their cluster, and rolling that does not tangle."""

from __future__ import annotations

import re
import subprocess

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

import layerlens as ll
from tests.test_diagram import _CLUSTER, Dot


class Block(nn.Module):
    """A pre-norm residual MLP block, like a transformer's."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(self.norm(x))))


class Stack(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[Block() for _ in range(n)])
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


def _clusters(d: Dot) -> list[str]:
    return [m.group(2) for m in _CLUSTER.finditer(d.text)]


def _named_edges(d: Dot) -> list[tuple[str, str, str]]:
    return sorted((d.labels[s][0], d.labels[t][0], label) for s, t, label in d.edges)


def _drawn(model: nn.Module, x: object, **options: object) -> Dot:
    return Dot(ll.trace(model, x).to_dot(**options))  # type: ignore[arg-type]


def test_a_chain_of_identical_blocks_is_drawn_once_with_its_count() -> None:
    x = torch.randn(2, 5, 8)
    six, one = _drawn(Stack(6), x), _drawn(Stack(1), x)
    assert len(six.labels) == len(one.labels)  # the same picture as a one-block model
    assert _named_edges(six) == _named_edges(one)
    marked = [c for c in _clusters(six) if "Block ×6" in c]
    assert len(marked) == 1 and "<B>0–5  </B>" in marked[0]  # relative to the blocks cluster
    assert all(f"blocks.{k}" in marked[0] for k in range(6))  # every member's full name in the tooltip
    assert six.inputs(six.node("head")) == [six.node("+")]  # the last block feeds the head
    full = _drawn(Stack(6), x, collapse=False)
    assert len([c for c in _clusters(full) if "Block" in c]) == 6


class Looped(nn.Module):
    """Blocks called in a loop, with something between them: `* 2`, or unpacking a tuple."""

    def __init__(self, between: str) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([TupleBlock() for _ in range(3)])
        self.between = between

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            out = b(x)
            x = out[0] * 2 if self.between == "scale" else out[0]
        return x


class TupleBlock(Block):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return torch.stack((y, y * 0))  # unpacked by its caller as out[0]


def test_ops_between_blocks_are_part_of_the_repeat_unless_they_only_unpack() -> None:
    x = torch.randn(2, 8)
    scaled = _drawn(Looped("scale"), x)
    assert not any("×3" in c for c in _clusters(scaled))  # `* 2` between blocks: drawing them once would lose it
    _acyclic(scaled)
    unpacked = _drawn(Looped("unpack"), x)
    assert any("TupleBlock ×3" in c for c in _clusters(unpacked))  # `out[0]` is only plumbing
    _acyclic(unpacked)
    labels = [lines[0] for lines in unpacked.labels.values()]
    assert labels.count("[0]") == 1  # the unpacking after the last block, which feeds the output


def _acyclic(d: Dot) -> None:
    _topological(d)


def test_blocks_at_the_depth_limit_collapse_to_one_node() -> None:
    d = _drawn(Stack(4), torch.randn(2, 8), depth=2)
    node = d.node("0–3")
    assert "Block  ×4" in d.labels[node][1]
    assert "params each" in d.labels[node][2]
    assert d.outputs(node) == [d.node("head")]


def test_identical_blocks_side_by_side_are_not_a_repeat() -> None:
    class TwoBranches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.left, self.right = Block(), Block()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.left(x) * self.right(x)  # the same input: parallel, not a chain

    d = _drawn(TwoBranches(), torch.randn(2, 8))
    assert not any("×" in c for c in _clusters(d))
    assert len([c for c in _clusters(d) if "Block" in c]) == 2


def test_blocks_of_different_shapes_are_not_a_repeat() -> None:
    model = nn.Sequential(
        nn.Sequential(nn.Linear(8, 8), nn.ReLU()),
        nn.Sequential(nn.Linear(8, 4), nn.ReLU()),
        nn.Sequential(nn.Linear(4, 4), nn.ReLU()),
    )
    d = _drawn(model, torch.randn(2, 8))
    assert len([c for c in _clusters(d) if "Sequential" in c]) == 4 and not any("×" in c for c in _clusters(d))


def test_attention_without_inner_calls_is_one_node() -> None:
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True).eval()
    d = _drawn(layer, torch.randn(2, 5, 16))
    attn = d.node("self_attn")
    assert d.labels[attn][1].startswith("MultiheadAttention")
    assert not any("MultiheadAttention" in c for c in _clusters(d))  # out_proj is used, never called


def test_parametrized_layer_is_one_node() -> None:
    from torch.nn.utils import parametrizations

    model = nn.Sequential(parametrizations.weight_norm(nn.Conv2d(3, 8, 3)), nn.ReLU())
    d = _drawn(model, torch.randn(1, 3, 6, 6))
    conv = d.node("0")
    assert d.labels[conv][1].startswith("ParametrizedConv2d")
    assert len(_clusters(d)) == 1  # only the root: the weight's parametrization is inside the conv's node
    assert d.outputs(conv) == [d.node("1")] and d.inputs(conv) == [d.node("input")]


class Masked(nn.Module):
    """Scores masked by an integer mask input, with positions from arange."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.pos = nn.Embedding(16, 8)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = (mask > 0).unsqueeze(-1).expand(-1, -1, 8)
        positions = torch.arange(x.shape[1])
        h = self.proj(x) + self.pos(positions)
        return h.masked_fill(~keep, 0.0)


def test_mask_bookkeeping_folds_into_a_dashed_edge_from_its_input() -> None:
    x, mask = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.long)
    t = ll.trace(Masked(), (x, mask))
    d = Dot(t.to_dot())
    titles = {lines[0] for lines in d.labels.values()}
    assert not {">", "unsqueeze", "expand", "~", "arange"} & titles
    fill = d.node("masked_fill")
    assert (d.node("mask"), fill) in [(s, t) for s, t, _ in d.dashed]
    assert d.inputs(fill) == [d.node("+"), d.node("mask")]
    assert "also uses" in d.attrs[fill] and "__invert__" in d.attrs[fill]  # what was folded, in the tooltip
    shown = Dot(t.to_dot(bookkeeping=True))
    assert {"unsqueeze", "expand", "arange"} <= {lines[0] for lines in shown.labels.values()}
    assert not shown.dashed
    linked = {s for s, _, _ in d.edges} | {e for _, e, _ in d.edges}
    assert set(d.labels) <= linked  # no loose nodes


def test_an_op_with_a_weight_of_its_own_is_computation_not_bookkeeping() -> None:
    class Lookup(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.randn(10, 8))
            self.head = nn.Linear(8, 2)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head((F.embedding(ids, self.table) * 8**0.5).mean(1))

    d = _drawn(Lookup(), torch.randint(0, 10, (2, 5)))
    lookup, head = d.node("embedding"), d.node("head")
    assert d.inputs(lookup) == [d.node("ids")] and not d.dashed
    assert d.inputs(head) == [d.node("mean")]


def test_names_in_a_cluster_are_short_and_unique_with_full_paths_in_tooltips() -> None:
    model = nn.Sequential(nn.Sequential(Block(), Block()), nn.Sequential(Block(), Block()))
    d = _drawn(model, torch.randn(2, 8), collapse=False)
    for cluster in re.split(r"subgraph cluster_", d.text)[1:]:
        direct = re.split(r"subgraph cluster_", cluster)[0]
        titles = [m.group(1) for m in re.finditer(r"label=<<B>([^<]*)</B><BR/>", direct)]
        assert len(titles) == len(set(titles))
        assert all(t.count(".") <= 1 for t in titles)  # relative, not the full path
    assert {"0.0.fc1", "1.1.fc2"} <= set(d.names.values())


def test_roll_keeps_a_reused_activation_apart_and_rolls_a_recurrent_cell() -> None:
    class Bottleneck(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(x + self.b(self.relu(self.a(self.relu(x)))))

    d = _drawn(Bottleneck(), torch.randn(2, 8), roll=True)
    assert len([n for n in d.names.values() if n.startswith("relu")]) == 3

    class Recurrent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(4, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.zeros(x.shape[0], 8)
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return h

    r = _drawn(Recurrent(), torch.randn(2, 5, 4), roll=True)
    cell = r.node("cell")
    assert "×5 calls" in " ".join(r.labels[cell])


@pytest.mark.parametrize("options", [{}, {"roll": True}, {"depth": 1}, {"bookkeeping": True}])
def test_same_model_same_dot(options: dict[str, object]) -> None:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return Stack(3)

    x = torch.randn(2, 8)
    assert _drawn(build(), x, **options).text == _drawn(build(), x.clone(), **options).text


def test_collapsed_diagram_lays_out_without_cycles() -> None:
    source = ll.trace(Stack(5), torch.randn(2, 8)).to_dot()
    done = subprocess.run(["dot", "-Tcanon"], input=source, capture_output=True, text=True, check=True)
    assert "Block ×5" in done.stdout
    d = Dot(source)
    order = {n: k for k, n in enumerate(_topological(d))}
    assert all(order[s] < order[t] for s, t, _ in d.edges)


def _topological(d: Dot) -> list[str]:
    indegree = {n: 0 for n in d.labels}
    for _, t, _ in d.edges:
        indegree[t] += 1
    ready = [n for n, k in indegree.items() if k == 0]
    out: list[str] = []
    while ready:
        n = ready.pop()
        out.append(n)
        for s, t, _ in d.edges:
            if s == n:
                indegree[t] -= 1
                if indegree[t] == 0:
                    ready.append(t)
    assert len(out) == len(indegree), "the drawn graph has a cycle"
    return out
