"""Training that looks right and learns nothing: a graph cut before the loss,
gradients cleared or never computed before the update, an optimizer never
stepped, a loss given the wrong kind of input. Each bug is named at its layer;
each healthy twin (and the legitimate patterns that look alike) raises nothing."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import layerlens as ll
from layerlens.watching import Alert, loss_checks

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Split(nn.Module):
    """An encoder and a head, with `cut` between them: how the encoder's output reaches the head."""

    def __init__(self, cut: str = "", depth: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(8 if i == 0 else 16, 16), nn.ReLU()]
        self.enc = nn.Sequential(*layers)
        self.head = nn.Linear(16, 3)
        self.cut = cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cut == "no_grad":
            with torch.no_grad():
                h = self.enc(x)
        else:
            h = self.enc(x)
        if self.cut == "detach":
            h = h.detach()
        elif self.cut == "data":
            h = h.data
        elif self.cut == "numpy":
            h = torch.from_numpy(h.detach().numpy())
        return self.head(h)


def _data(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    return [(torch.randn(16, 8, generator=gen), torch.randint(0, 3, (16,), generator=gen)) for _ in range(steps)]


Step = Callable[[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor], None]


def _watch(
    model: nn.Module, step: Step, opt: torch.optim.Optimizer | None = None, steps: int = 12, every: int = 3
) -> ll.Watch:
    """`steps` of the loop `step` under watch, with no warning of any kind (the watch never broke)."""
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ll.watch(model, every=every, optimizer=opt) as w:
            for x, y in _data(steps):
                step(model, opt, x, y)
    return w


def _watched(
    model: nn.Module, step: Step, opt: torch.optim.Optimizer | None = None, steps: int = 12, every: int = 3
) -> list[Alert]:
    return _watch(model, step, opt, steps, every).alerts


def _kinds(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(a.kind, a.layer) for a in alerts]


def _usual(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


# -- a graph cut before the loss ---------------------------------------------------------------


@pytest.mark.parametrize("cut", ["detach", "data", "numpy", "no_grad"])
def test_a_layer_cut_from_the_loss_is_named(cut: str) -> None:
    model = Split(cut)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with ll.watch(model, every=3, optimizer=opt) as w:
        for x, y in _data(6):
            _usual(model, opt, x, y)
    assert [(a.kind, a.layer) for a in w.alerts] == [("no_gradient", "enc.0")]
    message = w.alerts[0].message
    assert "enc.0.weight, enc.0.bias got no gradient" in message
    assert ("gradients off" in message) if cut == "no_grad" else (".detach()" in message)
    assert torch.equal(model.enc[0].weight, Split(cut).enc[0].weight)  # it truly never trained
    assert _kinds(_watched(Split(), _usual)) == []


def test_a_cut_after_a_deep_encoder_is_one_alert_at_the_layer_before_the_cut() -> None:
    alerts = _watched(Split("detach", depth=3), _usual)
    assert _kinds(alerts) == [("no_gradient", "enc.4")]
    assert "so did enc.0 (Linear), enc.2 (Linear) before it" in alerts[0].message
    assert _kinds(_watched(Split(depth=3), _usual)) == []


def test_an_output_the_loss_ignores_is_a_note_not_an_alert() -> None:
    """A pooler (BERT's) runs and returns its output, which a token-level loss ignores:
    it does not train, which is worth knowing, and is no bug."""

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.pooler, self.head = Split().enc, nn.Linear(16, 16), nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.body(x)
            return self.head(h), torch.tanh(self.pooler(h))

    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad()
        logits, _ = model(x)
        F.cross_entropy(logits, y).backward()
        opt.step()

    w = _watch(Pooled(), step)
    assert w.alerts == []
    assert [(n.kind, n.layer) for n in w.notes] == [("unused_output", "pooler")]
    assert "its output does not reach the loss" in w.notes[0].message


def test_a_head_that_only_other_steps_train_is_fine() -> None:
    """Multi-task training: both heads run every step, each step's loss uses one; every
    sampled step (1, 3, 5, ...) uses head a, so head b is never seen with a gradient,
    but it trains in between."""

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.a, self.b = Split().enc, nn.Linear(16, 3), nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.body(x)
            return self.a(h), self.b(h)

    task = iter(range(100))

    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad()
        out_a, out_b = model(x)
        F.cross_entropy(out_a if next(task) % 2 == 0 else out_b, y).backward()
        opt.step()

    assert _kinds(_watched(TwoHeads(), step, every=2)) == []


def test_a_frozen_backbone_outside_the_optimizer_is_fine() -> None:
    model = Split("no_grad")
    model.enc.requires_grad_(False)
    opt = torch.optim.SGD(model.head.parameters(), lr=0.05)
    assert _kinds(_watched(model, _usual, opt)) == []


def test_checkpointed_blocks_get_their_gradients() -> None:
    class Checkpointed(Split):
        def __init__(self, reentrant: bool) -> None:
            super().__init__()
            self.reentrant = reentrant

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.requires_grad_() if self.reentrant else x  # the reentrant form runs its forward under no_grad
            return self.head(torch.utils.checkpoint.checkpoint(self.enc, x, use_reentrant=self.reentrant))

    assert _kinds(_watched(Checkpointed(False), _usual)) == []
    assert _kinds(_watched(Checkpointed(True), _usual)) == []


# -- gradients gone, or not there yet, at the update -------------------------------------------------


def test_zero_grad_between_backward_and_step() -> None:
    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        F.cross_entropy(model(x), y).backward()
        opt.zero_grad()
        opt.step()

    assert _kinds(_watched(Split(), step)) == [("grad_cleared", "")]
    assert _kinds(_watched(Split(), _usual)) == []


def test_one_update_skipped_on_purpose_is_not_a_misplaced_zero_grad() -> None:
    """A loop that drops one batch's gradients (a loss spike, say) before its step."""
    count = iter(range(100))

    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if next(count) == 4:
            opt.zero_grad()
        opt.step()

    assert _kinds(_watched(Split(), step, every=1)) == []


def test_step_before_backward() -> None:
    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        opt.step()
        loss.backward()

    assert _kinds(_watched(Split(), step)) == [("no_backward", "")]


def test_optimizer_step_forgotten() -> None:
    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()

    model = Split()
    before = model.head.weight.clone()
    assert _kinds(_watched(model, step)) == [("no_step", "")]
    assert torch.equal(model.head.weight, before)


def test_an_optimizer_stepped_by_other_means_is_not_a_forgotten_step() -> None:
    """SAM-style: `first_step` perturbs the weights, `second_step` restores them and
    steps an inner optimizer; the watched optimizer's own `step()` never runs."""

    class TwoSteps(torch.optim.SGD):
        def __init__(self, params: Any) -> None:
            super().__init__(params, lr=0.05)
            self.inner = torch.optim.SGD(self.param_groups, lr=0.05)

        @torch.no_grad()
        def first_step(self) -> None:
            self.saved = [p.clone() for g in self.param_groups for p in g["params"]]
            for p in (p for g in self.param_groups for p in g["params"] if p.grad is not None):
                p.add_(p.grad, alpha=0.01)
            self.zero_grad()

        @torch.no_grad()
        def second_step(self) -> None:
            for p, old in zip((p for g in self.param_groups for p in g["params"]), self.saved, strict=True):
                p.copy_(old)
            self.inner.step()
            self.zero_grad()

    model = Split()
    opt = TwoSteps(model.parameters())

    def step(model: nn.Module, opt: Any, x: torch.Tensor, y: torch.Tensor) -> None:
        F.cross_entropy(model(x), y).backward()
        opt.first_step()
        F.cross_entropy(model(x), y).backward()
        opt.second_step()

    assert _kinds(_watched(model, step, opt, every=1)) == []


def test_a_closure_optimizer_steps_inside_its_step() -> None:
    model = Split()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=3)

    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        opt.step(closure)  # type: ignore[no-untyped-call]

    assert _kinds(_watched(model, step, opt, steps=4, every=1)) == []


def test_a_gan_discriminator_whose_gradients_the_generator_step_leaves_is_fine() -> None:
    """The DCGAN loop: the generator's backward runs through the discriminator, which
    zeroes those gradients only at its own next step."""
    torch.manual_seed(0)
    gen = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8))
    disc = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    opt_g, opt_d = torch.optim.Adam(gen.parameters(), 1e-3), torch.optim.Adam(disc.parameters(), 1e-3)
    real, fake_label = torch.ones(16, 1), torch.zeros(16, 1)
    with ll.watch(gen, every=2, optimizer=opt_g) as wg, ll.watch(disc, every=2, optimizer=opt_d) as wd:
        for _ in range(8):
            fake = gen(torch.randn(16, 4))
            opt_d.zero_grad()
            loss_d = F.binary_cross_entropy_with_logits(disc(torch.randn(16, 8)), real)
            (loss_d + F.binary_cross_entropy_with_logits(disc(fake.detach()), fake_label)).backward()
            opt_d.step()
            opt_g.zero_grad()
            F.binary_cross_entropy_with_logits(disc(fake), real).backward()
            opt_g.step()
    assert wg.alerts == [] and wd.alerts == []


def test_a_learning_rate_warmup_from_zero_is_not_a_missed_update() -> None:
    """The update of a sampled step is judged with the learning rate it used, not the
    one the scheduler set right after."""
    model = Split()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: k / 5)

    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        _usual(model, opt, x, y)
        sched.step()

    assert _kinds(_watched(model, step, opt, every=1)) == []


# -- a loss given the wrong kind of input -------------------------------------------------------------


def _classifier(last: nn.Module | None = None) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)]
    return nn.Sequential(*layers, *([last] if last is not None else []))


def _with(loss: Loss, multi_label: bool = False) -> Callable[..., None]:
    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad()
        target = F.one_hot(y, 4)[:, :4].float() if multi_label else y % 4
        loss(model(x), target).backward()
        opt.step()

    return step


@pytest.mark.parametrize(
    ("last", "loss", "multi", "culprit", "says"),
    [
        (nn.Softmax(dim=1), F.cross_entropy, False, "3", "applies log_softmax itself"),
        (nn.Sigmoid(), F.cross_entropy, False, "3", "applies log_softmax itself"),
        (nn.Sigmoid(), F.binary_cross_entropy_with_logits, True, "3", "sigmoid is applied twice"),
        (None, F.nll_loss, False, "2", "expects log-probabilities"),
        (nn.Softmax(dim=1), F.nll_loss, False, "3", "expects log-probabilities"),
    ],
)
def test_a_loss_given_the_wrong_kind_of_input(
    last: nn.Module | None, loss: Loss, multi: bool, culprit: str, says: str
) -> None:
    alerts = _watched(_classifier(last), _with(loss, multi))
    assert _kinds(alerts) == [("loss_mismatch", culprit)]
    assert says in alerts[0].message


@pytest.mark.parametrize(
    ("last", "loss", "multi"),
    [
        (None, F.cross_entropy, False),
        (None, lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1), False),
        (None, F.binary_cross_entropy_with_logits, True),
        (nn.Sigmoid(), F.binary_cross_entropy, True),
        (nn.LogSoftmax(dim=1), F.nll_loss, False),
        (nn.Softmax(dim=1), lambda p, y: F.mse_loss(p, F.one_hot(y, 4).float()), False),  # a Brier score
        (nn.LogSoftmax(dim=1), lambda q, y: F.kl_div(q, F.one_hot(y, 4).float(), reduction="batchmean"), False),
    ],
)
def test_a_loss_given_what_it_expects_is_fine(last: nn.Module | None, loss: Loss, multi: bool) -> None:
    assert _kinds(_watched(_classifier(last), _with(loss, multi))) == []


def test_a_softmax_in_the_models_own_code_names_the_model() -> None:
    class Probabilities(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _classifier()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.softmax(self.net(x), dim=-1)

    assert _kinds(_watched(Probabilities(), _with(F.cross_entropy))) == [("loss_mismatch", "")]


def _gradient(z: torch.Tensor, loss: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    leaf = z.detach().requires_grad_(True)
    loss(leaf).backward()
    assert leaf.grad is not None
    return leaf.grad


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(2, 24),
    classes=st.integers(2, 12),
    scale=st.floats(0.5, 6.0),
    seed=st.integers(0, 2**16),
    smoothing=st.sampled_from([0.0, 0.1]),
)
def test_cross_entropy_is_told_from_its_gradient(
    rows: int, classes: int, scale: float, seed: int, smoothing: float
) -> None:
    """Whatever the shapes and scales: cross-entropy on logits (and the losses that
    rightly take probabilities) says nothing; cross-entropy on softmax is named."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, classes, generator=gen, dtype=torch.float32) * scale
    target = torch.randint(0, classes, (rows,), generator=gen)
    probs = torch.softmax(logits, dim=1)

    def ce(z: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(z, target, label_smoothing=smoothing)

    assert loss_checks.judge(logits, _gradient(logits, ce), squashed=False) is None
    brier = _gradient(probs, lambda p: F.mse_loss(p, F.one_hot(target, classes).float()))
    assert loss_checks.judge(probs, brier, squashed=True) is None
    log_probs = torch.log_softmax(logits, dim=1)
    assert loss_checks.judge(log_probs, _gradient(log_probs, lambda q: F.nll_loss(q, target)), squashed=False) is None
    # told apart where the probabilities spread: not two classes (softmax is then a sigmoid of the difference,
    # which over near-even probabilities a line, a Brier score's gradient, fits as well), not near one-hot rows
    if classes >= 3 and rows >= 4 and scale <= 2:
        found = loss_checks.judge(probs, _gradient(probs, ce), squashed=True)
        assert found == loss_checks.CE_ON_PROBABILITIES


# -- units that can never differ ---------------------------------------------------------------------


def test_a_constant_initialisation_keeps_units_identical() -> None:
    model = _classifier()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.05)
    alerts = _watched(model, _usual)
    # the head's rows part on the first update (their targets differ), the hidden layer's never do; with equal head
    # rows the hidden layer's first gradient cancels to rounding, which vanishing_grad also says, at the same layer
    assert {a.layer for a in alerts} == {"0"} and "symmetric_weights" in {a.kind for a in alerts}
    found = next(a for a in alerts if a.kind == "symmetric_weights")
    assert "all 32 output units of 0.weight have the same weights" in found.message
    assert torch.equal(model[0].weight, model[0].weight[:1].expand_as(model[0].weight))  # truly still identical


def test_zero_initialised_layers_that_the_first_update_sets_apart_are_fine() -> None:
    """A zero head (and a LoRA-style zero up-projection) starts with equal rows; its
    gradient differs per unit, so it learns."""

    class LowRank(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = _classifier()
            self.down, self.up = nn.Linear(8, 2, bias=False), nn.Linear(2, 4, bias=False)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.base[2].weight)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.base(x) + self.up(self.down(x))

    assert _kinds(_watched(LowRank(), _usual)) == []
