"""`layerlens.verify` and `verify_optimizer`: every layer against its numpy
reference; an injected bug fails exactly its layer; optimizers step by step."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import layerlens as ll
from layerlens.cli import main
from layerlens.models import abc
from layerlens.models.gallery import build_lstm_tagger, build_resnet_like, build_reused_block
from tests.conftest import judged_as


def _statuses(report: ll.VerifyReport) -> dict[str, str]:
    return {v.label: v.status for v in report.verdicts}


def test_abc_model_every_layer_checked_and_within_tolerance() -> None:
    report = ll.verify(abc.build_model(), abc.encode(list(abc.SAMPLE_STRINGS)), kwargs={"y": torch.arange(6) % 3})
    assert report.ok and not report.unchecked
    assert _statuses(report) == {
        "(root)": "composite", "embedding": "pass", "rnn": "pass", "linear": "pass", "loss": "pass",
    }  # fmt: skip
    assert report["rnn"].reference == "reference.rnn"
    assert report["rnn"].max_rel is not None and report["rnn"].max_rel < 1e-5
    assert "4/4 layers agree with their numpy reference" in str(report)


@pytest.mark.parametrize("build", [build_resnet_like, build_lstm_tagger, build_reused_block])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_example_models_every_layer_checked(build: object, mode: str) -> None:
    model, x = build()  # type: ignore[operator]
    report = ll.verify(model, x[:2], mode=mode)  # type: ignore[arg-type]
    assert report.ok, report.table()
    assert not report.unchecked, report.table()
    assert {v.status for v in report.verdicts} <= {"pass", "composite"}


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "float", "per_head"])
@pytest.mark.parametrize("weights", ["none", "average", "per_head"])
def test_attention_is_verified_with_masks_and_layouts(batch_first: bool, mask_kind: str, weights: str) -> None:
    torch.manual_seed(0)
    n, length, e, heads = 3, 5, 8, 2
    layer = nn.MultiheadAttention(e, heads, batch_first=batch_first).eval()
    x = torch.randn(n, length, e) if batch_first else torch.randn(length, n, e)
    kwargs: dict[str, object] = {"need_weights": weights != "none", "average_attn_weights": weights == "average"}
    causal = torch.ones(length, length).triu(1).bool()
    if mask_kind == "bool":
        kwargs["attn_mask"] = causal
        kwargs["key_padding_mask"] = torch.tensor([[False] * length] * (n - 1) + [[False] * 3 + [True] * 2])
    elif mask_kind == "float":
        kwargs["attn_mask"] = torch.zeros(length, length).masked_fill(causal, float("-inf"))
    elif mask_kind == "per_head":
        kwargs["attn_mask"] = torch.randn(n * heads, length, length)
    report = ll.verify(layer, (x, x, x), kwargs=kwargs)
    assert report.ok and not report.unchecked, report.table()
    assert report.verdicts[0].reference == "reference.multi_head_attention"


def test_transformer_and_unbatched_attention_are_verified() -> None:
    torch.manual_seed(0)
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), 2).eval()
    report = ll.verify(model, torch.randn(2, 6, 16), kwargs={"mask": nn.Transformer.generate_square_subsequent_mask(6)})
    assert report.ok and not report.unchecked, report.table()
    assert {v.type_name for v in report.verdicts if v.status == "pass"} >= {"MultiheadAttention", "LayerNorm"}
    unbatched = torch.randn(4, 16)
    assert ll.verify(nn.MultiheadAttention(16, 4).eval(), (unbatched, unbatched, unbatched)).ok


def test_wrong_attention_fails_and_training_dropout_is_unchecked() -> None:
    class Doubled(nn.MultiheadAttention):  # a bug: the query is doubled before its projection
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: object) -> tuple[torch.Tensor, None]:
            return super().forward(q * 2, k, v, need_weights=False)

    x = torch.randn(2, 3, 8)
    with judged_as(Doubled, nn.MultiheadAttention):
        assert [v.label for v in ll.verify(Doubled(8, 2, batch_first=True), (x, x, x)).failures] == ["(root)"]
    report = ll.verify(nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True), (x, x, x), mode="train")
    assert report.verdicts[0].status == "unchecked" and "dropout" in report.verdicts[0].note


def test_float64_models_get_tight_tolerances() -> None:
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4), nn.Tanh(), nn.Flatten(), nn.Linear(24, 2)).double()
    report = ll.verify(model, torch.randn(5, 3, 8, dtype=torch.float64), mode="train")
    assert report.ok and not report.unchecked
    for v in report.checked:
        assert v.rtol == 1e-9 and v.max_rel is not None and v.max_rel < 1e-12


def test_half_types_get_looser_tolerances() -> None:
    model = nn.Linear(16, 8).to(torch.bfloat16)
    x = torch.randn(4, 16, dtype=torch.bfloat16)
    report = ll.verify(model, x)
    assert report.ok and report.verdicts[0].rtol == 2e-2
    assert not ll.verify(model, x, rtol=1e-9, atol=0.0).ok  # bfloat16 cannot meet float64's tolerance


class _PerturbedLinear(nn.Linear):
    """A Linear whose forward uses a slightly different weight than it holds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight + 1e-2, self.bias)


class _WrongStrideConv(nn.Conv1d):
    """A Conv1d that ignores its own stride."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv1d(x, self.weight, self.bias, 1, self.padding, self.dilation, self.groups)


class _MomentumTypo(nn.BatchNorm1d):
    """A BatchNorm that updates its running statistics with the wrong momentum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                        self.training, 0.5, self.eps)  # fmt: skip


@pytest.mark.parametrize(
    ("bad", "x"),
    [
        (_PerturbedLinear(6, 6), torch.randn(4, 6)),
        (_WrongStrideConv(6, 6, 1, stride=2), torch.randn(4, 6, 8)),
        (_MomentumTypo(6), torch.randn(4, 6)),
    ],
)
def test_an_injected_bug_fails_exactly_its_layer(bad: nn.Module, x: torch.Tensor) -> None:
    flat = nn.Flatten() if x.dim() == 3 else nn.Identity()
    model = nn.Sequential(nn.Identity(), nn.Tanh(), bad, flat, nn.ReLU()).train()
    with judged_as(type(bad), type(bad).__mro__[1]):
        report = ll.verify(model, x)
    assert [v.label for v in report.failures] == ["2"]
    assert all(v.status == "pass" for v in report.verdicts if v.label not in ("2", "(root)", "3"))
    assert not report.ok and "✗ FAIL" in report.table()


def test_dropout_in_training_is_verified_from_its_mask() -> None:
    class NoRescale(nn.Dropout):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * (torch.rand_like(x) > self.p)

    good = ll.verify(nn.Dropout(0.3), torch.randn(200), mode="train")
    assert good.ok and good.verdicts[0].reference == "reference.dropout"
    with judged_as(NoRescale, nn.Dropout):
        assert not ll.verify(NoRescale(0.3), torch.randn(200), mode="train").ok


def test_layers_without_a_reference_are_listed_unchecked_not_passed() -> None:
    class Gain(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 3

    model = nn.Sequential(nn.Linear(3, 3), Gain(), nn.Mish())
    report = ll.verify(model, torch.randn(2, 3))
    assert _statuses(report) == {"(root)": "composite", "0": "pass", "1": "unchecked", "2": "unchecked"}
    assert report.ok  # nothing disagreed ...
    assert [v.label for v in report.unchecked] == ["1", "2"]  # ... and what was not compared is said
    assert "2 unchecked (1, 2)" in report.summary()

    @ll.register_reference(Gain)
    def gain_reference(module: Gain, inputs: tuple[np.ndarray, ...], record: ll.LayerRecord) -> np.ndarray:
        return inputs[0] * 3

    try:
        report = ll.verify(model, torch.randn(2, 3))
        assert report["1"].status == "pass" and report["1"].reference is not None
        assert "gain_reference" in report["1"].reference
    finally:
        ll.unregister(Gain)


def test_verify_changes_nothing_and_round_trips() -> None:
    model, x = build_resnet_like()
    model.train()
    before = copy.deepcopy(model.state_dict())
    report = ll.verify(model, x[:2])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert ll.VerifyReport.from_json(report.to_json()) == report
    with pytest.raises(ValueError, match="not a layerlens verify report"):
        ll.VerifyReport.from_json('{"schema": "layerlens.trace/1"}')
    worst = report.largest_errors()
    assert set(worst) == {"Conv2d", "BatchNorm2d", "ReLU", "Sequential", "AdaptiveAvgPool2d", "Linear"}


def test_recurrent_initial_states_and_unverifiable_calls() -> None:
    lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True)
    x, h0, c0 = torch.randn(2, 5, 3), torch.randn(2, 2, 4), torch.randn(2, 2, 4)
    assert ll.verify(lstm, (x, (h0, c0))).ok
    noisy = nn.GRU(3, 4, num_layers=2, dropout=0.5)
    report = ll.verify(noisy, torch.randn(5, 2, 3), mode="train")
    assert report.verdicts[0].status == "unchecked" and "random dropout" in report.verdicts[0].note


# -- optimizers ---------------------------------------------------------------------------


def _batches(n: int = 20) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)) for _ in range(n)]


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.SGD(p, lr=0.1),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda p: torch.optim.Adam(p, lr=1e-2),
        lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1, amsgrad=True),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    ],
)
def test_optimizer_steps_agree_for_20_steps(make: object) -> None:
    model = _mlp()
    opt = make(model.parameters())  # type: ignore[operator]
    before = copy.deepcopy(model.state_dict())
    report = ll.verify_optimizer(model, opt, nn.functional.mse_loss, _batches())
    assert report.ok and len(report.steps) == 20, str(report)
    assert report.first_divergence is None
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # worked on copies
    assert not opt.state  # the user's optimizer did not step


def test_optimizer_with_existing_state_and_param_groups() -> None:
    model = _mlp()
    opt = torch.optim.Adam([{"params": model[0].parameters(), "lr": 1e-2}, {"params": model[2].parameters()}], lr=1e-3)
    for x, y in _batches(3):  # some state already: m, v and t must carry over
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    assert ll.verify_optimizer(model, opt, nn.functional.mse_loss, _batches(5)).ok


class _ResettingAdam(torch.optim.Adam):
    """The tutorial's bug as a torch optimizer: Adam that forgets its state each step."""

    def step(self, closure: object = None) -> None:  # type: ignore[override]
        self.state.clear()
        super().step()


def test_an_optimizer_that_resets_its_state_diverges_from_step_2() -> None:
    model = _mlp()
    report = ll.verify_optimizer(
        model, _ResettingAdam(model.parameters(), lr=1e-2), nn.functional.mse_loss, _batches(5)
    )
    assert not report.ok
    assert report.steps[0].ok and report.first_divergence is not None and report.first_divergence.step == 2
    assert "first divergence: step 2" in str(report)


def test_unsupported_optimizer_is_a_clear_error() -> None:
    model = _mlp()
    with pytest.raises(TypeError, match="no numpy reference for RMSprop"):
        ll.verify_optimizer(model, torch.optim.RMSprop(model.parameters()), nn.functional.mse_loss, _batches(1))


# -- CLI -----------------------------------------------------------------------------------


def test_verify_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "reference.rnn" in out and "3/3 layers agree with their numpy reference" in out
    args = ["verify", "layerlens.models.gallery:resnet_like", "--input-size", "2,3,16,16", "--mode", "train"]
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 0
    assert "16/16 layers agree with their numpy reference" in capsys.readouterr().out
    assert ll.VerifyReport.from_json((tmp_path / "r.json").read_text()).ok
    assert main([*args, "--rtol", "0", "--atol", "0"]) == 1  # float32 is not exact


_NO_SPREAD = [  # (norm, a random input whose every normalised group holds one value)
    (nn.GroupNorm(32, 32), lambda: torch.randn(2, 32, 1, 1)),  # one element per group: DeformableDETR's input_proj
    (nn.LayerNorm(1), lambda: torch.randn(4, 6, 1)),
    (nn.InstanceNorm1d(3, affine=True), lambda: torch.randn(2, 3, 1).expand(2, 3, 5).contiguous()),
    (nn.BatchNorm1d(3).train(), lambda: torch.randn(1, 3).expand(6, 3).contiguous()),  # a constant channel
]


@pytest.mark.parametrize(("norm", "make"), _NO_SPREAD)
def test_a_norm_of_groups_with_no_spread_is_judged_by_its_rounding_not_failed(norm: nn.Module, make: Any) -> None:
    """A group with no spread normalises to its bias alone, and torch's float32 rounding of the
    mean comes out multiplied by 1/sqrt(eps): measured against its own input scale, that is
    rounding, not a wrong layer; an output off by a real amount still fails."""
    torch.manual_seed(0)
    for scale in (1.0, 30.0):
        assert ll.verify(copy.deepcopy(norm), make() * scale).verdicts[0].status == "pass"
    handle = norm.register_forward_hook(lambda m, a, out: out + 0.5)
    try:
        assert ll.verify(norm, make()).verdicts[0].status == "fail"
    finally:
        handle.remove()


def test_complex_layers_are_unchecked_not_failed() -> None:
    """The numpy references compute in real arithmetic: a complex layer is said to be
    unchecked, with why, rather than failed against its real part (with a ComplexWarning)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4, dtype=torch.cfloat), nn.Linear(4, 4, dtype=torch.cfloat))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = ll.verify(model, torch.randn(2, 4, dtype=torch.cfloat))
    assert [v.status for v in report.verdicts if v.name] == ["unchecked", "unchecked"]
    assert all("complex values" in (v.note or "") for v in report.verdicts if v.name)
