"""Batched statistics of small tensors agree with numpy's own reductions, one tensor at a time."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import layerlens as ll
from layerlens.tensor_stats import StatsBatch

_VALUES = st.floats(-1e6, 1e6, width=32) | st.sampled_from([0.0, math.nan, math.inf, -math.inf])
_ARRAYS = st.lists(arrays(np.float32, st.integers(1, 300), elements=_VALUES), min_size=1, max_size=12)


class _Handle:
    stats = None


class _Tiny(StatsBatch):
    CAPACITY = 512  # flushes in the middle of a list, as a large model does
    FEW = 0  # results made by the vectorised path, however few the tensors


class _Growing(StatsBatch):
    FIRST, CAPACITY = 64, 4096  # grows several times in one list, keeping what it staged (results one by one)


def _expected(a: np.ndarray) -> tuple[float, float, int, int, float, np.ndarray]:
    a64 = a.astype(np.float64)
    return float(a.min()), float(a.max()), int(np.isnan(a).sum()), int(np.isinf(a).sum()), float((a == 0).mean()), a64


@settings(max_examples=60, deadline=None)
@given(_ARRAYS)
@pytest.mark.parametrize("kind", [_Tiny, _Growing])
def test_batched_stats_match_numpy_per_tensor(kind: type[StatsBatch], values: list[np.ndarray]) -> None:
    originals = [a.copy() for a in values]
    batch = kind()
    handles = [_Handle() for _ in values]
    for a, h in zip(values, handles, strict=True):
        batch.add(a, h)
        a[...] = 7.0  # an in-place edit after the layer ran does not change what was seen
    batch.flush()
    for h, original in zip(handles, originals, strict=True):
        s = h.stats
        assert s is not None
        lo, hi, nan, inf, zeros, a64 = _expected(original)
        np.testing.assert_equal([s.min, s.max, s.nan_count, s.inf_count], [lo, hi, nan, inf])
        assert s.zero_fraction == zeros
        if nan == 0 and inf == 0:
            assert math.isclose(s.mean, a64.mean(), rel_tol=1e-9, abs_tol=1e-9)
            std = a64.std(ddof=1) if a64.size > 1 else 0.0
            assert math.isclose(s.std, std, rel_tol=1e-6, abs_tol=1e-6 * max(1.0, abs(a64).max()))


def test_trace_stats_of_small_tensors_equal_torch() -> None:
    x = torch.randn(16, 64)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(inplace=True), torch.nn.Linear(64, 8))
    t = ll.trace(model, x)
    with torch.no_grad():
        h = model[0](x)
    s = t["0"].outputs[0].stats
    assert s is not None
    # the ReLU edited h in place afterwards; the Linear's output is recorded as it left the Linear
    assert s.min == float(h.min()) < 0
    assert math.isclose(s.mean, float(h.double().mean()), rel_tol=1e-6, abs_tol=1e-7)
    assert math.isclose(s.std, float(h.double().std()), rel_tol=1e-6)
    r = t["1"].outputs[0].stats
    assert r is not None and r.min == 0.0 and r.zero_fraction == float((h.clamp(min=0) == 0).float().mean())


def test_infos_made_before_the_batch_is_reduced_get_their_stats_at_finalize() -> None:
    from layerlens.tensor_capture import Capture

    capture = Capture("stats", batch=True)
    a, b = torch.randn(16, 64), torch.randn(8, 8)
    first, again, other = capture.tensor("", a, "x"), capture.tensor("", a, "y"), capture.tensor("", b, "z")
    assert first.stats is None and again.stats is None  # waiting for the batch
    capture.finalize()
    for info, t in ((first, a), (again, a), (other, b)):
        assert info.stats is not None
        assert info.stats.min == float(t.min()) and math.isclose(info.stats.std, float(t.double().std()), rel_tol=1e-6)
