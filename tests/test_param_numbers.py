"""Batched parameter norms agree with numpy's float64 norm of each tensor, whatever
the mix of sizes (empty, small, past the batch and chunk limits)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import layerlens as ll
from layerlens.watching import param_numbers


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.sampled_from([0, 1, 3, 17, 64, 130]), min_size=1, max_size=10),
    small=st.integers(1, 80),
    chunk=st.integers(1, 200),
    seed=st.integers(0, 2**16),
)
def test_norms_and_update_norms_match_numpy(sizes: list[int], small: int, chunk: int, seed: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(param_numbers, "SMALL", small)
        mp.setattr(param_numbers, "CHUNK", chunk)
        gen = torch.Generator().manual_seed(seed)
        tensors = [torch.randn(s, generator=gen) * 3 for s in sizes]
        want = [float(np.linalg.norm(t.numpy().astype(np.float64))) for t in tensors]
        peaks = [float(np.abs(t.numpy()).max(initial=0.0)) for t in tensors]
        assert np.allclose(param_numbers.cpu_norms(tensors, both=True), want + peaks, rtol=1e-5)
        snapshot = param_numbers.Snapshot(tensors)
        assert np.allclose(snapshot.weight_norms(), want, rtol=1e-5)
        moved = [t + 0.5 for t in tensors]
        assert np.allclose(snapshot.update_norms(moved), [0.5 * np.sqrt(s) for s in sizes], rtol=1e-5)


def test_sparse_gradients_do_not_stop_the_watch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(20, 4, sparse=True), nn.Flatten(), nn.Linear(12, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ll.LayerlensWarning)
        with ll.watch(model, every=3, optimizer=opt) as w:
            for _ in range(6):
                opt.zero_grad()
                model(torch.randint(0, 20, (8, 3))).pow(2).mean().backward()
                opt.step()
    assert model[0].weight.grad is not None and model[0].weight.grad.is_sparse
    assert w.step_count == 6 and len(w.history) == 2
    table = next(p for p in w.history[-1].params if p.name == "0.weight")
    assert table.grad_norm is not None and table.grad_norm > 0 and table.update_ratio is not None


def test_watched_numbers_match_torch_after_a_parameter_is_replaced() -> None:
    """Batched gradient norms and the cached parameter views agree with torch's own
    numbers, also once `p.data` is swapped for new storage between sampled steps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 6)
    expected = []
    with ll.watch(model, every=1, optimizer=opt, trace_first=False) as w:
        for step in range(3):
            if step == 2:
                model[0].weight.data = torch.randn(5, 6) * 2  # new storage: the old view is stale
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            grads = {n: p.grad.norm().item() for n, p in model.named_parameters()}
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            opt.step()
            after = dict(model.named_parameters())
            ratios = {n: ((after[n].detach() - b).norm() / b.norm()).item() for n, b in before.items()}
            expected.append((grads, ratios))
    assert len(w.history) == 3
    for record, (grads, ratios) in zip(w.history, expected, strict=True):
        got = {p.name: p for p in record.params}
        for name in grads:
            assert got[name].grad_norm == pytest.approx(grads[name], rel=1e-5)
            assert got[name].update_ratio == pytest.approx(ratios[name], rel=1e-4)
