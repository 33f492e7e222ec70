"""The training frameworks people use: a real Lightning `Trainer.fit` (one process,
and two DDP processes on CPU) and a real Hugging Face `Trainer.train`, each with
layerlens's callback; a bug is named, a healthy twin raises nothing."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

pl = pytest.importorskip("lightning.pytorch")
pytest.importorskip("transformers")


def _data(n: int = 64) -> torch.utils.data.DataLoader[Any]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=gen)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


class Regressor(pl.LightningModule):
    def __init__(self, freeze_head: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1))
        if freeze_head:
            self.net[3].requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self.net(x), y)  # the submodule, not self(x): steps come from the callback

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _fit(module: pl.LightningModule, tmp_path: Path, steps: int = 12) -> Any:
    from lightning.pytorch.loggers import CSVLogger

    from layerlens.lightning import WatchCallback

    torch.manual_seed(0)
    callback = WatchCallback(every=5)
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path), callbacks=[callback],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, val_check_interval=6,
        num_sanity_val_steps=1,
    )  # fmt: skip
    trainer.fit(module, _data(), _data(16))
    return callback, trainer


def test_lightning_fit_is_watched_and_logged(tmp_path: Path) -> None:
    module = Regressor()
    callback, trainer = _fit(module, tmp_path)
    w = callback.watch
    assert [r.step for r in w.history] == [1, 6, 11] and w.step_count == 12
    first = w.history[0]
    assert first.layer("net.0").output is not None and first.layer("net.0").grad_norm is not None
    assert all(p.update_ratio is not None and p.update_ratio > 0 for p in first.params)  # updates marked in order
    assert callback.first_trace is not None and callback.first_trace.ok
    assert callback.first_trace[0].input_shapes == ((8, 6),)
    assert w.alerts == []
    assert not module._forward_hooks and not module._forward_pre_hooks  # detached at the end
    with open(next(Path(trainer.logger.log_dir).glob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    assert any(row.get("layerlens/grad_norm/net.0.weight") for row in rows)


def test_lightning_names_a_frozen_layer(tmp_path: Path) -> None:
    callback, _ = _fit(Regressor(freeze_head=True), tmp_path)
    assert [(a.kind, a.layer) for a in callback.watch.alerts] == [("frozen", "net.3")]


class TwoOptimizers(pl.LightningModule):
    """An encoder and a decoder with an optimizer each (manual optimization, as a GAN's)."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.enc, self.dec = nn.Linear(6, 16), nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.relu(self.enc(x)))

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        enc, dec = self.optimizers()  # type: ignore[misc]
        enc.zero_grad()
        dec.zero_grad()
        self.manual_backward(F.mse_loss(self.dec(torch.relu(self.enc(x))), y))
        enc.step()
        dec.step()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.SGD(self.enc.parameters(), lr=0.05), torch.optim.Adam(self.dec.parameters(), lr=1e-2)]


def test_lightning_watches_a_module_that_two_optimizers_train(tmp_path: Path) -> None:
    callback, _ = _fit(TwoOptimizers(), tmp_path)
    w = callback.watch
    # each optimizer's step counts towards max_steps: 12 of them are 6 batches
    assert w.alerts == [] and w.step_count == 6 and [r.step for r in w.history] == [1, 6]
    assert all(p.update_ratio is not None and p.update_ratio > 0 for r in w.history for p in r.params)


DDP_SCRIPT = """
import json, sys, torch
import lightning.pytorch as pl
sys.path.insert(0, {tests!r})
from test_integrations import Regressor, _data
from layerlens.lightning import WatchCallback

if __name__ == "__main__":
    torch.manual_seed(0)
    callback = WatchCallback(every=3)
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", devices=2, strategy="ddp", logger=False, callbacks=[callback],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Regressor(), _data())
    w = callback.watch
    out = {{"rank": trainer.global_rank, "steps": [r.step for r in w.history], "alerts": [str(a) for a in w.alerts],
           "params": [p.name for p in w.history[0].params]}}
    with open({out!r} + f"/rank{{trainer.global_rank}}.json", "w") as f:
        json.dump(out, f)
"""


def test_lightning_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    script = tmp_path / "fit_ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["steps"] == [1, 4] and r["alerts"] == []
        assert "net.0.weight" in r["params"]  # the module's own names, not DDP's `module.` prefix


class TinyClassifier(nn.Module):
    """A Hugging Face-style model: keyword inputs, a dict with the loss out."""

    def __init__(self, unregistered: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.head = nn.Linear(16, 2)
        scale = torch.ones(1)
        if unregistered:
            self.scale = scale.requires_grad_()
        else:
            self.scale = nn.Parameter(scale)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.head(self.embed(input_ids).mean(1)) * self.scale
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


def _hf_train(model: nn.Module, tmp_path: Path) -> Any:
    from transformers import Trainer, TrainingArguments

    from layerlens.transformers import WatchCallback

    gen = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(0, 50, (12,), generator=gen), "labels": torch.tensor(k % 2)} for k in range(64)]
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=10, per_device_train_batch_size=8, report_to=[], save_strategy="no",
        use_cpu=True, logging_steps=5, disable_tqdm=True, seed=0,
    )  # fmt: skip
    callback = WatchCallback(every=4)
    Trainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()
    return callback


def test_hugging_face_trainer_is_watched(tmp_path: Path) -> None:
    model = TinyClassifier()
    callback = _hf_train(model, tmp_path)
    w = callback.watch
    assert [r.step for r in w.history] == [1, 5, 9] and w.alerts == []
    assert w.first_trace is not None and w.first_trace[0].input_shapes[0] == (8, 12)
    assert any(p.update_ratio for p in w.history[0].params)
    assert not model._forward_hooks


def test_hugging_face_trainer_names_an_unregistered_tensor(tmp_path: Path) -> None:
    callback = _hf_train(TinyClassifier(unregistered=True), tmp_path)
    assert [(a.kind, a.layer) for a in callback.watch.alerts] == [("unregistered_param", "")]


def test_callbacks_refuse_an_optimizer_of_their_own() -> None:
    from layerlens.lightning import WatchCallback as LightningCallback
    from layerlens.transformers import WatchCallback as HFCallback

    for cls in (LightningCallback, HFCallback):
        with pytest.raises(TypeError, match="optimizer"):
            cls(optimizer=torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=1.0))
