"""The tutorial's "abc" string classifier: our bundled example model.

Task: a string of 5 or 6 ASCII letters is class 0 if it contains `a`, else
class 1 if it contains `b`, else class 2 if it contains `c` (lower case only).
Encoding: the 52 ASCII letters map to 1..52 (`string.ascii_letters` order),
and 0 pads a 5-letter string to length 6.
Model, as in the tutorial: Embedding(53, 10, padding_idx=0) -> RNN(10, 20,
num_layers=2, batch_first=True) -> reshape(batch, -1) -> Linear(120, 3),
with cross-entropy loss when labels are given.

Training, the training curve and persistence are in `training` beside this
module; `layerlens.models.abc` has both (`abc.train`, `abc.save`, `abc.load`).
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

VOCAB: tuple[str, ...] = tuple(string.ascii_letters)
SEQ_LEN = 6
NUM_CLASSES = 3
SAMPLE_STRINGS = ("xyzab", "qwbert", "cxyzw", "abcabc", "Bbxyz", "zzzzc")
RULE = "5 or 6 ASCII letters; class 0 if it contains 'a', else 1 for 'b', else 2 for 'c'"

_INDEX = {ch: i + 1 for i, ch in enumerate(VOCAB)}


class AbcClassifier(nn.Module):
    """Embedding -> 2-layer RNN -> flatten -> Linear, as in the tutorial."""

    def __init__(self, vocab_size: int = len(VOCAB), embedding_size: int = 10) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size + 1, embedding_size, padding_idx=0)
        self.rnn = nn.RNN(embedding_size, 20, num_layers=2, batch_first=True)
        self.linear = nn.Linear(SEQ_LEN * 20, NUM_CLASSES)
        self.loss = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of shape (batch, 3); the mean cross-entropy instead when `y` is given."""
        x = self.embedding(x)
        x, _ = self.rnn(x)
        x = x.reshape(x.shape[0], -1)
        x = self.linear(x)
        if y is not None:
            loss: torch.Tensor = self.loss(x, y)
            return loss
        return x


def build_model(seed: int | None = 0) -> AbcClassifier:
    """A fresh (untrained) classifier, its weights drawn from a private generator
    so building one does not disturb the caller's random state."""
    if seed is None:
        return AbcClassifier()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AbcClassifier()


# -- the task -----------------------------------------------------------------


def label(text: str) -> int:
    """The ground truth: 0 if `text` contains 'a', else 1 for 'b', else 2 for 'c'."""
    _validate(text)
    for cls, ch in enumerate("abc"):
        if ch in text:
            return cls
    raise ValueError(f"{text!r} contains none of 'a', 'b', 'c', so it has no class under the abc rule ({RULE})")


def generate(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """`n` strings made as the tutorial makes them (4 or 5 random letters plus one
    of a/b/c, shuffled) and their classes; the same `seed` gives the same strings."""
    rng = random.Random(seed)
    texts, classes = [], []
    for _ in range(n):
        length, need = rng.choice([5, 6]), rng.choice("abc")  # in the tutorial's order
        chars = [*rng.choices(string.ascii_letters, k=length - 1), need]
        rng.shuffle(chars)
        text = "".join(chars)
        texts.append(text)
        classes.append(label(text))
    return texts, classes


def encode(texts: Sequence[str]) -> torch.Tensor:
    """Strings -> a (batch, 6) long tensor of vocabulary indices (0 = padding)."""
    if isinstance(texts, str):
        raise TypeError(f"encode() takes a list of strings, got the single string {texts!r}")
    rows = []
    for text in texts:
        _validate(text)
        rows.append([_INDEX[ch] for ch in text] + [0] * (SEQ_LEN - len(text)))
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), SEQ_LEN)


def _validate(text: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"expected a string of 5 or 6 ASCII letters, got {type(text).__name__}")
    if len(text) not in (5, 6):
        raise ValueError(f"{text!r} has {len(text)} characters; the abc model takes {RULE}")
    bad = sorted({ch for ch in text if ch not in _INDEX})
    if bad:
        raise ValueError(f"{text!r} contains {''.join(bad)!r}, outside the vocabulary of the 52 ASCII letters")


# -- using a model ------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one string."""

    text: str
    cls: int
    probabilities: tuple[float, float, float]


def predict(model: nn.Module, texts: Sequence[str]) -> list[Prediction]:
    """Classes and probabilities for `texts` (validated like `encode`); runs in eval
    mode under no_grad and leaves the model's mode as it was."""
    x = encode(texts)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)
    finally:
        model.train(was_training)
    return [
        Prediction(text, int(p.argmax()), (float(p[0]), float(p[1]), float(p[2])))
        for text, p in zip(texts, probs, strict=True)
    ]


def accuracy(model: nn.Module, texts: Sequence[str], classes: Sequence[int]) -> float:
    """Fraction of `texts` classified as `classes`."""
    predicted = [p.cls for p in predict(model, texts)]
    return sum(int(p == c) for p, c in zip(predicted, classes, strict=True)) / max(1, len(classes))
