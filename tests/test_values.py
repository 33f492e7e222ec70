"""values="stats" | "full" | None: statistics agree with numpy on the same data,
copies are real copies, the memory budget holds, and no tensor is kept alive."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import layerlens as ll
from layerlens.records import TensorStats
from layerlens.tensor_capture import Capture
from layerlens.value_arena import ValueArena


def _numpy_stats(a: np.ndarray) -> TensorStats:
    """Independent reference, in float64 numpy."""
    f = a.astype(np.float64)
    return TensorStats(
        min=float(f.min()),
        max=float(f.max()),
        mean=float(f.mean()),
        std=float(f.std(ddof=1)) if f.size > 1 else 0.0,
        nan_count=int(np.isnan(f).sum()),
        inf_count=int(np.isinf(f).sum()),
        zero_fraction=float((f == 0).mean()),
    )


def _assert_stats(got: TensorStats | None, want: TensorStats) -> None:
    assert got is not None
    for field in ("min", "max", "mean", "std", "zero_fraction"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-5, atol=1e-6, err_msg=field)
    assert (got.nan_count, got.inf_count) == (want.nan_count, want.inf_count)


def test_float_stats_match_numpy() -> None:
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU())
    x = torch.randn(9, 5)
    t = ll.trace(model, x)
    with torch.no_grad():
        hidden = model[0](x).numpy()
    _assert_stats(t[0].inputs[0].stats, _numpy_stats(x.numpy()))
    _assert_stats(t["0"].outputs[0].stats, _numpy_stats(hidden))
    _assert_stats(t["1"].outputs[0].stats, _numpy_stats(np.maximum(hidden, 0)))
    assert t["1"].outputs[0].stats.zero_fraction > 0  # type: ignore[union-attr]


def test_integer_and_bool_stats_make_sense() -> None:
    class Idx(nn.Module):
        def forward(self, ids: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
            return ids * flags

    ids = torch.tensor([[0, 3, 5], [7, 0, 2]])
    flags = torch.tensor([[True, False, True], [True, True, False]])
    t = ll.trace(Idx(), (ids, flags))
    _assert_stats(t[0].inputs[0].stats, _numpy_stats(ids.numpy()))
    s = t[0].inputs[1].stats
    assert s is not None and (s.min, s.max) == (0.0, 1.0)
    assert s.mean == pytest.approx(4 / 6)  # a bool's mean is its fraction of True
    assert s.zero_fraction == pytest.approx(2 / 6)


def test_nan_and_inf_are_counted() -> None:
    x = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 0.0, float("nan")])
    t = ll.trace(nn.Identity(), x)
    s = t[0].inputs[0].stats
    assert s is not None
    assert (s.nan_count, s.inf_count) == (2, 2)
    assert s.zero_fraction == pytest.approx(1 / 6)


def test_single_element_and_empty_tensors() -> None:
    t = ll.trace(nn.Identity(), torch.tensor([3.5]))
    s = t[0].inputs[0].stats
    assert s is not None and (s.min, s.max, s.mean, s.std) == (3.5, 3.5, 3.5, 0.0)
    t = ll.trace(nn.Identity(), torch.empty(0, 3))
    assert t[0].inputs[0].stats is None and t[0].input_shapes == ((0, 3),)


def test_half_precision_stats() -> None:
    x = torch.randn(64, dtype=torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        t = ll.trace(nn.Identity(), x.to(dtype))
        want = _numpy_stats(x.to(dtype).float().numpy())
        got = t[0].inputs[0].stats
        assert got is not None and t[0].inputs[0].dtype == str(dtype).removeprefix("torch.")
        np.testing.assert_allclose([got.min, got.max], [want.min, want.max])
        np.testing.assert_allclose(got.mean, want.mean, atol=1e-2)


def test_inplace_layer_sees_its_input_before_it_is_overwritten() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True))
    x = torch.randn(8, 4)
    with torch.no_grad():
        pre = model[0](x).numpy().copy()
    t = ll.trace(model, x, values="full")
    relu = t["1"]
    assert relu.inputs[0].stats is not None and relu.inputs[0].stats.min == pytest.approx(pre.min())
    np.testing.assert_array_equal(relu.inputs[0].value, pre)  # type: ignore[arg-type]
    np.testing.assert_array_equal(relu.outputs[0].value, np.maximum(pre, 0))  # type: ignore[arg-type]


def test_full_values_are_independent_copies() -> None:
    x = torch.randn(3, 4)
    t = ll.trace(nn.Identity(), x, values="full")
    value = t[0].inputs[0].value
    assert isinstance(value, np.ndarray)
    np.testing.assert_array_equal(value, x.numpy())
    x.add_(1.0)
    assert not np.array_equal(value, x.numpy())  # later edits of the tensor do not leak in


def test_full_values_of_bfloat16_are_kept_as_float32() -> None:
    """numpy has no bfloat16: the copy is widened, exactly (every bfloat16 is a float32)."""
    x = torch.randn(5, 7).to(torch.bfloat16).t()
    value = ll.trace(nn.Identity(), x, values="full")[0].inputs[0].value
    assert isinstance(value, np.ndarray) and value.dtype == np.float32
    np.testing.assert_array_equal(value, x.float().numpy())


_ARENA_DTYPES = (torch.float32, torch.float64, torch.float16, torch.int64, torch.int8, torch.bool, torch.complex64)


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(0, 9), min_size=0, max_size=3), min_size=1, max_size=12),
    dtypes=st.lists(st.sampled_from(_ARENA_DTYPES), min_size=1, max_size=12),
    transpose=st.booleans(),
)
def test_arena_copies_equal_their_tensors_and_share_no_bytes(
    shapes: list[list[int]], dtypes: list[torch.dtype], transpose: bool
) -> None:
    """Every carved copy equals its tensor (any dtype, empty or strided) and owns
    its bytes: overwriting one leaves the others as they were."""
    arena = ValueArena()
    originals, copies = [], []
    for shape, dtype in zip(shapes, dtypes * len(shapes), strict=False):
        t = (torch.randn(shape) * 10).to(dtype)
        if transpose and t.dim() >= 2:
            t = t.transpose(0, 1)
        originals.append(t)
        copies.append(arena.copy(t))
    for i, c in enumerate(copies):
        c.fill_(1)
        for t, other in zip(originals[i + 1 :], copies[i + 1 :], strict=True):
            assert torch.equal(other, t)
        assert c.is_contiguous() and c.device.type == "cpu"


def test_full_values_of_many_calls_share_a_few_allocations() -> None:
    """Kept copies are carved from a few blocks, not one allocation per call: a
    copy per call beside the forward's freed activations left the peak memory up
    to 1.4x the bytes kept."""
    model = nn.Sequential(*[nn.Linear(32, 32) for _ in range(300)])
    x = torch.randn(8, 32)
    t = ll.trace(model, x, values="full")
    values = [i.value for r in t for i in (*r.inputs, *r.outputs) if i.value is not None]
    assert len({id(v) for v in values}) >= 300
    blocks = {v.base.untyped_storage().data_ptr() for v in values}  # numpy's base: the carved torch view
    assert len(blocks) <= 3
    want = x
    for layer, r in zip(model, list(t)[1:], strict=True):
        want = layer(want).detach()
        np.testing.assert_array_equal(r.outputs[0].value, want.numpy())  # type: ignore[arg-type]


def test_full_values_respect_the_budget() -> None:
    model = nn.Sequential(*[nn.Linear(256, 256) for _ in range(4)])
    x = torch.randn(64, 256)  # 64 KiB per activation
    budget = 150 * 1024
    with pytest.warns(ll.LayerlensWarning, match="max_bytes"):
        t = ll.trace(model, x, values="full", max_bytes=budget)
    kept = {id(i.value): i.value.nbytes for r in t for i in (*r.inputs, *r.outputs) if i.value is not None}
    assert 0 < sum(kept.values()) <= budget
    assert t[-1].outputs[0].value is None and t[-1].outputs[0].stats is not None
    assert any("max_bytes" in w for w in t.warnings)


def test_values_none_records_shapes_only(convnet: nn.Module) -> None:
    t = ll.trace(convnet, torch.randn(2, 4, 32), values=None)
    assert all(i.stats is None and i.value is None for r in t for i in (*r.inputs, *r.outputs))
    assert t["features.0"].output_shapes == ((2, 8, 32),)
    assert {c.name for c in t.checks} == {"conv_output_length", "pool_output_length"}


def test_shared_tensor_is_summarised_once() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Identity())
    t = ll.trace(model, torch.randn(2, 4), values="full")
    # the Linear's output is the Identity's input: the same copy serves both
    assert t["0"].outputs[0].value is t["1"].inputs[0].value
    assert t["0"].outputs[0].stats == t["1"].inputs[0].stats


def test_no_tensor_is_kept_alive_by_a_trace() -> None:
    refs = []

    class Keep(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x * 2
            refs.append(weakref.ref(y))
            return y

    model = nn.Sequential(Keep(), nn.ReLU())
    t = ll.trace(model, torch.randn(4, 4))
    gc.collect()
    assert refs and refs[0]() is None
    assert t[1].outputs[0].stats is not None


def test_trace_does_not_keep_the_model_alive() -> None:
    model = nn.Sequential(nn.Linear(3, 3))
    ref = weakref.ref(model)
    t = ll.trace(model, torch.randn(1, 3))
    del model
    gc.collect()
    assert ref() is None and len(t) == 2


def test_bad_values_option() -> None:
    with pytest.raises(ValueError, match="values must be"):
        ll.trace(nn.Identity(), torch.ones(1), values="everything")  # type: ignore[arg-type]


class _AsIfOnADevice(Capture):
    """Treats the CPU like an accelerator: every statistic and measurement is kept
    as a tensor and moved to the host in one transfer, as on a GPU."""

    @staticmethod
    def _reads_are_free(device: torch.device) -> bool:
        return False


def test_deferred_device_path_gives_the_same_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import ConvNet

    model = ConvNet()
    x = torch.randn(2, 4, 32)
    x[0, 0, :3] = float("nan")
    eager = ll.trace(model, x, mode="train")
    transfers = []
    real_cat = torch.cat

    def counting_cat(*args: object, **kwargs: object) -> torch.Tensor:
        transfers.append(1)
        return real_cat(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("layerlens.tracing.Capture", _AsIfOnADevice)
    monkeypatch.setattr("layerlens.tensor_capture.torch.cat", counting_cat)
    deferred = ll.trace(model, x, mode="train")
    assert len(transfers) == 1  # one host transfer for the whole trace
    assert [c.name for c in deferred.checks] == [c.name for c in eager.checks]
    assert [c.ok for c in deferred.checks] == [c.ok for c in eager.checks]
    for a, b in zip(eager, deferred, strict=True):
        for s, t in zip((*a.inputs, *a.outputs), (*b.inputs, *b.outputs), strict=True):
            assert (s.stats is None) == (t.stats is None)
            if s.stats is not None and t.stats is not None:
                assert (s.stats.nan_count, s.stats.inf_count) == (t.stats.nan_count, t.stats.inf_count)
                np.testing.assert_allclose(
                    [s.stats.min, s.stats.max, s.stats.mean, s.stats.std, s.stats.zero_fraction],
                    [t.stats.min, t.stats.max, t.stats.mean, t.stats.std, t.stats.zero_fraction],
                    rtol=1e-5,
                    atol=1e-6,
                )
    nan_stats = deferred[0].inputs[0].stats
    assert nan_stats is not None and nan_stats.nan_count == 3


def test_meta_device_model_gives_shapes_without_memory() -> None:
    from layerlens.models.abc import AbcClassifier

    with torch.device("meta"):
        model = AbcClassifier()
    t = ll.trace(model, input_size=(64, 6), dtypes=[torch.long])
    assert t["rnn"].output_shapes == ((64, 6, 20), (2, 64, 20))
    assert t[0].inputs[0].device == "meta" and t[0].inputs[0].stats is None
    assert not t.warnings


def test_stats_with_large_mean_keep_their_digits() -> None:
    """Sum-of-squares variance cancels catastrophically when |mean| >> std; the
    stats must fall back to an exact computation."""
    x = 1000.0 + torch.randn(10_000) * 1e-3
    s = ll.trace(nn.Identity(), x)[0].inputs[0].stats
    assert s is not None
    np.testing.assert_allclose(s.std, x.double().std().item(), rtol=1e-3)


def _patterned(n: int, dtype: torch.dtype, pattern: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    if pattern == "relu":
        x = x.clamp(min=0)
    elif pattern == "nan_inf" and n >= 4:
        x[::7] = float("nan")
        x[1] = float("inf")
        x[2] = -float("inf")
        x[3] = 0.0
    elif pattern == "offset":
        x = 50.0 + x
    x = x.to(dtype)
    if pattern == "strided" and n >= 2:  # a non-contiguous view
        x = x[: n - n % 2].reshape(-1, 2).t()
    return x


@pytest.mark.parametrize("n", [1, 7, 5_000, 100_000, 600_000])  # numpy small, numpy BLAS, torch
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("pattern", ["normal", "relu", "nan_inf", "offset", "strided"])
def test_stats_match_numpy_at_every_size(n: int, dtype: torch.dtype, pattern: str) -> None:
    """Each size takes a different code path (numpy reductions, BLAS dot products,
    torch's threads); all must agree with float64 numpy on the same data."""
    x = _patterned(n, dtype, pattern)
    got = Capture("stats").tensor("", x, "x").stats
    want = _numpy_stats(x.numpy())
    if pattern == "nan_inf" and n >= 4:  # NaN poisons mean and std: only what stays defined
        assert got is not None and (got.nan_count, got.inf_count) == (want.nan_count, want.inf_count)
        np.testing.assert_allclose(got.zero_fraction, want.zero_fraction, rtol=1e-6)
        return
    _assert_stats(got, want)


def test_sampled_stats_keep_extremes_and_nan_exact() -> None:
    """`watch` summarises large outputs from a strided sample: min, max and the
    NaN/Inf counts stay exact, mean and std are estimates."""
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    x[12_345] = 40.0  # off the sample's stride: only an exact pass sees it
    got = Capture("stats", sample=4096).tensor("", x, "x").stats
    assert got is not None and (got.min, got.max) == (x.min().item(), 40.0)
    assert abs(got.mean - x.mean().item()) < 0.1 and abs(got.std - x.std().item()) < 0.1
    x[777] = float("nan")
    x[778] = -float("inf")
    got = Capture("stats", sample=4096).tensor("", x, "x").stats
    assert got is not None and (got.nan_count, got.inf_count) == (1, 1)
