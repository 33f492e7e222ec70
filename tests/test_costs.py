"""What torchinfo users look for first: FLOPs per call and in total (by torch's
own counter), the memory estimate, and trace's `input_data=`, `device=` and
`depth=`."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import layerlens as ll
from layerlens.flop_count import per_call
from layerlens.models import abc
from tests.conftest import ConvNet


class Block(nn.Module):
    """Attention and a reused Linear: the reused module must count once per call."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.proj = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.attn(x, x, x)
        return self.proj(self.proj(y) + x)


def _torch_flops(model: nn.Module, *args: torch.Tensor) -> dict[str, int]:
    """Torch's own counts by module name ("Global" for the whole forward), with
    attention's fused fast path off as in a trace (the fused kernel has no formula)."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*args)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return {name: sum(by_op.values()) for name, by_op in counter.get_flop_counts().items()}


@pytest.mark.parametrize(
    ("model", "x"),
    [
        (ConvNet(), torch.randn(2, 4, 32)),
        (Block(), torch.randn(2, 5, 16)),
        (abc.AbcClassifier(), torch.randint(0, 4, (3, 6))),
    ],
    ids=["convnet", "attention+reuse", "abc"],
)
def test_flops_per_call_and_in_total_agree_with_torchs_flop_counter(model: nn.Module, x: torch.Tensor) -> None:
    model.eval()
    t = ll.trace(model, x, flops=True)
    theirs = _torch_flops(model, x)
    assert t.summary().flops == theirs["Global"] > 0
    assert t.summary().mult_adds == theirs["Global"] // 2
    for r in t:
        if r.parent is None:
            continue
        calls = t.calls(r.name)
        if len(calls) == 1:  # torch merges a reused module's calls under its name
            assert r.flops == theirs.get(f"{type(model).__name__}.{r.name}", 0), r.name
        else:
            assert sum(c.flops or 0 for c in calls) == theirs[f"{type(model).__name__}.{r.name}"]


def test_a_reused_module_has_one_count_per_call() -> None:
    t = ll.trace(Block(), torch.randn(2, 5, 16), flops=True)
    first, second = t.calls("proj")
    assert first.flops == second.flops == 2 * 2 * 5 * 16 * 16  # 2 FLOPs per multiply-add, batch 2 x 5 tokens


def test_flops_are_not_counted_unless_asked_and_survive_json() -> None:
    model, x = ConvNet(), torch.randn(2, 4, 32)
    assert all(r.flops is None for r in ll.trace(model, x)) and ll.trace(model, x).summary().flops is None
    t = ll.trace(model, x, flops=True)
    back = ll.load_trace(t.to_json())
    assert [r.flops for r in back] == [r.flops for r in t]
    assert back.summary().flops == t.summary().flops


def test_recurrent_layers_torch_cannot_count_say_so_instead_of_claiming_zero_silently() -> None:
    with pytest.warns(ll.LayerlensWarning, match="no formula for aten"):
        t = ll.trace(nn.LSTM(3, 4), torch.randn(2, 3, 3), flops=True)
    assert any("recurrent layers" in w for w in t.warnings)


def test_flops_columns_show_per_call_counts_and_the_total() -> None:
    t = ll.trace(nn.Sequential(nn.Linear(10, 20), nn.ReLU()), torch.randn(3, 10), flops=True)
    rows = t.table(columns=["layer", "flops", "mult_adds"]).splitlines()[2:]
    assert "1.2 k" in rows[1] and "600" in rows[1]  # 2 * 3 * 10 * 20 FLOPs, half as multiply-adds
    assert rows[-1].startswith("Total") and "1.2 k" in rows[-1]


def test_memory_estimate_adds_up_like_torchinfos() -> None:
    model, x = ConvNet(), torch.randn(2, 4, 32)
    s = ll.trace(model, x).summary()
    assert s.input_bytes == x.numel() * 4
    assert s.param_bytes == sum(p.numel() * 4 for p in model.parameters())
    leaf_outputs = [
        torch.Size([2, 8, 32]), torch.Size([2, 8, 32]), torch.Size([2, 8, 32]), torch.Size([2, 8, 32]),
        torch.Size([2, 8, 16]), torch.Size([2, 5]),
    ]  # fmt: skip
    assert s.output_bytes == sum(math.prod(shape) * 4 for shape in leaf_outputs)
    assert s.forward_backward_bytes == 2 * s.output_bytes
    assert s.estimated_total_bytes == s.input_bytes + 2 * s.output_bytes + s.param_bytes + s.buffer_bytes
    table = ll.trace(model, x).table(columns=["layer", "out_bytes"])
    assert "1 KiB" in table.splitlines()[3]  # the Conv1d: 2 * 8 * 32 float32


def test_input_data_is_another_name_for_x() -> None:
    model, x = ConvNet().eval(), torch.randn(2, 4, 32)
    assert ll.trace(model, input_data=x) == ll.trace(model, x)
    with pytest.raises(TypeError, match="not both"):
        ll.trace(model, x, input_data=x)


class _Tokens(nn.Module):
    """A forward with a language model's keyword inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(input_ids)
        return h if attention_mask is None else h * attention_mask[..., None]


class _TakesADict(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(batch["image"])


def test_a_dict_of_inputs_is_keyword_inputs_where_its_keys_name_forwards_parameters() -> None:
    """A tokenizer's output goes in as torchinfo's `input_data=` takes it; a forward
    that takes a dict still gets the dict; kwargs= alone may give every input."""
    model = _Tokens().eval()
    batch = {"input_ids": torch.randint(0, 10, (2, 5)), "attention_mask": torch.ones(2, 5)}
    want = ll.trace(model, batch["input_ids"], kwargs={"attention_mask": batch["attention_mask"]})
    for got in (ll.trace(model, batch), ll.trace(model, input_data=batch), ll.trace(model, kwargs=batch)):
        assert got[0].input_shapes == ((2, 5), (2, 5)) and got[0].inputs[1].path == "attention_mask"
        assert [r.output_shapes for r in got] == [r.output_shapes for r in want] == [((2, 5, 4),)] * 2
    assert ll.trace(_TakesADict(), {"image": torch.randn(3, 2)})["linear"].input_shapes == ((3, 2),)
    with pytest.raises(TypeError, match="attention_mask twice"):
        ll.trace(model, batch, kwargs={"attention_mask": batch["attention_mask"]})
    with pytest.raises(TypeError, match="forward also needs input_ids"):
        ll.trace(model, kwargs={"attention_mask": batch["attention_mask"]})


def test_device_moves_the_inputs_and_never_the_model() -> None:
    model = ConvNet().eval()
    x = torch.randn(2, 4, 32, dtype=torch.float32)
    t = ll.trace(model, (x,), device="cpu")
    assert t[0].inputs[0].device == "cpu" and next(model.parameters()).device.type == "cpu"
    t = ll.trace(model, input_size=(2, 4, 32), device=torch.device("cpu"))
    assert t[0].inputs[0].shape == (2, 4, 32)
    with pytest.raises(ValueError, match="device must be"):
        ll.trace(model, x, device="warp-drive")


def test_device_moves_tensors_inside_containers_and_keyword_inputs_leaving_the_callers_as_they_were() -> None:
    class Two(nn.Module):
        def forward(self, pair: list[torch.Tensor], scale: torch.Tensor) -> torch.Tensor:
            return (pair[0] + pair[1]) * scale

    pair, scale = [torch.ones(2), torch.ones(2)], torch.full((2,), 3.0)
    given = list(pair)
    t = ll.trace(Two(), (pair,), kwargs={"scale": scale}, device="cpu")
    assert t[0].outputs[0].stats is not None and t[0].outputs[0].stats.mean == 6.0
    assert pair == given and pair[0] is given[0]


def test_depth_given_to_trace_is_the_default_for_tables_and_diagrams() -> None:
    model, x = ConvNet(), torch.randn(2, 4, 32)
    t = ll.trace(model, x, depth=1)
    assert t.table() == ll.trace(model, x).table(depth=1)
    assert t.to_dot() == ll.trace(model, x).to_dot(depth=1)
    assert t.table(depth=2) == ll.trace(model, x).table()  # an explicit depth still wins
    assert len(t) == len(ll.trace(model, x))  # the records are all there
    with pytest.raises(ValueError, match="depth must be"):
        ll.trace(model, x, depth=-1)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=30), st.data())
def test_per_call_totals_are_own_counts_plus_those_of_every_call_inside(
    own_list: list[int], data: st.DataObject
) -> None:
    parents = [-1] + [data.draw(st.integers(min_value=-1, max_value=k - 1)) for k in range(1, len(own_list))]
    totals = per_call(dict(enumerate(own_list)), parents)

    def inside(k: int, j: int) -> bool:  # whether call j ran inside call k (or is k)
        while j >= 0:
            if j == k:
                return True
            j = parents[j]
        return False

    for k in range(len(own_list)):
        assert totals[k] == sum(own_list[j] for j in range(len(own_list)) if inside(k, j))


def test_dtypes_may_be_named_as_on_the_command_line() -> None:
    model = nn.Embedding(5, 2)
    t = ll.trace(model, input_size=(2, 3), dtypes="long")
    assert t[0].inputs[0].dtype == "int64"
    assert ll.trace(model, input_size=(2, 3), dtypes=["torch.int32"])[0].inputs[0].dtype == "int32"
    with pytest.raises(ValueError, match="torch dtype"):
        ll.trace(model, input_size=(2, 3), dtypes=["wide"])
