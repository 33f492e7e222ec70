"""Bad input gets a clear error naming the layer and what it expected, with the
partial trace attached; the model is never changed."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

import layerlens as ll
from layerlens.models.abc import AbcClassifier, build_model


def _trace_error(model: nn.Module, *args: object, **kw: object) -> ll.TraceError:
    with pytest.raises(ll.TraceError) as info:
        ll.trace(model, *args, **kw)  # type: ignore[arg-type]
    return info.value


def test_linear_in_features_mismatch_in_the_abc_model() -> None:
    """The contract's example: Linear(in_features=120) got last dim 126."""
    model = build_model()
    model.rnn = nn.RNN(10, 21, num_layers=2, batch_first=True)  # 6 * 21 = 126 features
    err = _trace_error(model, torch.randint(1, 53, (64, 6)))
    text = str(err)
    assert "'linear' (Linear)" in text
    assert "Linear(in_features=120) got last dim 126" in text
    assert "inputs: [64, 126]" in text
    assert "last completed layer: 'rnn' (RNN) -> [64, 6, 21], [2, 64, 21]" in text
    assert isinstance(err.__cause__, RuntimeError)
    assert err.record is not None and err.record.name == "linear" and err.record.error
    assert [r.name for r in err.trace] == ["", "embedding", "rnn", "linear"]
    assert not err.trace.ok and err.trace.error == text
    assert err.trace["rnn"].output_shapes == ((64, 6, 21), (2, 64, 21))


@pytest.mark.parametrize(
    ("model", "x", "expected"),
    [
        (nn.Conv1d(32, 8, 3), torch.randn(8, 16, 256), r"Conv1d\(in_channels=32\) expects .*got 16 channels"),
        (nn.Conv1d(4, 8, 5), torch.randn(1, 4, 3), r"needs L >= dilation\*\(kernel_size-1\) \+ 1 - 2\*padding = 5"),
        (nn.Conv2d(3, 8, 3), torch.randn(3, 32), r"expects a 4-d input"),
        (
            nn.Embedding(53, 10),
            torch.tensor([[3, 60]]),
            r"num_embeddings=53\) expects indices in \[0, 53\); got .*\[3, 60\]",
        ),
        (nn.Embedding(53, 10), torch.randn(2, 3), r"expects integer indices"),
        (nn.RNN(10, 20, batch_first=True), torch.randn(64, 10, 6), r"expects last dim 10 .* dims look swapped"),
        (nn.LSTM(10, 20), torch.randn(6, 64), r"expects last dim 10"),
        (nn.BatchNorm1d(32), torch.randn(8, 16, 5), r"BatchNorm1d\(num_features=32\) expects 32 channels"),
        (nn.BatchNorm1d(4).train(), torch.randn(1, 4), r"more than 1 value per channel"),
        (nn.LayerNorm(10), torch.randn(3, 12), r"normalized_shape=\(10,\)\) expects input ending in \(10,\)"),
        (nn.GroupNorm(2, 6), torch.randn(3, 4, 5), r"num_channels=6\) expects \(N, 6, \*\)"),
        (nn.MaxPool1d(4), torch.randn(1, 2, 3), r"MaxPool1d\(kernel_size=4\) needs L"),
        (nn.Linear(4, 2), torch.ones(3, 4, dtype=torch.long), r"dtype torch.int64 \(indices\)"),
        (nn.MultiheadAttention(8, 2), torch.randn(3, 1, 6), r"embed_dim=8"),
    ],
)
def test_layer_expectations(model: nn.Module, x: torch.Tensor, expected: str) -> None:
    args = (x, x, x) if isinstance(model, nn.MultiheadAttention) else x
    err = _trace_error(model, args)
    assert re.search(expected, str(err)), str(err)
    assert err.record is not None and err.record.details.get("expected")


def test_rnn_initial_state_shape() -> None:
    rnn = nn.GRU(3, 4, num_layers=2, batch_first=True)
    err = _trace_error(rnn, (torch.randn(5, 7, 3), torch.zeros(5, 2, 4)))
    assert "expects h_0 of shape (num_layers*num_directions, batch, hidden) = (2, 5, 4), even with batch_first" in str(
        err
    )


def test_error_in_the_model_own_code_points_at_the_root() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x).view(5, -1)

    err = _trace_error(Broken(), torch.randn(2, 4))
    assert "forward failed in the model's own forward (Broken)" in str(err)
    assert "last completed layer: 'a' (Linear) -> [2, 6]" in str(err)
    assert err.record is not None and err.record.name == ""


def test_exception_raised_deep_inside_is_attributed_to_the_innermost_module() -> None:
    class Inner(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("inner problem")

    model = nn.Sequential(nn.Identity(), nn.Sequential(nn.ReLU(), Inner()))
    err = _trace_error(model, torch.ones(2))
    assert err.record is not None and err.record.name == "1.1" and err.record.type_name == "Inner"
    assert "ValueError: inner problem" in str(err)
    assert [r.error is not None for r in err.trace] == [True, False, True, False, True]


def test_not_a_module() -> None:
    model = nn.Linear(2, 2)
    x = torch.ones(1, 2)
    with pytest.raises(TypeError, match=r"expects an nn.Module .* got Tensor .*did you pass model\(x\)"):
        ll.trace(model(x), x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"the class AbcClassifier: pass an instance"):
        ll.trace(AbcClassifier, x)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, r"needs inputs"),
        ({"x": torch.ones(1), "input_size": (2, 3)}, r"not both"),
        ({"x": torch.ones(1), "kwargs": [1]}, r"kwargs must be a dict"),
        ({"input_size": "64x6"}, r"input_size must be a shape"),
        ({"input_size": (64, -6)}, r"every dimension must be an int >= 0"),
        ({"input_size": [(2, 3), (4,)], "dtypes": [torch.long] * 3}, r"dtypes must be 2 torch dtype"),
        ({"x": torch.ones(1), "mode": "training"}, r"mode must be"),
    ],
)
def test_bad_inputs(kwargs: dict[str, object], message: str) -> None:
    model = build_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises((TypeError, ValueError), match=message):
        ll.trace(model, **kwargs)  # type: ignore[arg-type]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize(
    ("x", "hint"),
    [
        ("abcde", r"hint: the inputs contain no tensor \(got str\)"),
        ([1, 2, 3], r"hint: input 0 is a list of 3 items, passed to forward as one argument: pass a tuple"),
        ([torch.ones(2, 6, dtype=torch.long)], r"input 0 is a list of 1 tensor,"),
        (np.ones((2, 6)), r"input 0 is a numpy.ndarray; convert it with torch.from_numpy"),
        ((torch.ones(2, 6, dtype=torch.long), {"mask": np.ones(3)}), r"input 1\['mask'\] is a numpy.ndarray"),
    ],
)
def test_inputs_the_model_cannot_take_fail_in_the_model_with_a_hint(x: object, hint: str) -> None:
    """A forward may take no tensor at all, or a numpy array, so layerlens refuses
    no input up front: the model's own error, at its layer, comes with the hint."""
    model = build_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ll.TraceError, match=hint):
        ll.trace(model, x)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_forwards_without_tensors_trace() -> None:
    class NoArgs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(2, 2)
            self.register_buffer("seed", torch.ones(1, 2))

        def forward(self) -> torch.Tensor:
            return self.proj(self.seed)

    class Config(nn.Module):
        def forward(self, config: dict[str, int]) -> int:
            return len(config)

    assert [r.name for r in ll.trace(NoArgs())] == ["", "proj"]
    assert [r.name for r in ll.trace(NoArgs(), ())] == ["", "proj"]
    t = ll.trace(Config(), ({},))
    assert len(t) == 1 and t[0].other_outputs == (("", "int"),) and t.ok


def test_broken_custom_inspector_becomes_a_warning_not_a_crash() -> None:
    class Thing(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    def bad(module: nn.Module, record: ll.LayerRecord) -> None:
        raise KeyError("oops")

    with pytest.warns(ll.LayerlensWarning, match=r"inspector .*bad failed on Thing"):
        t = ll.trace(Thing(), torch.ones(2), inspectors={Thing: bad})
    assert len(t) == 1


def test_a_size_mismatch_names_the_layer_that_changed_the_size() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(8, 8, 4, padding=2)  # 32 -> 33

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x)

    with pytest.raises(ll.TraceError) as info:
        ll.trace(nn.Sequential(Block()), torch.randn(2, 8, 32))
    assert "forward failed in '0' (Block)" in str(info.value)  # where it raised, as before
    assert "the mismatch comes from: '0.conv' (Conv1d) changed dimension 2 from 32 to 33" in str(info.value)
    assert "= 33, got 33" in str(info.value)  # with the conv's own length formula
    assert info.value.record is not None and info.value.record.details["culprit"] == "0.conv"


def test_the_whole_message_of_torchs_error_is_kept_not_cut_at_its_first_line() -> None:
    conv = nn.Conv1d(3, 2, 1)
    with pytest.raises(ll.TraceError) as info:
        ll.trace(conv, [torch.randn(2, 3, 4)])
    theirs = str(info.value.__cause__).strip().splitlines()
    assert len(theirs) > 1 and "expected one of" in theirs[0]
    ours = str(info.value)
    for line in theirs[1:]:
        assert line.strip() in ours
    assert "inputs: a list of 1 tensor ([2, 3, 4])" in ours  # the input as what it is, not as a tensor shape
    assert "a list of 1 tensor, passed to forward as one argument: pass a tuple" in ours


def test_a_failed_trace_says_so_in_its_totals_row() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(3, 2))
    with pytest.raises(ll.TraceError) as info:
        ll.trace(model, torch.randn(2, 3))
    total = next(line for line in info.value.trace.table().splitlines() if line.startswith("Total"))
    assert "✗ forward raised in '1'" in total and "✓" not in total
