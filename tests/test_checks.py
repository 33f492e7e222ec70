"""The value-based checks: each holds on PyTorch's own layers and fails on a
layer that breaks its rule."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import layerlens as ll
from tests.conftest import judged_as


def _check(t: ll.Trace, name: str) -> ll.Check:
    found = [c for c in t.checks if c.name == name]
    assert len(found) == 1, [c.name for c in t.checks]
    return found[0]


# -- embedding ------------------------------------------------------------------


def test_embedding_checks_hold() -> None:
    t = ll.trace(nn.Embedding(10, 4, padding_idx=0), torch.tensor([[0, 2, 3, 4], [5, 6, 7, 9]]))
    rng = _check(t, "embedding_index_range")
    assert rng.ok and rng.actual == (0, 9) and "[0, 10)" in rng.message
    assert _check(t, "embedding_padding_row").ok
    assert t[0].details["padding_idx"] == 0 and t[0].details["num_embeddings"] == 10


def test_embedding_padding_row_fails_when_row_is_not_zero() -> None:
    emb = nn.Embedding(10, 4, padding_idx=3)
    with torch.no_grad():
        emb.weight[3] = 0.5
    t = ll.trace(emb, torch.tensor([1, 3]))
    check = _check(t, "embedding_padding_row")
    assert not check.ok and check.actual == 0.5 and "padding_idx=3" in check.message


def test_embedding_index_range_fails_for_an_index_past_the_table() -> None:
    class Lenient(nn.Embedding):
        """Clamps out-of-range indices instead of raising, hiding a data bug."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x.clamp(0, self.num_embeddings - 1))

    t = ll.trace(Lenient(5, 2), torch.tensor([0, 4, 7]))  # its own forward: the Embedding rule does not judge it
    assert t.ok and not t.checks and "forward overridden by" in (t[0].not_checked or "")
    with judged_as(Lenient, nn.Embedding):  # "Lenient computes an Embedding's lookup"
        t = ll.trace(Lenient(5, 2), torch.tensor([0, 4, 7]))
    check = _check(t, "embedding_index_range")
    assert not check.ok and check.actual == (0, 7) and "outside" in check.message


# -- dropout --------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(p=st.sampled_from([0.0, 0.1, 0.5, 0.6, 0.9, 1.0]), inplace=st.booleans())
def test_dropout_scaling_holds_in_training(p: float, inplace: bool) -> None:
    drop = nn.Dropout(p, inplace=inplace).train()
    x = torch.randn(64, 32)
    t = ll.trace(drop, x)
    check = _check(t, "dropout_scaling")
    assert check.ok, check.message
    if 0 < p < 1:
        assert abs(t[0].details["observed_drop_fraction"] - p) < 0.05


def test_dropout_scaling_in_eval_is_identity() -> None:
    t = ll.trace(nn.Dropout(0.5).eval(), torch.randn(4, 4))
    check = _check(t, "dropout_scaling")
    assert check.ok and "eval" in check.message and t[0].details["training"] is False


@pytest.mark.parametrize("kind", [nn.Dropout1d, nn.Dropout2d, nn.Dropout3d])
def test_channel_dropouts_scale_too(kind: type[nn.Module]) -> None:
    shape = {nn.Dropout1d: (4, 8, 5), nn.Dropout2d: (4, 8, 5, 5), nn.Dropout3d: (2, 8, 3, 3, 3)}[kind]
    t = ll.trace(kind(0.4).train(), torch.randn(*shape))
    assert _check(t, "dropout_scaling").ok


class _WrongScale(nn.Dropout):
    """Forgets the 1/(1-p) rescaling (the classic hand-written dropout bug)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x * (torch.rand_like(x) >= self.p)


class _LeakyEval(nn.Dropout):
    """Keeps dropping in eval mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(x, self.p, training=True)


def test_dropout_scaling_fails_for_broken_dropouts() -> None:
    with judged_as(_WrongScale, nn.Dropout), judged_as(_LeakyEval, nn.Dropout):
        check = _check(ll.trace(_WrongScale(0.5).train(), torch.randn(32, 32)), "dropout_scaling")
        assert not check.ok and check.actual > 0 and "x/(1-p)" in check.message
        check = _check(ll.trace(_LeakyEval(0.5).eval(), torch.randn(32, 32)), "dropout_scaling")
    assert not check.ok and "output equals input" in check.message


# -- recurrent ------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from([nn.RNN, nn.GRU, nn.LSTM]),
    layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    batch_first=st.booleans(),
    batched=st.booleans(),
)
def test_rnn_final_state_holds(
    kind: type[nn.RNNBase], layers: int, bidirectional: bool, batch_first: bool, batched: bool
) -> None:
    rnn = kind(3, 4, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    x = torch.randn(2, 5, 3) if batched else torch.randn(5, 3)
    t = ll.trace(rnn, x)
    check = _check(t, "rnn_final_state")
    assert check.ok, check.message
    if batched:
        assert t[0].details["seq_len"] == (5 if batch_first else 2)


class _ReversedRNN(nn.RNN):
    """Returns its output sequence time-reversed: h_n[-1] is no longer the last step."""

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = super().forward(x, hx)
        return out.flip(1 if self.batch_first else 0), h


def test_rnn_final_state_fails_when_the_time_axis_is_not_what_batch_first_says() -> None:
    with judged_as(_ReversedRNN, nn.RNN):
        t = ll.trace(_ReversedRNN(3, 4, batch_first=True), torch.randn(2, 5, 3))
    check = _check(t, "rnn_final_state")
    assert not check.ok and check.actual > 0.0 and "batch_first=True" in check.message


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_lstm_with_projection() -> None:
    t = ll.trace(nn.LSTM(3, 8, proj_size=2, num_layers=2), torch.randn(5, 2, 3))
    assert _check(t, "rnn_final_state").ok and t[0].details["proj_size"] == 2


# -- normalisation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (nn.BatchNorm1d(6), (8, 6)),
        (nn.BatchNorm1d(6), (8, 6, 5)),
        (nn.BatchNorm2d(3, affine=False), (4, 3, 5, 5)),
        (nn.BatchNorm1d(6, track_running_stats=False), (8, 6, 3)),
        (nn.InstanceNorm1d(6, affine=True), (4, 6, 9)),
        (nn.InstanceNorm1d(6), (6, 9)),
        (nn.LayerNorm(7), (3, 5, 7)),
        (nn.LayerNorm((5, 7)), (3, 5, 7)),
        (nn.GroupNorm(2, 6), (4, 6, 5)),
    ],
)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_norm_statistics_hold(layer: nn.Module, shape: tuple[int, ...], mode: str) -> None:
    # non-trivial affine parameters and running stats, so they matter
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(0.5, 2.0)
        for name, b in layer.named_buffers():
            if name == "running_var":
                b.uniform_(0.5, 2.0)
            elif name == "running_mean":
                b.uniform_(-1.0, 1.0)
    t = ll.trace(layer, torch.randn(*shape) * 3 + 1, mode=mode)  # type: ignore[arg-type]
    check = _check(t, "norm_statistics")
    assert check.ok, check.message
    assert t[0].details["training"] is (mode == "train")


def test_norm_statistics_in_half_precision() -> None:
    layer = nn.LayerNorm(16).to(torch.bfloat16)
    t = ll.trace(layer, torch.randn(4, 16, dtype=torch.bfloat16))
    assert _check(t, "norm_statistics").ok


class _WrongAxisNorm(nn.BatchNorm1d):
    """Normalises each sample over its features (LayerNorm-style) instead of each
    feature over the batch: a classic mix-up."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(x, x.shape[1:]) * self.weight + self.bias


def test_norm_statistics_fail_on_the_wrong_axes() -> None:
    with judged_as(_WrongAxisNorm, nn.BatchNorm1d):
        t = ll.trace(_WrongAxisNorm(6).train(), torch.randn(16, 6) * 3 + 1)
    check = _check(t, "norm_statistics")
    assert not check.ok and check.actual > 0.1 and "per channel" in check.message


def test_norm_statistics_fail_when_eval_ignores_running_stats() -> None:
    class BatchStatsAlways(nn.BatchNorm1d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)

    layer = BatchStatsAlways(4)
    with torch.no_grad():
        layer.running_mean.fill_(5.0)  # type: ignore[union-attr]
    with judged_as(BatchStatsAlways, nn.BatchNorm1d):
        t = ll.trace(layer.eval(), torch.randn(8, 4))
    assert not _check(t, "norm_statistics").ok


def test_an_eval_batch_norm_on_large_images_is_checked_on_a_stated_sample() -> None:
    """Running statistics apply to every position alike: the check reads the first
    sample's first 8192 // 16 = 512 of 4096 positions per channel, says so, passes
    torch's own output, and fails one that ignores the running statistics."""

    class BatchStatsAlways(nn.BatchNorm2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)

    for layer in (nn.BatchNorm2d(16), BatchStatsAlways(16)):
        with torch.no_grad():
            layer.running_mean.uniform_(-1, 1)  # type: ignore[union-attr]
            layer.running_var.uniform_(0.5, 2)  # type: ignore[union-attr]
        with judged_as(BatchStatsAlways, nn.BatchNorm2d):
            check = _check(ll.trace(layer.eval(), torch.randn(8, 16, 64, 64) * 2 + 1), "norm_statistics")
        assert "first 1 of 8 samples and the first 512 of 4096 positions per channel" in check.message
        assert check.ok == (type(layer) is nn.BatchNorm2d), check.message


@pytest.mark.parametrize(
    "layer",
    [nn.LayerNorm(64), nn.LayerNorm(64, bias=False), nn.LayerNorm(64, elementwise_affine=False), nn.RMSNorm(64)],
    ids=["affine", "no-bias", "plain", "rms"],
)
def test_layer_norms_on_a_long_sequence_are_checked_on_a_stated_sample(layer: nn.Module) -> None:
    """Each position is normalised on its own, so the check reads the first
    8192 elements' positions (128 of 600 here) and says so; torch's own
    output passes, in float32 and float64."""
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(0.5, 2.0)
    for dtype in (torch.float32, torch.float64):
        t = ll.trace(layer.to(dtype), torch.randn(2, 300, 64, dtype=dtype) * 3 + 1)
        check = _check(t, "norm_statistics")
        assert check.ok, check.message
        assert "checked on the first 128 of 600 positions" in check.message


class _OffByEpsNorm(nn.LayerNorm):
    """A LayerNorm that forgets eps and centres with the median: wrong by far
    more than rounding on the first positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.median(dim=-1, keepdim=True).values
        return centred / centred.std(dim=-1, keepdim=True) * self.weight + self.bias


def test_a_wrong_layer_norm_fails_on_the_sampled_positions() -> None:
    with judged_as(_OffByEpsNorm, nn.LayerNorm):
        t = ll.trace(_OffByEpsNorm(32), torch.randn(4, 100, 32) * 3 + 1)
    check = _check(t, "norm_statistics")
    assert not check.ok and check.actual > 0.01, check.message


def _ill_conditioned(layer: nn.Module) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """`layer`, an input whose groups are near-equal values far from zero (a batch of 2,
    a near-constant feature), and torch's own output recomputed in float64."""
    g = torch.Generator().manual_seed(0)
    if isinstance(layer, nn.BatchNorm2d):
        x = 100 + 1e-4 * torch.randn(2, 16, 1, 1, generator=g)
    elif isinstance(layer, nn.BatchNorm1d):  # eval: running statistics as near-constant as the input
        with torch.no_grad():
            layer.running_mean.fill_(1000.0)  # type: ignore[operator]
            layer.running_var.fill_(1e-6)  # type: ignore[operator]
        x = 1000 + 1e-2 * torch.randn(4, 16, generator=g)
    else:
        x = 1000 + 1e-2 * torch.randn(2, 16, 64, generator=g)
    exact = copy.deepcopy(layer).double()(x.double())
    return layer, x, exact


@pytest.mark.parametrize(
    "layer",
    [
        nn.BatchNorm2d(16).train(),
        nn.BatchNorm1d(16).eval(),
        nn.LayerNorm(64),
        nn.GroupNorm(4, 16),
        nn.InstanceNorm1d(16),
    ],
    ids=["batch-norm-train", "batch-norm-eval", "layer-norm", "group-norm", "instance-norm"],
)
def test_norm_statistics_allow_the_rounding_of_an_ill_conditioned_input(layer: nn.Module) -> None:
    """Centring near-equal values far from zero cancels digits: torch's float32 output
    is itself that far from the exact one, so the check allows it (the rounding of
    |x| scaled as y is) rather than calling the layer wrong."""
    layer, x, exact = _ill_conditioned(layer)
    t = ll.trace(layer, x)
    check = _check(t, "norm_statistics")
    assert check.ok, check.message
    own_error = float((layer(x).double() - exact).abs().max())
    n = int(t[0].measures["norm_n"])
    scale = float(exact.abs().max())
    assert own_error > torch.finfo(torch.float32).eps * (64 + 4 * n**0.5) * (1 + scale)  # past |y|-only rounding


class _NoBiasBatchNorm(nn.BatchNorm1d):
    """A BatchNorm that forgets its bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.batch_norm(x, None, None, self.weight, None, True, 0.0, self.eps)


def test_a_wrong_norm_still_fails_beside_an_ill_conditioned_channel() -> None:
    layer = _NoBiasBatchNorm(4).train()
    with torch.no_grad():
        layer.bias.fill_(0.5)
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    x[:, 0] = 100 + 1e-4 * x[:, 0]  # one near-constant feature far from zero
    with judged_as(_NoBiasBatchNorm, nn.BatchNorm1d):
        t = ll.trace(layer, x)
    check = _check(t, "norm_statistics")
    assert not check.ok and check.actual == pytest.approx(0.5, rel=1e-2), check.message  # the bias, and rounding


# -- inspectors' details ----------------------------------------------------------


def test_details_of_common_layers() -> None:
    model = nn.Sequential(
        nn.Conv1d(4, 8, 3, stride=2, padding=1, dilation=1, groups=2),
        nn.RNN(5, 6, num_layers=2, batch_first=True, nonlinearity="relu"),
    )
    t = ll.trace(model[0], torch.randn(1, 4, 10))
    d = t[0].details
    assert (d["in_channels"], d["out_channels"], d["kernel_size"], d["stride"], d["padding"], d["groups"]) == (
        4, 8, (3,), (2,), (1,), 2,
    )  # fmt: skip
    t = ll.trace(model[1], torch.randn(1, 4, 5))
    d = t[0].details
    assert (d["input_size"], d["hidden_size"], d["num_layers"], d["batch_first"], d["nonlinearity"]) == (
        5, 6, 2, True, "relu",
    )  # fmt: skip
    assert (d["seq_len"], d["batch"]) == (4, 1)
    t = ll.trace(nn.MultiheadAttention(8, 2, batch_first=True), (torch.randn(1, 3, 8),) * 3)
    assert (t[0].details["num_heads"], t[0].details["head_dim"]) == (2, 4)
    t = ll.trace(nn.ReLU(inplace=True), torch.randn(3))
    assert t[0].details["config"] == "inplace=True"
