"""Small example models that show what diagrams and checks are for: a residual
CNN (a skip connection), an LSTM tagger (three outputs, packed-free), a model
that reuses a block, and the deep stacks used by the benchmarks.

Each `build_*` takes a seed and returns `(model, example_input)`; building
never touches the global random state.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Example = tuple[nn.Module, torch.Tensor]


def _seeded(seed: int, make: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def _input(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn plus the input (projected when the shape changes), then relu."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNetLike(nn.Module):
    """A stem, two residual blocks, global average pooling and a classifier."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = BasicBlock(width, width)
        self.block2 = BasicBlock(width, 2 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(self.stem(x)))
        logits: torch.Tensor = self.fc(torch.flatten(self.pool(x), 1))
        return logits


class LSTMTagger(nn.Module):
    """Token ids -> embeddings -> bidirectional LSTM -> per-token tag scores."""

    def __init__(self, vocab: int = 100, dim: int = 32, hidden: int = 64, tags: int = 9, layers: int = 1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(0.1)
        self.tag = nn.Linear(2 * hidden, tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))
        scores: torch.Tensor = self.tag(self.dropout(out))
        return scores


class ReusedBlock(nn.Module):
    """The same block applied three times: one module, three calls."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.inp = nn.Linear(8, dim)
        self.block = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
        self.out = nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.inp(x)
        for _ in range(3):
            h = h + self.block(h)
        out: torch.Tensor = self.out(h)
        return out


def build_resnet_like(seed: int = 0) -> Example:
    """ResNetLike in eval mode with a (8, 3, 64, 64) input."""
    return _seeded(seed, ResNetLike).eval(), _input(seed, 8, 3, 64, 64)


def build_lstm_tagger(seed: int = 0, layers: int = 1, batch: int = 4, length: int = 12) -> Example:
    """LSTMTagger in eval mode with (batch, length) token ids."""
    tokens = torch.randint(1, 100, (batch, length), generator=torch.Generator().manual_seed(seed))
    return _seeded(seed, lambda: LSTMTagger(layers=layers)).eval(), tokens


def build_reused_block(seed: int = 0) -> Example:
    """ReusedBlock with a (4, 8) input."""
    return _seeded(seed, ReusedBlock).eval(), _input(seed, 4, 8)


def build_conv_stack(seed: int = 0, blocks: int = 100) -> Example:
    """`blocks` x (Conv1d + BatchNorm1d + ReLU + Dropout) on (8, 32, 256), eval mode."""

    def make() -> nn.Module:
        layers = [
            nn.Sequential(nn.Conv1d(32, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1))
            for _ in range(blocks)
        ]
        return nn.Sequential(*layers)

    return _seeded(seed, make).eval(), _input(seed, 8, 32, 256)


def build_deep_mlp(seed: int = 0, layers: int = 2000) -> Example:
    """`layers` x (Linear(64, 64) + ReLU) on (16, 64), eval mode."""
    make = lambda: nn.Sequential(*[m for _ in range(layers) for m in (nn.Linear(64, 64), nn.ReLU())])  # noqa: E731
    return _seeded(seed, make).eval(), _input(seed, 16, 64)


def build_transformer(seed: int = 0, layers: int = 12, d: int = 256) -> Example:
    """A TransformerEncoder (d_model=d, 8 heads) on (8, 128, d), eval mode."""

    def make() -> nn.Module:
        layer = nn.TransformerEncoderLayer(d, 8, 4 * d, batch_first=True)
        return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    return _seeded(seed, make).eval(), _input(seed, 8, 128, d)


def resnet_like() -> nn.Module:
    """Factory for the CLI: `layerlens diagram layerlens.models.gallery:resnet_like --input-size 8,3,64,64`."""
    return build_resnet_like()[0]


def lstm_tagger() -> nn.Module:
    """Factory for the CLI (`--input-size 4,12 --dtype long`)."""
    return build_lstm_tagger()[0]
