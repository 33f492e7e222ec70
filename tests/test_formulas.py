"""The shape formulas against torch's actual output shapes, over random layer
configurations (hypothesis), and the checks built on them."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

import layerlens as ll
from layerlens.formulas import conv_transpose_output_length
from tests.conftest import judged_as

SETTINGS = settings(max_examples=60, deadline=None)


def _conv_length_by_definition(L: int, k: int, s: int, p: int, d: int) -> int:
    """Count the window positions directly: an independent derivation."""
    span = d * (k - 1) + 1
    return len(range(0, L + 2 * p - span + 1, s))


@SETTINGS
@given(
    L=st.integers(1, 40),
    k=st.integers(1, 7),
    s=st.integers(1, 4),
    p=st.integers(0, 3),
    d=st.integers(1, 3),
)
def test_conv1d_formula_matches_torch_and_the_check_passes(L: int, k: int, s: int, p: int, d: int) -> None:
    assume(L + 2 * p >= d * (k - 1) + 1)
    conv = nn.Conv1d(2, 3, k, stride=s, padding=p, dilation=d)
    with torch.no_grad():
        actual = conv(torch.randn(1, 2, L)).shape[-1]
    assert ll.conv_output_length(L, k, s, p, d) == actual == _conv_length_by_definition(L, k, s, p, d)
    t = ll.trace(conv, torch.randn(2, L), values=None)  # unbatched input too
    (check,) = t[0].checks
    assert check.name == "conv_output_length" and check.ok and check.actual == actual
    assert str(actual) in check.message


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@SETTINGS
@given(
    H=st.integers(3, 20),
    W=st.integers(3, 20),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    p=st.sampled_from([0, 1, (1, 0), "same", "valid"]),
)
def test_conv2d_checks_each_spatial_dim(H: int, W: int, k: tuple[int, int], s: tuple[int, int], p: object) -> None:
    if p == "same":
        s = (1, 1)
    conv = nn.Conv2d(1, 2, k, stride=s, padding=p)  # type: ignore[arg-type]
    t = ll.trace(conv, torch.randn(1, 1, H, W), values=None)
    checks = t[0].checks
    assert [c.name for c in checks] == ["conv_output_length"] * 2
    assert [c.actual for c in checks] == list(t[0].output_shapes[0][-2:])
    assert all(c.ok for c in checks)
    assert "H:" in checks[0].message and "W:" in checks[1].message


def test_conv3d_and_padding_same() -> None:
    conv = nn.Conv3d(1, 1, 3, padding="same", dilation=2)
    t = ll.trace(conv, torch.randn(1, 1, 5, 6, 7), values=None)
    assert [c.expected for c in t[0].checks] == [5, 6, 7]
    assert t.ok and "padding='same' keeps L_in" in t[0].checks[0].message


@SETTINGS
@given(
    L=st.integers(1, 30),
    k=st.integers(1, 5),
    s=st.integers(1, 4),
    p=st.integers(0, 2),
    op=st.integers(0, 3),
    d=st.integers(1, 2),
)
def test_conv_transpose_formula_matches_torch(L: int, k: int, s: int, p: int, op: int, d: int) -> None:
    assume(op < max(s, d))
    assume(conv_transpose_output_length(L, k, s, p, op, d) > 0)
    conv = nn.ConvTranspose1d(1, 1, k, stride=s, padding=p, output_padding=op, dilation=d)
    t = ll.trace(conv, torch.randn(1, 1, L), values=None)
    assert t.ok
    assert t[0].checks[0].expected == t[0].output_shapes[0][-1]


def _pool_length_by_definition(L: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """Count window starts over the padded input. Without ceil_mode a window must
    fit; with it, a partial last window counts if it starts inside the input or
    the left padding (PyTorch's rule)."""
    span = d * (k - 1) + 1
    if not ceil:
        return len(range(0, L + 2 * p - span + 1, s))
    return sum(1 for start in range(0, L + 2 * p - span + s, s) if start < L + p)


@SETTINGS
@given(
    L=st.integers(1, 40),
    k=st.integers(1, 6),
    s=st.integers(1, 4),
    p=st.integers(0, 3),
    d=st.integers(1, 3),
    ceil=st.booleans(),
    kind=st.sampled_from(["max", "avg"]),
)
def test_pool_formula_matches_torch(L: int, k: int, s: int, p: int, d: int, ceil: bool, kind: str) -> None:
    if kind == "avg":
        d = 1
    assume(2 * p <= k)
    assume(L + 2 * p >= d * (k - 1) + 1)
    pool: nn.Module
    if kind == "max":
        pool = nn.MaxPool1d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    else:
        pool = nn.AvgPool1d(k, stride=s, padding=p, ceil_mode=ceil)
    try:
        with torch.no_grad():
            actual = pool(torch.randn(1, 1, L)).shape[-1]
    except RuntimeError:
        assume(False)
    assert ll.pool_output_length(L, k, s, p, d, ceil) == actual == _pool_length_by_definition(L, k, s, p, d, ceil)
    t = ll.trace(pool, torch.randn(1, 1, L), values=None)
    assert t.ok and t[0].checks[0].name == "pool_output_length"


@SETTINGS
@given(H=st.integers(2, 16), W=st.integers(2, 16), k=st.integers(1, 3), ceil=st.booleans())
def test_pool2d_checks_each_dim(H: int, W: int, k: int, ceil: bool) -> None:
    assume(min(H, W) >= k)
    pool = nn.MaxPool2d(k, ceil_mode=ceil)
    t = ll.trace(pool, torch.randn(1, 2, H, W), values=None)
    assert [c.actual for c in t[0].checks] == list(t[0].output_shapes[0][-2:])
    assert t.ok


def test_adaptive_pools_check_output_size() -> None:
    t = ll.trace(nn.AdaptiveAvgPool2d((3, None)), torch.randn(1, 2, 7, 5), values=None)
    assert [(c.expected, c.actual) for c in t[0].checks] == [(3, 3), (5, 5)]
    t = ll.trace(nn.AdaptiveMaxPool1d(4), torch.randn(2, 9), values=None)
    assert t.ok and t[0].checks[0].expected == 4


def test_tutorial_pools() -> None:
    # the tutorial's MaxPool2d((4, 1), stride=(1, 1)) on a 1x1x4x4 embedding output: 1x1x1x4
    t = ll.trace(nn.MaxPool2d((4, 1), stride=(1, 1)), torch.randn(1, 1, 4, 4))
    assert t[0].output_shapes == ((1, 1, 1, 4),) and t.ok
    # AvgPool1d(2, stride=2) on (1, 4, 4): (1, 4, 2) = floor((4 - 2)/2 + 1)
    t = ll.trace(nn.AvgPool1d(2, stride=2), torch.randn(1, 4, 4))
    assert t[0].checks[0].expected == 2 == t[0].output_shapes[0][-1]


def test_formula_functions_with_hand_numbers() -> None:
    # The contract's example: L_in=256, k=3, no padding -> 254.
    assert ll.conv_output_length(256, 3) == 254
    assert ll.conv_output_length(256, 3, stride=2, padding=1) == 128
    assert ll.conv_output_length(10, 3, padding="same") == 10
    assert ll.conv_output_length(10, 3, padding="valid") == 8
    assert ll.pool_output_length(5, 2) == 2  # stride defaults to kernel_size
    assert ll.pool_output_length(5, 2, ceil_mode=True) == 3
    assert ll.pool_output_length(4, 2, stride=2, padding=1, ceil_mode=True) == 3
    assert math.floor((7 + 2 * 0 - 1 * (3 - 1) - 1) / 2 + 1) == ll.conv_output_length(7, 3, stride=2)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        ll.conv_output_length(10, 3, stride=0)
    with pytest.raises(ValueError, match="padding must be"):
        ll.conv_output_length(10, 3, padding="full")


class _TrimmedConv(nn.Conv1d):
    """A conv whose forward silently drops the last position: the formula must catch it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[..., :-1]


class _SloppyPool(nn.MaxPool1d):
    """A pool that pads its output by one: caught by pool_output_length."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pad(super().forward(x), (0, 1))


@SETTINGS
@given(L=st.integers(4, 30), k=st.integers(1, 3))
def test_wrong_lengths_fail_the_checks(L: int, k: int) -> None:
    with judged_as(_TrimmedConv, nn.Conv1d), judged_as(_SloppyPool, nn.MaxPool1d):
        t = ll.trace(_TrimmedConv(1, 1, k), torch.randn(1, 1, L), values=None)
        (check,) = t[0].checks
        assert not check.ok and check.expected == check.actual + 1
        assert not t.ok and t.failures == [check]
        t = ll.trace(_SloppyPool(2), torch.randn(1, 1, L), values=None)
    assert not t[0].checks[0].ok
