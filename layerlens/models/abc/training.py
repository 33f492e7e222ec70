"""Training the abc classifier as the tutorial does, its training curve, and
saving and loading it safely.

Adam (lr 1e-3), batches of 64 over 6,400 generated strings per epoch, a
held-out validation set checked after every epoch, and an early stop once a
target accuracy (or loss) is reached. Deterministic for a given seed, and
without touching the caller's random state.
"""

from __future__ import annotations

import csv
import json
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...render.figure import new_figure
from . import model as abc

MODEL_FILE = "abc_model.pt"
VOCAB_FILE = "abc_vocab.json"


@dataclass
class History:
    """Per epoch: mean training loss, validation accuracy, seconds since the start."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def to_csv(self, path: str | Path) -> Path:
        """Write `epoch,loss,accuracy,seconds` rows."""
        target = Path(path)
        with target.open("w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["epoch", "loss", "accuracy", "seconds"])
            for i, row in enumerate(zip(self.loss, self.accuracy, self.seconds, strict=True), start=1):
                out.writerow([i, f"{row[0]:.6f}", f"{row[1]:.4f}", f"{row[2]:.3f}"])
        return target

    def plot(self, path: str | Path) -> Path | None:
        """The tutorial's curve (loss and accuracy per epoch) as an image; None
        when matplotlib is not installed (`pip install torch-layerlens[plot]`)."""
        fig = new_figure(6, 3.5)
        if fig is None:
            return None
        epochs = list(range(1, len(self.loss) + 1))
        ax = fig.subplots()
        ax.plot(epochs, self.loss, label="loss", color="tab:red")
        ax.plot(epochs, self.accuracy, label="accuracy", color="tab:blue")
        ax.set_xlabel("epoch")
        ax.set_title("abc classifier: training loss and validation accuracy")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        return Path(path)


@dataclass
class TrainResult:
    """A trained model and how it got there."""

    model: abc.AbcClassifier
    history: History
    seconds: float
    stopped_early: bool
    watch: Any = None  # the layerlens.watch that observed training, when asked for

    @property
    def epochs(self) -> int:
        return len(self.history.loss)

    @property
    def accuracy(self) -> float:
        """Validation accuracy after the last epoch."""
        return self.history.accuracy[-1] if self.history.accuracy else 0.0


def train(
    epochs: int = 30,
    seed: int = 0,
    lr: float = 1e-3,
    batch_size: int = 64,
    train_size: int = 6400,
    val_size: int = 2000,
    target_accuracy: float | None = 0.999,
    target_loss: float | None = 1e-5,
    progress: bool = True,
    watch_every: int | None = None,
) -> TrainResult:
    """Train a fresh classifier; stop early once validation accuracy reaches
    `target_accuracy` or the epoch's mean loss falls to `target_loss`.
    `watch_every` trains under `layerlens.watch(model, every=watch_every)`."""
    texts, classes = abc.generate(train_size, seed)
    x, y = abc.encode(texts), torch.tensor(classes)
    val_texts, val_classes = abc.generate(val_size, seed + 1)
    history = History()
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = abc.AbcClassifier()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        shown = _Progress(epochs) if progress else None
        watcher = _watch(model, optimizer, watch_every)
        try:
            for _ in range(epochs):
                history.loss.append(_epoch(model, optimizer, x, y, batch_size, watcher))
                history.accuracy.append(abc.accuracy(model, val_texts, val_classes))
                history.seconds.append(time.perf_counter() - start)
                if shown is not None:
                    shown.update(history)
                if _reached(history, target_accuracy, target_loss):
                    break
        finally:
            if shown is not None:
                shown.close()
            if watcher is not None:
                watcher.detach()
    model.eval()
    elapsed = time.perf_counter() - start
    return TrainResult(model, history, elapsed, stopped_early=len(history.loss) < epochs, watch=watcher)


def _watch(model: abc.AbcClassifier, optimizer: torch.optim.Optimizer, every: int | None) -> Any:
    if every is None:
        return None
    from ...watching import watch

    return watch(model, every=every, optimizer=optimizer).attach()


def _epoch(
    model: abc.AbcClassifier,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    watcher: Any = None,
) -> float:
    """One pass over the training set in batches, as the tutorial does; the mean loss."""
    model.train()
    losses: list[float] = []
    for i in range(0, len(x) - batch_size + 1, batch_size):
        loss = model(x[i : i + batch_size], y[i : i + batch_size])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if watcher is not None:
            watcher.log(loss=losses[-1])
    return sum(losses) / len(losses)


def _reached(history: History, target_accuracy: float | None, target_loss: float | None) -> bool:
    acc_done = target_accuracy is not None and history.accuracy[-1] >= target_accuracy
    loss_done = target_loss is not None and history.loss[-1] <= target_loss
    return acc_done or loss_done


class _Progress:
    """Epoch, loss and accuracy as training goes: a tqdm bar when tqdm is
    installed, a plain line per epoch otherwise (on stderr either way)."""

    def __init__(self, total: int) -> None:
        self.total = total
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar: Any = None
        else:
            self.bar = tqdm(total=total, desc="training abc", unit="epoch", file=sys.stderr)

    def update(self, history: History) -> None:
        loss, acc = history.loss[-1], history.accuracy[-1]
        if self.bar is None:
            print(f"epoch {len(history.loss)}/{self.total}  loss {loss:.4f}  accuracy {acc:.2%}", file=sys.stderr)
        else:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", accuracy=f"{acc:.2%}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def save(model: abc.AbcClassifier, folder: str | Path) -> Path:
    """Write the weights (`abc_model.pt`, a state_dict) and the vocabulary
    (`abc_vocab.json`) into `folder`; returns the weights' path."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), target / MODEL_FILE)
    meta = {"vocab": list(abc.VOCAB), "seq_len": abc.SEQ_LEN, "classes": abc.NUM_CLASSES}
    (target / VOCAB_FILE).write_text(json.dumps(meta), encoding="utf-8")
    return target / MODEL_FILE


def load(folder: str | Path) -> abc.AbcClassifier:
    """A classifier saved by `save`, read with `torch.load(weights_only=True)`:
    a corrupt, foreign or mismatched file is a ValueError, never unpickled."""
    target = Path(folder)
    _check_vocab(target / VOCAB_FILE)
    path = target / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no saved abc model at {path}")
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise ValueError(f"{path} is not a readable abc model: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not the state_dict of an abc model")
    model = abc.AbcClassifier()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} was saved from a different model: {' '.join(str(exc).split())[:300]}") from None
    return model.eval()


def _check_vocab(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"no vocabulary file at {path}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("vocab") != list(abc.VOCAB) or meta.get("seq_len") != abc.SEQ_LEN:
        raise ValueError(f"{path} does not describe this model's vocabulary (the 52 ASCII letters, length 6)")
