"""The fixed model set, each with its input, loss for a training step, and notes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from layerlens.models import abc
from layerlens.models import gallery as models


@dataclass(frozen=True)
class Case:
    name: str
    short: str  # for the targets table
    build: Callable[[], tuple[nn.Module, torch.Tensor]]
    note: str = ""
    unfused: bool = False  # the plain forward runs with the MHA fast path off (what tracing shows)


def _abc() -> tuple[nn.Module, torch.Tensor]:
    texts, _ = abc.generate(64, seed=0)
    return abc.build_model().eval(), abc.encode(texts)


def _tagger() -> tuple[nn.Module, torch.Tensor]:
    return models.build_lstm_tagger(layers=3, batch=16, length=200)


CASES = (
    Case("abc classifier, batch 64", "abc", _abc),
    Case("100 x (Conv1d+BatchNorm1d+ReLU+Dropout), (8,32,256)", "conv stack", models.build_conv_stack),
    Case("2,000 x (Linear(64,64)+ReLU), batch 16", "2,000-layer MLP", models.build_deep_mlp),
    Case(
        "TransformerEncoder, 12 layers, d=256, (8,128,256)",
        "transformer",
        models.build_transformer,
        "baseline: the unfused forward (the fast path skips the submodules a trace shows)",
        unfused=True,
    ),
    Case("3-layer bidirectional LSTM tagger, (16,200) tokens", "LSTM tagger", _tagger),
    Case("ResNet-like 2D CNN, (8,3,64,64)", "ResNet-like CNN", models.build_resnet_like),
)


def _small_mlp() -> tuple[nn.Module, torch.Tensor]:
    """The smallest loop a user debugs: a 3-layer MLP on a batch of 32."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        x = torch.randn(32, 32)
    return model, x


# watch's targets hold on these too: the model set plus the smallest training loop
TRAINING_CASES = (*CASES, Case("3-layer MLP (32-64-64-10), batch 32", "small MLP", _small_mlp))


def training_loss(output: torch.Tensor) -> torch.Tensor:
    """A loss for any output: the mean square (the benchmark times the step, not learning)."""
    return output.float().pow(2).mean()
