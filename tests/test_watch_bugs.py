"""The training mistakes people really make, each as a buggy loop and its healthy
twin: the bug is named at the right layer, the twin raises nothing."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
import torch.nn.utils.prune
from torch import nn

import layerlens as ll
from layerlens.watching import Alert

Loop = Callable[[nn.Module, torch.optim.Optimizer | None, ll.Watch], None]


def _mlp(dropout: float = 0.0) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))


def _batches(n: int = 30) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        x = torch.randn(16, 6, generator=gen)
        out.append((x, x.sum(dim=1, keepdim=True)))
    return out


def _fit(model: nn.Module, opt: torch.optim.Optimizer, zero_grad: bool = True, steps: int = 30) -> None:
    for x, y in _batches(steps):
        if zero_grad:
            opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()


def _alerts(
    model: nn.Module, opt: torch.optim.Optimizer | None, loop: Callable[[], None], every: int = 5
) -> list[Alert]:
    with ll.watch(model, every=every, optimizer=opt) as w:
        loop()
    return w.alerts


def _kinds(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(a.kind, a.layer) for a in alerts]


# -- things that silently do not train --------------------------------------------------------


def test_a_layer_frozen_by_mistake() -> None:
    model = _mlp()
    model[3].requires_grad_(False)  # meant model[0]... or nothing at all
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    alerts = _alerts(model, opt, lambda: _fit(model, opt))
    assert _kinds(alerts) == [("frozen", "3")]
    assert "3.weight, 3.bias have requires_grad=False but are in the optimizer" in alerts[0].message

    healthy = _mlp()
    opt = torch.optim.SGD(healthy.parameters(), lr=0.05)
    assert _alerts(healthy, opt, lambda: _fit(healthy, opt)) == []


def test_intentional_freezing_outside_the_optimizer_is_fine() -> None:
    model = _mlp()
    model[0].requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    assert _alerts(model, opt, lambda: _fit(model, opt)) == []


def test_optimizer_built_before_a_layer_was_replaced() -> None:
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model[3] = nn.Linear(16, 1)  # the new head is not in the optimizer
    alerts = _alerts(model, opt, lambda: _fit(model, opt))
    assert _kinds(alerts) == [("not_in_optimizer", "3")]
    assert "not in the optimizer" in alerts[0].message and "3.weight" in alerts[0].message

    healthy = _mlp()
    healthy[3] = nn.Linear(16, 1)
    opt = torch.optim.Adam(healthy.parameters(), lr=1e-2)
    assert _alerts(healthy, opt, lambda: _fit(healthy, opt)) == []


def test_a_layer_replaced_while_watching() -> None:
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loop() -> None:
        _fit(model, opt, steps=3)
        model[3] = nn.Linear(16, 1)
        _fit(model, opt, steps=12)

    assert _kinds(_alerts(model, opt, loop)) == [("not_in_optimizer", "3")]


class Scaled(nn.Module):
    def __init__(self, registered: bool, in_list: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 1)
        scale = torch.ones(1)
        if registered:
            self.scale = nn.Parameter(scale)
        elif in_list:
            self.scales = [nn.Parameter(scale)]  # a plain list: not registered
        else:
            self.scale = scale.requires_grad_()  # a plain tensor attribute: not registered

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scales[0] if hasattr(self, "scales") else self.scale
        return self.fc(x) * scale


@pytest.mark.parametrize("in_list", [False, True])
def test_a_learnable_tensor_kept_as_a_plain_attribute(in_list: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Scaled(registered=False, in_list=in_list))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    alerts = _alerts(model, opt, lambda: _fit(model, opt))
    assert _kinds(alerts) == [("unregistered_param", "0")]
    assert ("scales[0]" if in_list else "scale") in alerts[0].message
    assert "ParameterList" in alerts[0].message if in_list else "nn.Parameter(...)" in alerts[0].message

    healthy = nn.Sequential(Scaled(registered=True))
    opt = torch.optim.SGD(healthy.parameters(), lr=0.05)
    assert _alerts(healthy, opt, lambda: _fit(healthy, opt)) == []


class _TiedHead(nn.Module):
    """A head that reuses the first layer's weight, kept by reference in a plain list."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 6)
        self.tied = [self.inp.weight]  # registered as inp.weight: the optimizer trains it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.relu(self.inp(x)), self.tied[0]).sum(dim=1, keepdim=True)


def _pruned() -> nn.Module:
    model = _mlp()
    torch.nn.utils.prune.l1_unstructured(model[0], "weight", amount=0.5)  # weight = weight_orig * weight_mask
    return model


def _old_weight_norm() -> nn.Module:
    model = _mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated, still common (audio models)
        model[0] = torch.nn.utils.weight_norm(model[0])  # weight recomputed from weight_g, weight_v
    return model


@pytest.mark.parametrize("build", [_TiedHead, _pruned, _old_weight_norm], ids=["tied", "pruned", "weight_norm"])
def test_tensors_derived_from_registered_parameters_are_not_unregistered(build: Callable[[], nn.Module]) -> None:
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    assert _alerts(model, opt, lambda: _fit(model, opt)) == []


def test_zero_grad_forgotten() -> None:
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    alerts = _alerts(model, opt, lambda: _fit(model, opt, zero_grad=False))
    assert [a.kind for a in alerts][:1] == ["grad_not_reset"] and alerts[0].layer == "0"
    assert alerts[0].step == 6  # the first sampled step after an optimizer step

    healthy = _mlp()
    opt = torch.optim.SGD(healthy.parameters(), lr=1e-3)
    assert _alerts(healthy, opt, lambda: _fit(healthy, opt)) == []


def test_gradient_accumulation_is_not_a_forgotten_zero_grad() -> None:
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def loop() -> None:
        for k, (x, y) in enumerate(_batches(32)):
            (F.mse_loss(model(x), y) / 4).backward()
            if k % 4 == 3:
                opt.step()
                opt.zero_grad()

    assert _alerts(model, opt, loop, every=3) == []


def test_an_optimizer_that_does_not_update() -> None:
    class Forgetful(torch.optim.SGD):
        @torch.no_grad()
        def step(self, closure: object = None) -> None:  # type: ignore[override]
            return None  # a custom optimizer that forgot to apply its update

    model = _mlp()
    opt = Forgetful(model.parameters(), lr=0.05)
    alerts = _alerts(model, opt, lambda: _fit(model, opt))
    assert {a.kind for a in alerts} == {"not_updated"} and {a.layer for a in alerts} == {"0", "3"}


def test_a_learning_rate_of_zero() -> None:
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # e.g. a config's "1e-3" parsed as 0
    alerts = _alerts(model, opt, lambda: _fit(model, opt))
    assert [(a.kind, a.step) for a in alerts] == [("zero_lr", 11)]  # the third sampled step: 1, 6, 11
    assert "sampled steps 1, 6, 11" in alerts[0].message


def _warm_up(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, step / 8))  # from exactly 0


@pytest.mark.parametrize("every", [1, 5])
def test_a_warm_up_from_zero_and_a_group_kept_at_zero_are_not_a_zero_learning_rate(every: int) -> None:
    model = _mlp()
    opt = torch.optim.AdamW(
        [{"params": model[0].parameters(), "lr": 0.0}, {"params": model[3].parameters()}], lr=1e-3
    )  # the first layer deliberately fixed, the head trained
    schedule = _warm_up(opt)

    def loop() -> None:
        for x, y in _batches(30):
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
            schedule.step()

    assert _alerts(model, opt, loop, every=every) == []


def test_an_optimizer_without_a_numeric_learning_rate_is_watched_to_the_end() -> None:
    optimization = pytest.importorskip("transformers.optimization")
    model = _mlp()
    opt = optimization.Adafactor(model.parameters(), lr=None, relative_step=True, warmup_init=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ll.LayerlensWarning)  # an internal error would detach watch with one
        with ll.watch(model, every=1, optimizer=opt) as w:
            _fit(model, opt, steps=8)
    assert len(w.history) == 8 and w.alerts == []


class _EncoderDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc, self.dec = nn.Linear(6, 8), nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.relu(self.enc(x)))


@pytest.mark.parametrize("decoder_every", [1, 3])  # 3: the decoder's optimizer skips some sampled steps
def test_a_model_that_two_optimizers_train_between_them(decoder_every: int) -> None:
    model = _EncoderDecoder()
    enc, dec = torch.optim.SGD(model.enc.parameters(), lr=0.05), torch.optim.Adam(model.dec.parameters(), lr=1e-2)

    def loop() -> None:
        for k, (x, y) in enumerate(_batches(20)):
            enc.zero_grad()
            dec.zero_grad()
            F.mse_loss(model(x), y).backward()
            enc.step()
            if k % decoder_every == 0:
                dec.step()

    with ll.watch(model, every=2, optimizer=[enc, dec]) as w:
        loop()
    assert w.alerts == []
    # each update is measured once both optimizers stepped; the decoder has none in a step its optimizer skipped
    for r in w.history:
        stepped = {"enc"} | ({"dec"} if (r.step - 1) % decoder_every == 0 else set())
        for p in r.params:
            ratio = p.update_ratio
            assert (ratio is not None and ratio > 0) if p.module in stepped else ratio is None, (r.step, p.name)

    with ll.watch(model, every=2, optimizer=enc) as w:  # given one of the two, the other's layer is outside it
        loop()
    assert {(a.kind, a.layer) for a in w.alerts} == {("not_in_optimizer", "dec")}


def test_a_list_of_optimizers_in_second_place_is_read_as_optimizer() -> None:
    model = _EncoderDecoder()
    enc, dec = torch.optim.SGD(model.enc.parameters(), lr=0.05), torch.optim.SGD(model.dec.parameters(), lr=0.05)
    with ll.watch(model, [enc, dec]) as w:  # as `watch(model, opt)`: every 10 steps
        _fit(model, enc, steps=1)
    assert w.every == 10 and w.alerts == []  # dec's layer is in one of the optimizers
    with ll.watch(model, optimizer=[enc, enc, dec]):  # one given twice is hooked once
        assert len(enc._optimizer_step_pre_hooks) == len(dec._optimizer_step_pre_hooks) == 1


@pytest.mark.parametrize("bad", ["adam", [], [torch.zeros(1)]])
def test_watch_refuses_what_is_not_an_optimizer(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"optimizer= must be a torch.optim.Optimizer or a list of them"):
        ll.watch(_mlp(), optimizer=bad)


_OPTIMIZERS: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    "SGD nesterov": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
    "SGD maximize": lambda p: torch.optim.SGD(p, lr=0.01, maximize=True),
    "Adam amsgrad": lambda p: torch.optim.Adam(p, lr=1e-3, amsgrad=True),
    "Adam, a tensor lr": lambda p: torch.optim.Adam(p, lr=torch.tensor(1e-3), foreach=False),
    "AdamW foreach": lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=True),
    "Adagrad": lambda p: torch.optim.Adagrad(p, lr=0.01),
    "Adadelta": lambda p: torch.optim.Adadelta(p),
    "Adamax": lambda p: torch.optim.Adamax(p),
    "ASGD": lambda p: torch.optim.ASGD(p, lr=0.01),
    "NAdam": lambda p: torch.optim.NAdam(p),
    "RAdam": lambda p: torch.optim.RAdam(p),
    "RMSprop": lambda p: torch.optim.RMSprop(p, lr=1e-3),
    "Rprop": lambda p: torch.optim.Rprop(p),  # skips a one-element bias whose gradient changed sign: not a miss
}


@pytest.mark.parametrize("make", _OPTIMIZERS.values(), ids=_OPTIMIZERS.keys())
def test_healthy_training_is_silent_whatever_the_torch_optimizer(make: Callable[[Any], torch.optim.Optimizer]) -> None:
    model = _mlp()
    opt = make(model.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ll.LayerlensWarning)
        with ll.watch(model, every=2, optimizer=opt) as w:
            _fit(model, opt, steps=12)
    assert w.alerts == [] and len(w.history) == 6


# -- mode mistakes --------------------------------------------------------------------------------


def _train_and_validate(model: nn.Module, opt: torch.optim.Optimizer, eval_mode: bool, restore: bool) -> None:
    data = _batches(40)
    for epoch in range(2):
        for x, y in data[epoch * 10 : epoch * 10 + 10]:
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
        if eval_mode:
            model.eval()
        with torch.no_grad():
            for x, _ in data[30:35]:
                model(x)
        if restore:
            model.train()


def test_eval_forgotten_before_evaluation() -> None:
    model = _mlp(dropout=0.3)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    with ll.watch(model, every=5, optimizer=opt) as w:
        _train_and_validate(model, opt, eval_mode=False, restore=False)
    assert _kinds(w.alerts) == [("eval_forgotten", "")]
    assert "2" in w.alerts[0].message and "model.eval()" in w.alerts[0].message
    assert w.step_count == 20  # the no-grad forwards were not counted as training steps

    healthy = _mlp(dropout=0.3)
    opt = torch.optim.SGD(healthy.parameters(), lr=1e-3)
    assert _alerts(healthy, opt, lambda: _train_and_validate(healthy, opt, eval_mode=True, restore=True)) == []


def test_train_not_restored_after_validation() -> None:
    model = _mlp(dropout=0.3)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    alerts = _alerts(model, opt, lambda: _train_and_validate(model, opt, eval_mode=True, restore=False))
    assert _kinds(alerts) == [("train_forgotten", "")]
    assert "model.train()" in alerts[0].message


def test_a_model_without_mode_dependent_layers_does_not_care() -> None:
    model = _mlp(dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    assert _alerts(model, opt, lambda: _train_and_validate(model, opt, eval_mode=False, restore=False)) == []


class Block(nn.Module):
    def __init__(self, careful: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 16)
        self.careful = careful

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc(x))
        return F.dropout(h, 0.4, training=self.training) if self.careful else F.dropout(h, 0.4)


def test_functional_dropout_active_in_eval() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Block(careful=False), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    alerts = _alerts(model, opt, lambda: _train_and_validate(model, opt, eval_mode=True, restore=True))
    assert _kinds(alerts) == [("functional_dropout_in_eval", "0")]
    assert "training=self.training" in alerts[0].message and "p=0.4" in alerts[0].message

    torch.manual_seed(0)
    healthy = nn.Sequential(Block(careful=True), nn.Linear(16, 1))
    opt = torch.optim.SGD(healthy.parameters(), lr=1e-3)
    assert _alerts(healthy, opt, lambda: _train_and_validate(healthy, opt, eval_mode=True, restore=True)) == []


# -- plausible shapes, wrong meaning -------------------------------------------------------------------


class Reader(nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.gru = nn.GRU(5, 8, batch_first=batch_first)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])  # the last time step, if x is (batch, time, features)


def test_a_recurrent_layer_reading_the_batch_as_time() -> None:
    def loop(model: nn.Module, opt: torch.optim.Optimizer) -> None:
        gen = torch.Generator().manual_seed(0)
        for _ in range(10):
            x = torch.randn(16, 7, 5, generator=gen)  # (batch, time, features)
            opt.zero_grad()
            F.mse_loss(model(x), x.mean(dim=(1, 2)).unsqueeze(1)).backward()
            opt.step()

    torch.manual_seed(0)
    model = Reader(batch_first=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    alerts = _alerts(model, opt, lambda: loop(model, opt))
    assert _kinds(alerts) == [("check", "gru")]
    assert "batch_first=True" in alerts[0].message and "16 time steps of a batch of 7" in alerts[0].message

    torch.manual_seed(0)
    healthy = Reader(batch_first=True)
    opt = torch.optim.Adam(healthy.parameters(), lr=1e-3)
    assert _alerts(healthy, opt, lambda: loop(healthy, opt)) == []


class Attender(nn.Module):
    """Token classifier over a Transformer encoder, fed (batch, sequence) tokens."""

    def __init__(self, batch_first: bool, time_major: bool = False) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=batch_first)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)
        self.time_major = time_major  # feeds (sequence, batch, features), as batch_first=False expects

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.emb(tokens)
        h = self.enc(h.transpose(0, 1)).transpose(0, 1) if self.time_major else self.enc(h)
        return self.head(h.mean(dim=1))


@pytest.mark.parametrize("healthy", [{"batch_first": True}, {"batch_first": False, "time_major": True}])
def test_attention_reading_the_batch_as_the_sequence(healthy: dict[str, bool]) -> None:
    """nn.TransformerEncoderLayer defaults to batch_first=False: fed (B, T, E), every
    position attends across the batch, and the shapes all still fit."""

    def loop(model: nn.Module, opt: torch.optim.Optimizer) -> None:
        gen = torch.Generator().manual_seed(0)
        for _ in range(6):
            tokens = torch.randint(0, 50, (16, 7), generator=gen)
            opt.zero_grad()
            F.cross_entropy(model(tokens), tokens[:, 0] % 3).backward()
            opt.step()

    torch.manual_seed(0)
    model = Attender(batch_first=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    alerts = _alerts(model, opt, lambda: loop(model, opt))
    assert _kinds(alerts) == [("check", "enc.layers.0.self_attn"), ("check", "enc.layers.1.self_attn")]
    assert "[16, 7, 16] as 16 positions of a batch of 7" in alerts[0].message

    torch.manual_seed(0)
    twin = Attender(**healthy)
    opt = torch.optim.Adam(twin.parameters(), lr=1e-3)
    assert _alerts(twin, opt, lambda: loop(twin, opt)) == []


class Center(nn.Module):
    """Subtracts the mean: in place (the bug) or out of place."""

    def __init__(self, in_place: bool) -> None:
        super().__init__()
        self.in_place = in_place

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_place:
            x -= x.mean(dim=1, keepdim=True)
            return x
        return x - x.mean(dim=1, keepdim=True)


class SkipBlock(nn.Module):
    def __init__(self, in_place: bool) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 16)
        self.act = nn.ReLU(inplace=True)  # says it works in place: fine
        self.center = Center(in_place)
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)  # Linear keeps its input for backward, not its output: autograd cannot notice
        return self.head(self.act(self.center(h) + h))  # the skip path reads h after center ran


def test_a_layer_that_modifies_its_input_in_place() -> None:
    torch.manual_seed(0)
    model = SkipBlock(in_place=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    alerts = _alerts(model, opt, lambda: _fit(model, opt))
    assert _kinds(alerts) == [("inplace_input", "center")]
    assert "center (Center): changed its input in place" in alerts[0].message and alerts[0].step == 1

    torch.manual_seed(0)
    healthy = SkipBlock(in_place=False)
    opt = torch.optim.SGD(healthy.parameters(), lr=0.05)
    assert _alerts(healthy, opt, lambda: _fit(healthy, opt)) == []


def test_the_first_batch_is_traced_once_without_changing_training() -> None:
    model, reference = _mlp(dropout=0.2), _mlp(dropout=0.2)
    opt, ref_opt = torch.optim.SGD(model.parameters(), lr=0.05), torch.optim.SGD(reference.parameters(), lr=0.05)
    torch.manual_seed(3)
    with ll.watch(model, every=5, optimizer=opt) as w:
        _fit(model, opt)
    torch.manual_seed(3)
    _fit(reference, ref_opt)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))
    assert w.first_trace is not None and w.first_trace.ok and w.first_trace[0].input_shapes == ((16, 6),)


# -- thresholds that fit ------------------------------------------------------------------------------


def test_saturated_tanh_layers_below_the_old_fixed_threshold() -> None:
    def run(gain: float) -> ll.Watch:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
        with torch.no_grad():
            model[0].weight.mul_(gain)  # unscaled inputs: the first tanh works at its bounds
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        with ll.watch(model, every=5, optimizer=opt) as w:
            _fit(model, opt, steps=10)
        return w

    bad = run(20.0)
    fraction = bad.history[0].layer("1").saturated_fraction
    assert fraction is not None and 0.5 < fraction < 0.9  # the old fixed 90% threshold let this pass
    assert _kinds(bad.alerts) == [("saturated", "1")]
    assert run(1.0).alerts == []


# -- crashes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "x", "where", "expected"),
    [
        (lambda: nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 1)), torch.randn(1, 6),
         "'1' (BatchNorm1d)", "Expected more than 1 value per channel"),
        (lambda: nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 1)), torch.tensor([[1, 2, 12]]),
         "'0' (Embedding)", "index out of range"),
    ],
)  # fmt: skip
def test_a_crash_in_a_watched_forward_says_where(build: Callable[[], nn.Module], x: torch.Tensor, where: str,
                                                 expected: str) -> None:  # fmt: skip
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ll.TraceError) as info, ll.watch(model, optimizer=opt) as w:
        model(x).sum().backward()
    assert f"forward failed in {where}" in str(info.value)
    assert expected in str(info.value.__cause__)  # the original exception is the cause
    assert [a.kind for a in w.alerts] == ["crash"]
    assert not model._forward_hooks and not model._forward_pre_hooks  # detached


def test_a_crash_outside_the_context_manager_carries_a_note() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8))
    w = ll.watch(model).attach()
    with pytest.raises(ValueError, match="Expected more than 1 value") as info:
        model(torch.randn(1, 6))
    w.detach()
    notes = getattr(info.value, "__notes__", [])
    if hasattr(info.value, "add_note"):
        assert any("forward failed in '1' (BatchNorm1d)" in n for n in notes)


# -- never break training ----------------------------------------------------------------------------------


def test_an_internal_error_becomes_one_warning_and_training_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from layerlens.watching import step_sampler

    def broken(*args: object) -> None:
        raise KeyError("something layerlens got wrong")

    monkeypatch.setattr(step_sampler.StepSampler, "_record", broken)
    model, reference = _mlp(), _mlp()
    opt, ref_opt = torch.optim.SGD(model.parameters(), lr=0.05), torch.optim.SGD(reference.parameters(), lr=0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ll.watch(model, every=1, optimizer=opt) as w:
            _fit(model, opt)
    _fit(reference, ref_opt)
    ours = [c for c in caught if issubclass(c.category, ll.LayerlensWarning)]
    assert len(ours) == 1 and "stopped watching" in str(ours[0].message) and "KeyError" in str(ours[0].message)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))
    assert w.alerts == []


# -- origins, not symptoms -------------------------------------------------------------------------------


class Blowup(nn.Module):
    """log of its input: NaN as soon as an input goes negative (at the step the data say)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


def _nan_at(step: int, every: int = 10, raise_on: tuple[str, ...] = (),
            layers_per_step: int | None = 256) -> tuple[ll.Watch, nn.Module, list[Any]]:  # fmt: skip
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Softplus(), Blowup(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before: list[Any] = []
    with ll.watch(model, every=every, optimizer=opt, raise_on=raise_on, layers_per_step=layers_per_step) as w:
        gen = torch.Generator().manual_seed(0)
        for k in range(1, 16):
            x = torch.randn(8, 4, generator=gen)
            if k == step:
                with torch.no_grad():
                    model[1].beta = -1.0  # Softplus with a negative beta: negative outputs, log(-) = NaN
            opt.zero_grad()
            model(x).sum().backward()
            before = [p.detach().clone() for p in model.parameters()]
            opt.step()
    return w, model, before


def test_a_nan_between_sampled_steps_is_named_where_it_was_born() -> None:
    w, _, _ = _nan_at(7)
    assert [(a.kind, a.layer, a.step) for a in w.alerts] == [("nan", "2", 7)]
    assert "not sampled" in w.alerts[0].message
    effects = w.effects  # step 11 is sampled: every layer after is NaN now, and the gradients too
    assert effects and all(e.caused_by.startswith("[step 7] nan: 2 (Blowup)") for e in effects)


def test_a_nan_on_a_sampled_step_groups_its_backward_as_an_effect() -> None:
    w, _, _ = _nan_at(11)
    assert [(a.kind, a.layer) for a in w.alerts] == [("nan", "2")]
    assert {e.kind for e in w.effects} <= {"nan", "nan_grad"}


def test_a_nan_on_a_sampled_step_that_measures_a_share_is_still_named_at_its_origin() -> None:
    w, _, _ = _nan_at(11, layers_per_step=2)  # 7 modules, shares of every 5th: the share misses Blowup
    assert [(a.kind, a.layer, a.step) for a in w.alerts] == [("nan", "2", 11)]
    assert "measured only a share" in w.alerts[0].message


def test_raise_on_nan_between_samples_stops_before_the_update() -> None:
    with pytest.raises(ll.watching.WatchAlert, match=r"step 7\] nan: 2 \(Blowup\)"):
        _nan_at(7, raise_on=("nan",))


def test_the_sentinel_is_silent_on_healthy_training() -> None:
    w, _, _ = _nan_at(99)
    assert w.alerts == [] and w.effects == []


class _BadBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("nan")  # a custom op whose backward is wrong


class Flaky(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.on = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _BadBackward.apply(x) if self.on else x


def test_a_nan_born_in_the_backward_between_samples() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), Flaky(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ll.watch(model, every=10, optimizer=opt) as w:
        for k in range(1, 9):
            model[1].on = k == 5
            opt.zero_grad()
            model(torch.randn(8, 4)).sum().backward()
            opt.step()
    assert [(a.kind, a.layer, a.step) for a in w.alerts] == [("nan_grad", "0", 5)]  # the layer just before it


class HeadFirst(nn.Module):
    """Registers its head before its body, so registration order is not call order."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 1)
        self.body = nn.Sequential(nn.Linear(4, 4), Flaky(), nn.Linear(4, 4), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_a_backward_nan_is_caught_between_samples_whatever_the_registration_order() -> None:
    torch.manual_seed(0)
    model = HeadFirst()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ll.watch(model, every=10, optimizer=opt) as w:
        for k in range(1, 9):  # the NaN is born in the body's backward, upstream of the head registered first
            model.body[1].on = k == 5
            opt.zero_grad()
            model(torch.randn(8, 4)).sum().backward()
            opt.step()
    assert [(a.kind, a.layer, a.step) for a in w.alerts] == [("nan_grad", "body.0", 5)]
    assert "not sampled" in w.alerts[0].message


def test_a_nan_loss_is_named_as_the_loss() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ll.watch(model, every=10, optimizer=opt) as w:
        for k in range(1, 6):
            opt.zero_grad()
            probs = torch.softmax(model(torch.randn(8, 4)), dim=1)
            loss = -torch.log(probs - probs if k == 3 else probs).mean()  # a hand-written loss gone wrong
            loss.backward()
            opt.step()
    assert [(a.kind, a.layer, a.step) for a in w.alerts] == [("nan_grad", "2", 3)]
    assert "the loss (or its gradient)" in w.alerts[0].message


def test_watch_takes_the_shared_trace_options() -> None:
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with ll.watch(model, every=5, optimizer=opt, options=ll.TraceOptions(values=None)) as w:
        _fit(model, opt, steps=3)
    assert w.first_trace is not None and w.first_trace[0].outputs[0].stats is None  # values=None: shapes only
    with pytest.raises(TypeError, match="TraceOptions"):
        ll.watch(model, options={"values": None})  # type: ignore[arg-type]


class Residual(nn.Module):
    def __init__(self, kernel: int, padding: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv1d(8, 8, kernel, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


def _residual_run(kernel: int, padding: int) -> tuple[ll.Watch, BaseException | None]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 8, 1), Residual(kernel, padding), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                          nn.Linear(8, 1))  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    raised = None
    try:
        with ll.watch(model, optimizer=opt) as w:
            for _ in range(3):
                opt.zero_grad()
                model(torch.randn(2, 4, 32)).sum().backward()
                opt.step()
    except ll.TraceError as exc:
        raised = exc
    return w, raised


def test_a_size_mismatch_in_a_residual_names_the_conv_that_changed_the_length() -> None:
    w, raised = _residual_run(kernel=4, padding=2)  # L: 32 + 4 - 3 = 33
    assert raised is not None
    assert "the mismatch comes from: '1.conv2' (Conv1d) changed dimension 2 from 32 to 33" in str(raised)
    assert [(a.kind, a.layer) for a in w.alerts] == [("crash", "1.conv2")]
    healthy, ok = _residual_run(kernel=3, padding=1)
    assert ok is None and healthy.alerts == []


# -- healthy training that looked like trouble -------------------------------------------------


class _ZeroInitBlock(nn.Module):
    """A residual block whose branch ends in a zero-initialised layer (timm's and
    torchvision's zero_init_last): the branch's gradients start at 0 and stay tiny
    for the first steps, while the skip path carries the signal to the input."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.act, self.last = nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.last(self.act(self.inner(x)))


def test_zero_initialised_residual_branches_are_not_vanishing_gradients_when_measured_in_shares() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), *[_ZeroInitBlock() for _ in range(8)], nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(1)
    with ll.watch(model, every=1, optimizer=opt, layers_per_step=8) as w:  # 35 modules: shares of about 7
        for _ in range(8):
            x = torch.randn(16, 8, generator=gen)
            opt.zero_grad()
            (1e-3 * F.mse_loss(model(x), x.sum(dim=1, keepdim=True))).backward()  # gradients of about 1e-3
            opt.step()
    assert any(p.grad_norm is not None and 0 < p.grad_norm < 1e-8 for r in w.history for p in r.params)  # tiny
    assert [a for a in w.alerts if a.kind == "vanishing_grad"] == []


class _TinyShift(nn.Module):
    """Adds a parameter scaled by 1e-19 (as a key bias reaches the loss through a
    softmax that nearly cancels it): its gradient is about 1e-19, its updates 1e-23."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.full((4,), 1e-21))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1e-19 * self.shift


def test_an_update_too_small_for_float32_squares_is_not_a_missed_update() -> None:
    """The norm of the change reads 0 (its float32 squares underflow): not_updated
    knows a change that small cannot be seen and stays silent."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), _TinyShift())
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    before = model[1].shift.detach().clone()
    with ll.watch(model, every=1, optimizer=opt) as w:
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(1, 4)).sum().backward()
            opt.step()
    assert not torch.equal(before, model[1].shift.detach())  # it did change, by about 3e-23 a step
    shift = next(p for p in w.history[-1].params if p.name == "1.shift")
    assert shift.update_ratio == 0  # what a float32 norm of that change reads
    assert [a for a in w.alerts if a.kind == "not_updated"] == []
