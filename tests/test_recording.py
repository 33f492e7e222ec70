"""What trace() records: one record per module call, in order, with the right
names, depths, shapes (checked against torch's own outputs) and structures."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import layerlens as ll
from tests.conftest import ConvNet, Tagger


def _called_modules(model: nn.Module, *args: object) -> list[str]:
    """Independent truth: the modules torch calls, in order, seen by a plain global
    pre-hook (which, unlike per-module hooks, leaves fused fast paths alone)."""
    names = {m: n for n, m in model.named_modules()}
    seen: list[str] = []
    handle = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda m, a: seen.append(names[m]) if m in names else None
    )
    with torch.no_grad():
        model(*args)
    handle.remove()
    return seen


def test_one_record_per_call_in_call_order_with_depths(convnet: ConvNet) -> None:
    x = torch.randn(2, 4, 32)
    t = ll.trace(convnet, x)
    assert [r.name for r in t] == _called_modules(convnet, x)
    assert [r.depth for r in t] == [0, 1, 2, 2, 2, 2, 2, 1]
    assert t[0].name == "" and t[0].type_name == "ConvNet"
    assert [r.parent for r in t] == [None, 0, 1, 1, 1, 1, 1, 0]


def test_shapes_match_torch_outputs(convnet: ConvNet) -> None:
    x = torch.randn(2, 4, 32)
    outputs: dict[str, tuple[int, ...]] = {}
    names = {m: n for n, m in convnet.named_modules()}

    def remember(m: nn.Module, args: object, out: torch.Tensor) -> None:
        outputs[names[m]] = tuple(out.shape)

    hooks = [m.register_forward_hook(remember) for m in names]
    t = ll.trace(convnet, x)
    for h in hooks:
        h.remove()
    for r in t:
        assert r.output_shapes == (outputs[r.name],), r.name
    assert t["features.0"].input_shapes == ((2, 4, 32),)
    assert t["head"].input_shapes == ((2, 128),)


def test_tutorial_hand_derived_shapes() -> None:
    # From the tutorial: Embedding(10, 4) on a 2x4 index tensor gives 2x4x4 ...
    t = ll.trace(nn.Embedding(10, 4, padding_idx=0), torch.tensor([[0, 2, 3, 4], [5, 6, 7, 8]]))
    assert t[0].output_shapes == ((2, 4, 4),)
    # ... MaxPool1d(2, stride=1) on (1, 4, 4) gives (1, 4, 3) ...
    t = ll.trace(nn.MaxPool1d(2, stride=1), torch.randn(1, 4, 4))
    assert t[0].output_shapes == ((1, 4, 3),)
    # ... and RNN(5, 6, num_layers=2, batch_first=True) on (1, 4, 5) gives (1, 4, 6) and (2, 1, 6).
    t = ll.trace(nn.RNN(5, 6, num_layers=2, batch_first=True), torch.randn(1, 4, 5))
    assert t[0].output_shapes == ((1, 4, 6), (2, 1, 6))
    assert t.ok


def test_reused_module_is_recorded_per_call() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(torch.relu(self.block(x)))

    t = ll.trace(Twice(), torch.randn(3, 4))
    calls = t.calls("block")
    assert [c.call_index for c in calls] == [0, 1]
    assert t["block"] is calls[0]
    assert calls[1].label == "block #1"


def test_lstm_output_flattened_to_three_tensors(tagger: Tagger) -> None:
    t = ll.trace(tagger, torch.randint(0, 20, (2, 7)))
    lstm = t["lstm"]
    assert lstm.output_shapes == ((2, 7, 6), (1, 2, 6), (1, 2, 6))
    assert [o.path for o in lstm.outputs] == ["0", "1.0", "1.1"]


def test_model_and_submodule_keyword_inputs_are_seen(tagger: Tagger) -> None:
    tokens = torch.randint(0, 20, (2, 7))
    mask = torch.ones(2, 7)
    t = ll.trace(tagger, tokens, kwargs={"mask": mask})
    assert [i.path for i in t[0].inputs] == ["0", "mask"]
    assert t[0].input_shapes == ((2, 7), (2, 7))

    class Inner(nn.Module):
        def forward(self, x: torch.Tensor, *, scale: torch.Tensor) -> torch.Tensor:
            return x * scale

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x, scale=torch.full((3,), 2.0))

    t = ll.trace(Outer(), torch.ones(3))
    assert [i.path for i in t["inner"].inputs] == ["0", "scale"]
    assert t["inner"].inputs[1].stats is not None and t["inner"].inputs[1].stats.mean == 2.0


def test_structured_outputs_are_flattened_in_order() -> None:
    Pair = namedtuple("Pair", ["left", "right"])

    class Many(nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, object]:
            return {"a": [x, x + 1], "b": Pair(x * 2, None), "n": 3, "dist": torch.distributions.Normal(x, 1.0)}

    t = ll.trace(Many(), torch.zeros(2))
    assert [o.path for o in t[0].outputs] == ["a.0", "a.1", "b.left"]
    assert t[0].other_outputs == (("n", "int"), ("dist", "Normal"))


def test_packed_sequence_records_data_batch_sizes_and_both_permutations() -> None:
    gru = nn.GRU(3, 4, batch_first=True)
    packed = pack_padded_sequence(torch.randn(3, 5, 3), torch.tensor([5, 2, 3]), batch_first=True, enforce_sorted=False)
    t = ll.trace(gru, (packed,))
    assert [i.path for i in t[0].inputs] == ["0.data", "0.batch_sizes", "0.sorted_indices", "0.unsorted_indices"]
    assert t[0].input_shapes == ((10, 3), (5,), (3,), (3,))
    assert t[0].output_shapes == ((10, 4), (5,), (3,), (3,), (1, 3, 4))
    assert t[0].details["packed"] is True
    sorted_stats = t[0].inputs[2].stats
    assert sorted_stats is not None and (sorted_stats.min, sorted_stats.max) == (0, 2)  # a permutation of the batch
    assert t[0].checks[0].name == "rnn_final_state" and t[0].checks[0].ok  # each sequence at its own length
    assert ll.trace(gru, packed).records == t.records  # a PackedSequence passed alone is one input, not a tuple


def test_fused_transformer_path_is_opened_up() -> None:
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 5, 16)
    assert _called_modules(enc, x) == ["", "layers.0", "layers.1"]  # what torch's fast path does
    t = ll.trace(enc, x)
    names = [r.name for r in t]
    for sub in ("self_attn", "linear1", "dropout", "linear2", "norm1", "norm2", "dropout1", "dropout2"):
        assert f"layers.0.{sub}" in names and f"layers.1.{sub}" in names
    assert torch.backends.mha.get_fastpath_enabled()
    with torch.no_grad():
        torch.testing.assert_close(t[0].outputs[0].stats.mean, enc(x).mean().item())  # type: ignore[union-attr]


def test_modules_missing_from_the_model_are_recorded_and_flagged() -> None:
    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = [nn.Linear(3, 3), nn.Linear(3, 3)]  # a list, not a ModuleList

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for b in self.blocks:
                x = b(x)
            return x

    with pytest.warns(ll.LayerlensWarning, match="not registered as a submodule"):
        t = ll.trace(Plain(), torch.randn(2, 3))
    assert [r.name for r in t] == ["", "<Linear>", "<Linear:1>"]
    assert [r.registered for r in t] == [True, False, False]


def test_other_models_running_meanwhile_are_not_recorded() -> None:
    other = nn.Linear(3, 3)

    class Host(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    t = ll.trace(Host(), torch.randn(1, 3))
    other(torch.randn(1, 3))  # after the trace: nothing is installed any more
    assert [r.name for r in t] == ["", "inner"]
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_forward_pre_hooks


def test_queries_by_name_and_type(convnet: ConvNet) -> None:
    t = ll.trace(convnet, torch.randn(2, 4, 32))
    assert t["features.0"].type_name == "Conv1d"
    assert [r.name for r in t.of_type(nn.Conv1d)] == ["features.0"]
    assert [r.name for r in t.of_type("BatchNorm1d")] == ["features.1"]
    assert [r.name for r in t.of_type(nn.modules.batchnorm._BatchNorm)] == ["features.1"]
    assert t.of_type("_ConvNd") == t.of_type(nn.Conv1d)
    with pytest.raises(KeyError, match="did you mean 'head'"):
        t["haed"]
    assert len(t) == 8
    assert [r.name for r in t] == [t[i].name for i in range(len(t))]


def test_param_counts_count_tied_weights_once() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.out = nn.Linear(4, 10, bias=False)
            self.out.weight = self.embed.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.embed(x))

    model = Tied()
    t = ll.trace(model, torch.tensor([[1, 2]]))
    assert t[0].num_params == 40 == sum(p.numel() for p in model.parameters())
    assert t["out"].num_params == 40
    assert t.summary().total_params == 40


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.booleans()), min_size=1, max_size=12))
def test_param_counts_equal_torchs_on_models_with_ties_and_shared_modules(
    edges: list[tuple[int, int, bool]],
) -> None:
    """Every module's counts equal `module.parameters()` (which deduplicates), for
    random trees of Linears with parameters tied across them and submodules
    registered under two parents, frozen ones included."""
    from layerlens.model_index import ModelIndex

    leaves = [nn.Linear(i + 1, 2) for i in range(6)]
    blocks = [nn.Module() for _ in range(6)]
    root = nn.Module()
    for i, b in enumerate(blocks):
        root.add_module(f"b{i}", b)
    for n, (a, b, tie) in enumerate(edges):
        blocks[a].add_module(f"l{n}", leaves[b])  # a leaf under several blocks: a shared module
        if tie and a != b:
            leaves[a].bias = leaves[b].bias  # a tied parameter
        leaves[b].weight.requires_grad_(n % 3 != 0)
    index = ModelIndex(root)
    for _, m in index.named:
        ps = list(m.parameters())
        want = (sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad))
        assert index.param_counts(m) == want


def test_trainable_params_follow_requires_grad(convnet: ConvNet) -> None:
    convnet.head.requires_grad_(False)
    t = ll.trace(convnet, torch.randn(2, 4, 32))
    assert t["head"].trainable_params == 0
    assert t["head"].num_params == 8 * 16 * 5 + 5
    s = t.summary()
    assert s.non_trainable_params == t["head"].num_params
    assert s.trainable_params == sum(p.numel() for p in convnet.parameters() if p.requires_grad)


def test_random_inputs_from_input_size_fit_the_embedding() -> None:
    from layerlens.models.abc import build_model

    t = ll.trace(build_model(), input_size=(64, 6), dtypes=[torch.long])
    assert t[0].inputs[0].dtype == "int64"
    assert t[0].input_shapes == ((64, 6),)
    assert t.ok
    stats = t["embedding"].inputs[0].stats
    assert stats is not None
    assert stats.min >= 0
    assert stats.max < 53


def test_grad_mode() -> None:
    model = nn.Linear(3, 2)
    t = ll.trace(model, torch.randn(4, 3))
    assert not t[0].outputs[0].requires_grad
    t = ll.trace(model, torch.randn(4, 3), grad=True)
    assert t[0].outputs[0].requires_grad
    assert model.weight.grad is None
