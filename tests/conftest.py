"""Shared models for the tests: small, deterministic, each showing one thing."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

import pytest
import torch
from torch import nn

import layerlens as ll

# The real-model suite runs in its own venv (`make zoo`), where timm is installed.
collect_ignore = [] if importlib.util.find_spec("timm") else ["zoo"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class ConvNet(nn.Module):
    """Conv1d -> BatchNorm1d -> ReLU -> Dropout -> MaxPool1d -> flatten -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(4, 8, kernel_size=3, padding=1),
            nn.BatchNorm1d(8),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.MaxPool1d(2),
        )
        self.head = nn.Linear(8 * 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class Tagger(nn.Module):
    """Embedding -> LSTM -> Linear per token; takes an optional keyword mask."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8, padding_idx=0)
        self.lstm = nn.LSTM(8, 6, batch_first=True)
        self.out = nn.Linear(6, 3)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h, _ = self.lstm(self.embed(tokens))
        logits: torch.Tensor = self.out(h)
        if mask is not None:
            logits = logits * mask.unsqueeze(-1)
        return logits


@pytest.fixture
def convnet() -> ConvNet:
    return ConvNet()


@pytest.fixture
def tagger() -> Tagger:
    return Tagger()


@contextlib.contextmanager
def judged_as(module_type: type, like: type) -> Iterator[None]:
    """Within the block, `module_type` (a buggy re-implementation whose forward
    overrides its parent's) is judged by the rules of `like`, as a user does
    with `layerlens.layers.judge_like` for a layer that computes the same thing."""
    ll.layers.judge_like(module_type, like)
    try:
        yield
    finally:
        ll.unregister(module_type)
