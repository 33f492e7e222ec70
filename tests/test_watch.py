"""`layerlens.watch`: the right layer and step for every alert, numbers equal to
hand computations, sampling, crash-safe JSONL, clean detaching, DDP."""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import weakref
from pathlib import Path

import pytest
import torch
from torch import nn

import layerlens as ll
from layerlens.models import abc


class Log(nn.Module):
    """log(x): NaN for negative inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


class Sqrt(nn.Module):
    """sqrt(x * x) = |x|: fine forward, but at x = 0 the backward is inf * 0 = NaN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x * x)


def _net(middle: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), middle, nn.Linear(8, 1))


def _train(model: nn.Module, w: ll.Watch | None, steps: int, opt: torch.optim.Optimizer, bad_step: int | None = None,
           shift: float = 0.0) -> None:  # fmt: skip
    g = torch.Generator().manual_seed(1)
    for step in range(1, steps + 1):
        x = torch.randn(16, 4, generator=g)
        if step == bad_step:
            x = x + shift
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), torch.zeros(16, 1))
        loss.backward()
        opt.step()
        if w is not None:
            w.log(loss=loss.item())


def test_forward_nan_names_its_producer_at_the_right_step() -> None:
    class Shifted(nn.Module):
        """log(x + 2): NaN once its input falls below -2 (step 7 feeds large negatives)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(x + 2.0)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), Shifted(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(8, 4))
        model[0].bias.zero_()
    g = torch.Generator().manual_seed(1)
    with ll.watch(model, every=1) as w:
        for step in range(1, 11):
            x = torch.rand(16, 4, generator=g)  # in [0, 1): log(x + 2) is finite ...
            model(x - 50.0 if step == 7 else x)  # ... except on step 7
    nan = [a for a in w.alerts if a.kind == "nan"]
    assert len(nan) == 1
    assert (nan[0].step, nan[0].layer, nan[0].type_name) == (7, "1", "Shifted")
    record = next(r for r in w.history if r.step == 7)
    assert not record.layer("2").output_finite and not record.layer("2").inputs_finite  # downstream: not blamed
    assert all(r.layer("1").output_finite for r in w.history if r.step != 7)


def test_backward_nan_names_the_layer_whose_backward_produced_it() -> None:
    model = _net(Sqrt())
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()  # every input to Sqrt is exactly 0: its backward gives 0 * inf
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with ll.watch(model, every=1, optimizer=opt) as w:
        _train(model, w, 1, opt)  # (one step: after it the weights are NaN, lr 0 or not: 0 * NaN = NaN)
    grads = [a for a in w.alerts if a.kind == "nan_grad"]
    assert [(a.step, a.layer, a.type_name) for a in grads] == [(1, "2", "Sqrt")]
    assert not [a for a in w.alerts if a.kind == "nan"]  # the forward was finite
    assert "at the output of 1" in grads[0].message


def test_raise_on_nan_stops_before_the_update() -> None:
    model = _net(Log())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with (
        pytest.raises(ll.WatchAlert, match=r"step 1.*nan: 2 \(Log\)") as info,
        ll.watch(model, every=1, optimizer=opt, raise_on=("nan",)),
    ):
        _train(model, None, 3, opt)
    assert info.value.alert.layer == "2"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # no NaN update happened
    assert not model._forward_hooks and not model._forward_pre_hooks  # detached on the way out


def test_gradient_norms_and_update_ratios_match_hand_computation() -> None:
    model = _net(nn.ReLU())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    with ll.watch(model, every=1, optimizer=opt) as w:
        opt.zero_grad()
        out = model(x)
        out.retain_grad()
        nn.functional.mse_loss(out, y).backward()
        grads = {n: torch.linalg.vector_norm(p.grad).item() for n, p in model.named_parameters()}  # type: ignore[arg-type]
        old = {n: p.detach().clone() for n, p in model.named_parameters()}
        with torch.no_grad():
            activation_mean = torch.tanh(model[0](x)).mean().item()
        opt.step()
        new = {n: p.detach().clone() for n, p in model.named_parameters()}
    (record,) = w.history
    for name, norm in grads.items():
        assert record.param(name).grad_norm == pytest.approx(norm, rel=1e-6)
        ratio = (torch.linalg.vector_norm(new[name] - old[name]) / torch.linalg.vector_norm(old[name])).item()
        assert record.param(name).update_ratio == pytest.approx(ratio, rel=1e-5)
    assert record.layer("3").grad_norm == pytest.approx(torch.linalg.vector_norm(out.grad).item(), rel=1e-6)  # type: ignore[arg-type]
    assert record.layer("1").output is not None
    assert record.layer("1").output.mean == pytest.approx(activation_mean, rel=1e-5)


def test_sampling_honours_every_and_is_hook_free_in_between() -> None:
    model = _net(nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    installed = []

    def probe(module: nn.Module, args: object, output: object) -> None:
        installed.append(len(torch.nn.modules.module._global_forward_hooks))

    model[3].register_forward_hook(probe)
    with ll.watch(model, every=4, optimizer=opt, trace_first=False) as w:
        _train(model, w, 10, opt)
    assert [r.step for r in w.history] == [1, 5, 9]
    assert installed == [1, 0, 0, 0, 1, 0, 0, 0, 1, 0]  # the collecting hook exists on sampled steps only
    assert w.step_count == 10


def test_eval_forwards_are_not_steps_and_manual_steps_work() -> None:
    model = _net(nn.ReLU())
    with ll.watch(model, every=1) as w:
        model(torch.randn(2, 4))
        model.eval()
        model(torch.randn(2, 4))
        model.train()
        assert w.step_count == 1
        w.step()
        model(torch.randn(2, 4))
        model(torch.randn(2, 4))  # manual counting now: forwards do not count
        assert w.step_count == 2


def test_health_alerts() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Sigmoid(), nn.Dropout(0.5), nn.Linear(8, 1))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # every ReLU unit dead
        model[2].bias.fill_(50.0)  # sigmoid saturated at 1
    with ll.watch(model, every=1) as w:
        model(torch.randn(32, 4)).sum().backward()
        model.eval()
        model[4].train()  # a Dropout left in training mode while evaluating
        model(torch.randn(4, 4))
        model.train()
        model[0].eval()  # harmless for Linear; a BatchNorm would be flagged
    kinds = {(a.kind, a.layer) for a in w.alerts}
    assert ("dead_relu", "1") in kinds and ("saturated", "3") in kinds and ("dropout_in_eval", "4") in kinds
    record = w.history[0]
    assert record.layer("1").dead_fraction == 1.0 and record.layer("3").saturated_fraction == 1.0
    assert record.layer("4").p == 0.5 and 0.3 < (record.layer("4").drop_rate or 0) < 0.7

    bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    bn[1].eval()
    with ll.watch(bn, every=1) as w2:
        bn(torch.randn(8, 4))
    assert [a.kind for a in w2.alerts] == ["batchnorm_eval_in_training"]


def _regression(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    g = torch.Generator().manual_seed(2)
    for _ in range(steps):
        x = torch.randn(16, 4, generator=g) * 3
        opt.zero_grad()
        nn.functional.mse_loss(model(x), x.sum(1, keepdim=True) * 10).backward()
        opt.step()


def test_exploding_gradients_are_the_ones_that_grow_or_wreck_the_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Linear(16, 1))  # linear: nothing saturates the growth
    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # far too large: every step overshoots
    with ll.watch(model, every=1, optimizer=opt) as w:
        _regression(model, opt, 12)
    exploding = [a for a in w.alerts if a.kind == "exploding_grad"]
    assert exploding, [a.kind for a in w.alerts]
    first = exploding[0]
    record = next(r for r in w.history if r.step == first.step)
    norm = next(p.grad_norm for p in record.params if p.name == first.param)
    assert norm is not None and norm > 1e3 and f"is {norm:.3g}" in first.message
    assert "times its own norm" in first.message or "times its first sampled norm" in first.message

    torch.manual_seed(0)
    healthy = nn.Sequential(nn.Linear(4, 16), nn.Linear(16, 1))
    opt = torch.optim.SGD(healthy.parameters(), lr=1e-3)
    with ll.watch(healthy, every=1, optimizer=opt) as w:
        _regression(healthy, opt, 12)
    assert w.alerts == []


def test_a_large_gradient_that_adam_tames_is_not_exploding() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Linear(16, 1))
    with torch.no_grad():
        model[0].weight.mul_(1e3)  # gradients of ~1e5 from the first step on, steady
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)  # steps of ~lr whatever the gradient's size
    with ll.watch(model, every=1, optimizer=opt) as w:
        _regression(model, opt, 6)
    assert max(p.grad_norm or 0 for r in w.history for p in r.params) > 1e3
    assert [a for a in w.alerts if a.kind == "exploding_grad"] == []


def test_vanishing_gradients_fade_toward_the_input() -> None:
    tiny = _net(nn.Identity())
    with torch.no_grad():
        tiny[3].weight.fill_(1e-12)
    with ll.watch(tiny, every=1) as w:
        nn.functional.mse_loss(tiny(torch.randn(8, 4)), torch.zeros(8, 1)).backward()
    assert {a.layer for a in w.alerts if a.kind == "vanishing_grad"} == {"0"}


class _LayerScaled(nn.Module):
    """A residual block whose branch starts scaled by 1e-9 (a layer scale, as in ConvNeXt and CaiT):
    tiny gradients inside the branch, a healthy one through the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.branch = nn.Linear(8, 8)
        self.gamma = nn.Parameter(torch.full((8,), 1e-9))
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(h + self.gamma * self.branch(h))


class _MaskEmbedding(nn.Module):
    """wav2vec2's pattern: a vector of the model's own that stands in for a few masked
    positions of the input, so its gradient is as small as the share of them."""

    def __init__(self) -> None:
        super().__init__()
        self.mask_embed = nn.Parameter(torch.randn(4))
        self.layers = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.mask_embed[None] * 1e-10, x[1:]])  # one masked row, its embedding barely used
        return self.layers(x)


@pytest.mark.parametrize(
    ("make", "param"),
    [(_LayerScaled, "branch.weight"), (_MaskEmbedding, "mask_embed")],
    ids=["layer-scaled branch", "sparsely used tensor of the model itself"],
)
def test_a_tiny_gradient_off_the_signals_path_is_not_vanishing(make: type[nn.Module], param: str) -> None:
    torch.manual_seed(0)
    model = make()
    with ll.watch(model, every=1) as w:
        nn.functional.mse_loss(model(torch.randn(8, 4)), torch.zeros(8, 1)).backward()
    grad = next(p.grad_norm for p in w.history[0].params if p.name == param)
    assert grad is not None and 0 < grad < 1e-8  # what the old rule called vanishing
    assert [a for a in w.alerts if a.kind == "vanishing_grad"] == []


class _KeyBiasAttention(nn.Module):
    """Attention with a separate key projection: its bias shifts every score of
    a query by the same amount, which softmax ignores, so its gradient is 0."""

    def __init__(self) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.query(x) @ self.key(x).transpose(1, 2) / 8**0.5
        return self.out(scores.softmax(-1) @ self.value(x)).mean()


def test_a_gradient_zero_by_construction_is_a_note_not_a_vanishing_alarm() -> None:
    model = _KeyBiasAttention()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 6, 8)
    with ll.watch(model, every=1, optimizer=opt) as w:
        for _ in range(3):
            opt.zero_grad()
            model(x).backward()
            opt.step()
    assert model.key.bias.grad is not None and model.key.bias.grad.abs().max() < 1e-6  # zero, up to rounding
    assert not w.alerts
    (note,) = w.notes  # once, not once per step
    assert note.kind == "zero_grad_by_construction" and note.param == "key.bias"
    assert "zero up to rounding" in note.message


def test_allow_inf_for_masks_on_purpose() -> None:
    class Mask(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.masked_fill(torch.arange(x.shape[-1]) > 2, float("-inf"))

    model = nn.Sequential(nn.Linear(4, 6), Mask(), nn.Softmax(dim=-1))
    with ll.watch(model, every=1) as w:
        model(torch.randn(3, 4))
    assert [a.layer for a in w.alerts] == ["1"]
    with ll.watch(model, every=1, allow_inf=("1",)) as w:
        model(torch.randn(3, 4))
    assert not w.alerts


def test_detach_removes_everything_and_the_model_can_be_collected() -> None:
    model = _net(nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = ll.watch(model, every=1, optimizer=opt).attach()
    _train(model, w, 2, opt)
    w.detach()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    assert not torch.nn.modules.module._global_forward_hooks
    ref = weakref.ref(model)
    del model, opt
    gc.collect()
    assert ref() is None and len(w.history) == 2


def test_copies_and_pickles_of_a_watched_model_are_not_watched(tmp_path: Path) -> None:
    """An EMA copy (`AveragedModel` deep-copies the model) evaluated while the model
    trains is not the model in eval mode, and `torch.save(model)` works mid-training;
    neither copy calls back into the watch."""
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ll.watch(model, every=2, optimizer=opt) as w:
        ema = torch.optim.swa_utils.AveragedModel(model)
        for _ in range(8):
            x = torch.randn(16, 6)
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
            ema.update_parameters(model)
            with torch.no_grad():
                ema.eval()(x)
                ema.train()(x)  # a training-mode forward of the copy is not a step of the model either
        torch.save(model, tmp_path / "model.pt")
    assert w.alerts == [] and w.step_count == 8
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    with ll.watch(loaded, every=1) as again:  # the loaded model is a model like any other
        loaded(torch.randn(4, 6))
    assert again.step_count == 1 and w.step_count == 8


def test_an_exception_in_the_loop_detaches_and_passes_through() -> None:
    model = _net(nn.ReLU())

    def broken_loop() -> None:
        with ll.watch(model, every=1):
            model(torch.randn(2, 4))
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        broken_loop()
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert not torch.nn.modules.module._global_forward_hooks


def test_outputs_table_plot_tensorboard(tmp_path: Path) -> None:
    model = abc.build_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    texts, classes = abc.generate(320, 0)
    x, y = abc.encode(texts), torch.tensor(classes)

    class Board:
        def __init__(self) -> None:
            self.scalars: list[tuple[str, float, int]] = []

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            self.scalars.append((tag, value, step))

    board = Board()
    with ll.watch(model, every=2, optimizer=opt) as w:
        w.to_tensorboard(board)
        for i in range(0, 320, 64):
            loss = model(x[i : i + 64], y[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss.item(), acc=0.5)
    text = w.table()
    assert text.startswith("step 5  loss=") and "rnn" in text and "Update/weight" in text
    assert w.table(step=3).startswith("step 3")
    with pytest.raises(KeyError, match="step 2 was not sampled"):
        w.table(step=2)
    assert {s for _, _, s in board.scalars} == {1, 3, 5}
    assert ("log/acc", 0.5, 3) in board.scalars
    pytest.importorskip("matplotlib")
    png = w.plot(tmp_path / "watch.png")
    assert png is not None and png.read_bytes().startswith(b"\x89PNG")


def test_jsonl_is_valid_after_the_process_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    script = textwrap.dedent(
        f"""
        import torch, layerlens as ll
        from torch import nn
        model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 1))
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        with ll.watch(model, every=1, optimizer=opt, jsonl={str(path)!r}) as w:
            while True:
                opt.zero_grad()
                model(torch.randn(32, 64)).pow(2).mean().backward()
                opt.step()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not path.exists() or path.read_text().count("\n") < 5):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    lines = path.read_text().splitlines()
    assert len(lines) >= 5
    steps = [json.loads(line)["step"] for line in lines]  # every line is whole, valid JSON
    assert steps == list(range(1, len(steps) + 1))


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"expects an nn\.Module"):
        ll.watch("model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every must be"):
        ll.watch(nn.Linear(1, 1), every=0)
    with pytest.raises(ValueError, match="unknown alert kinds"):
        ll.watch(nn.Linear(1, 1), raise_on=("nans",))


_DDP_SCRIPT = """
import os, sys, torch, torch.distributed as dist
from torch import nn
import layerlens as ll

class Log(nn.Module):
    def forward(self, x):
        return torch.log(x)

def run(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Identity(), Log(), nn.Linear(4, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ll.watch(model, every=1, optimizer=opt) as w:
        for step in range(2):
            x = torch.rand(8, 4) + 0.5 - (10.0 if rank == 1 and step == 1 else 0.0)
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
        gathered = w.gather()
    if rank == 0:
        alerts = [str(a) for r in gathered for rec in r for a in rec.alerts]
        with open(out, "w") as f:
            ranks = [rec.rank for r in gathered for rec in r]
            f.write(repr((len(gathered), [len(r) for r in gathered], ranks)) + "\\n")
            f.write("\\n".join(alerts))
    dist.barrier()  # both ranks are done with gloo ...
    os._exit(0)  # ... and leave without gloo's C++ teardown, which aborts now and then at interpreter exit

if __name__ == "__main__":
    torch.multiprocessing.spawn(run, args=(2, int(sys.argv[1]), sys.argv[2]), nprocs=2)
"""


def test_ddp_two_gloo_processes(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    out = tmp_path / "out.txt"
    done = subprocess.run(
        [sys.executable, str(script), str(port), str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary, *alerts = out.read_text().splitlines()
    assert summary == "(2, [2, 2], [0, 0, 1, 1])"
    assert (
        "[rank 1, step 2] nan: module.1 (Log): output has 32 NaN and 0 Inf values while its inputs were finite"
        in alerts
    )
    assert not any(a.startswith("[step") and " nan: " in a for a in alerts), alerts  # rank 0 made no NaN


def test_a_large_model_is_measured_in_interleaved_shares() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(20)])  # 61 modules
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    with ll.watch(model, every=1, optimizer=opt, layers_per_step=16) as w:
        for _ in range(10):
            opt.zero_grad()
            model(torch.randn(4, 8)).pow(2).mean().backward()
            opt.step()
    names = [n for n, _ in model.named_modules()]
    stride = math.ceil(len(names) / 16) + 1  # 4 is even: 5, so that alternating kinds mix
    shares = [{h.name for h in r.layers} for r in w.history]
    for k, share in enumerate(shares):
        # every share: the root, the first trainable layer (vanishing is judged from the input on), the k-th modules
        assert share == {n for i, n in enumerate(names) if i % stride == k % stride or n in ("", "0.0")}
        assert len(share) <= 16
    assert set().union(*shares[:stride]) == set(names)  # every module within `stride` sampled steps
    record = w.history[1]  # parameters follow their modules' share
    assert {p.module for p in record.params} == {h.name for h in record.layers if h.name and h.leaf} & {
        n for n, m in model.named_modules() if isinstance(m, nn.Linear)
    }
    with ll.watch(model, every=1, layers_per_step=None) as w:
        model(torch.randn(4, 8)).sum().backward()
    assert {h.name for h in w.history[0].layers} == set(names)
    with pytest.raises(ValueError, match="layers_per_step"):
        ll.watch(model, layers_per_step=0)


class _Returns(nn.Module):
    """Returns its layer's output as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


class _Doubles(nn.Module):
    """Doubles its layer's output in place before returning it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        y.mul_(2)
        return y


def test_output_gradients_of_blocks_that_return_their_layers_output() -> None:
    """A block returning its last layer's tensor has that layer's output gradient; one
    that changed the tensor in place first has the gradient of what it returned."""
    torch.manual_seed(0)
    model = nn.Sequential(_Returns(), _Doubles())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w1 = model[1].lin.weight.detach().clone()
    with ll.watch(model, every=1, optimizer=opt, trace_first=False) as w:
        opt.zero_grad()
        model(torch.randn(8, 4)).sum().backward()
        opt.step()
    record = w.history[-1]
    ones = torch.ones(8, 4)  # d sum(out) / d out
    into_second = float(torch.linalg.vector_norm(2 * ones @ w1))  # through the doubling and the second Linear
    expected = {"": 32**0.5, "1": 32**0.5, "1.lin": 2 * 32**0.5, "0": into_second, "0.lin": into_second}
    assert {name: record.layer(name).grad_norm for name in expected} == pytest.approx(expected, rel=1e-6)


def test_watch_takes_a_torchscript_model_as_one_layer() -> None:
    """A ScriptModule takes no hooks of its own: watch still samples its steps (its
    submodules run inside TorchScript), and training is what it is unwatched."""
    model, plain = _net(nn.ReLU()), _net(nn.ReLU())
    scripted = torch.jit.script(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ll.LayerlensWarning)
        with ll.watch(scripted, every=2, optimizer=opt) as w:
            _train(scripted, None, 6, opt)
    _train(plain, None, 6, torch.optim.SGD(plain.parameters(), lr=0.01))
    assert [r.step for r in w.history] == [1, 3, 5] and [h.name for h in w.history[0].layers] == [""]
    assert w.history[0].layers[0].output is not None and {p.name for p in w.history[0].params} == {
        "0.weight", "0.bias", "3.weight", "3.bias"}  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), plain.parameters(), strict=True))


def test_watch_on_a_compiled_model_uses_its_names_and_compiles_once() -> None:
    """A torch.compile'd model is watched by its own layer names, and its sampled
    steps run eagerly: dynamo compiles the model once, not once per sample."""
    import torch._dynamo.utils as dynamo_utils

    torch._dynamo.reset()
    dynamo_utils.counters.clear()  # counts of the whole process: other tests compile too
    model = _net(nn.ReLU())
    compiled = torch.compile(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ll.LayerlensWarning)  # the first trace's note: traced eagerly
        with ll.watch(compiled, every=2, optimizer=opt) as w:
            _train(compiled, None, 6, opt)
    assert [r.step for r in w.history] == [1, 3, 5]
    assert [h.name for h in w.history[0].layers] == ["0", "1", "2", "3", ""]
    assert dynamo_utils.counters["stats"]["unique_graphs"] == 1
    assert w.alerts == []
