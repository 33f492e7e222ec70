"""A backward that raises inside `with layerlens.watch(...)`: autograd's error names a
tensor; watch adds, as a note on the same error and a `crash` alert, the model's
input or the layer that caused it. The healthy twins train without a word."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

import layerlens as ll


class Tagger(nn.Module):
    """A GRU tagger whose hidden state the loop carries from batch to batch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, state = self.rnn(x, state)
        return self.out(y), state


def _carry_state(detach: bool) -> ll.Watch:
    model = Tagger()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state = torch.zeros(1, 2, 8)
    gen = torch.Generator().manual_seed(0)
    with ll.watch(model, every=1, optimizer=opt) as w:
        for _ in range(3):
            x, y = torch.randn(2, 5, 4, generator=gen), torch.randint(0, 3, (2, 5), generator=gen)
            out, state = model(x, state.detach() if detach else state)
            opt.zero_grad()
            F.cross_entropy(out.reshape(-1, 3), y.reshape(-1)).backward()
            opt.step()
    return w


def test_a_recurrent_state_carried_without_detach_is_named() -> None:
    with pytest.raises(RuntimeError, match="backward through the graph a second time") as raised:
        _carry_state(detach=False)
    notes = getattr(raised.value, "__notes__", [])
    assert len(notes) == 1 and "the model's input state (shape [1, 2, 8]) still carries the graph" in notes[0]
    assert "h = h.detach()" in notes[0]
    assert _carry_state(detach=True).alerts == []


class Shifted(nn.Module):
    """Adds 1 to a sigmoid's output in place (whose backward needs it), or out of place;
    the in-place add on the first Linear's output is harmless (Linear's backward keeps its input)."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.head = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.a(x)
        r += 1
        h = torch.sigmoid(self.b(r))
        if self.inplace:
            h += 1
        else:
            h = h + 1
        return self.head(h)


def _one_step(model: nn.Module) -> ll.Watch:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ll.watch(model, every=1, optimizer=opt) as w:
            opt.zero_grad()
            F.cross_entropy(model(torch.randn(2, 4)), torch.tensor([0, 2])).backward()
            opt.step()
    return w


def test_an_inplace_change_the_backward_needed_is_named_where_the_code_made_it() -> None:
    model = Shifted(inplace=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="modified by an inplace operation") as raised:
        _one_step(model)
    (note,) = raised.value.__notes__
    assert note.startswith("layerlens: (root) (Shifted): changes a tensor of shape [2, 8] in place (`+=`")
    assert "also" not in note  # the harmless += on the Linear's output is not blamed
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # explaining changed nothing
    assert _one_step(Shifted(inplace=False)).alerts == []


def test_an_inplace_activation_layer_is_named() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.ReLU(inplace=True), nn.Linear(8, 3))
    with pytest.raises(RuntimeError, match="modified by an inplace operation") as raised:
        _one_step(model)
    assert raised.value.__notes__[0].startswith("layerlens: 2 (ReLU): changes a tensor of shape [2, 8] in place")
    torch.manual_seed(0)
    healthy = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.ReLU(), nn.Linear(8, 3))
    assert _one_step(healthy).alerts == []


def test_other_errors_of_the_loop_pass_through_untouched() -> None:
    model = Shifted(inplace=False)
    w = ll.watch(model, every=1)

    def loop() -> None:
        with w:
            model(torch.randn(2, 4))
            raise ValueError("the user's own")

    with pytest.raises(ValueError, match="the user's own") as raised:
        loop()
    assert not getattr(raised.value, "__notes__", None) and w.alerts == []


@pytest.mark.parametrize("mistake", ["no_grad", "frozen"])
def test_a_loss_without_a_graph_says_why(mistake: str) -> None:
    """The training forward under torch.no_grad(), or every parameter frozen: backward
    has nothing to run through."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    if mistake == "frozen":
        model.requires_grad_(False)

    def loop() -> None:
        with ll.watch(model, every=1):
            with torch.no_grad() if mistake == "no_grad" else contextlib.nullcontext():
                out = model(torch.randn(2, 4))
            F.cross_entropy(out, torch.tensor([0, 2])).backward()

    with pytest.raises(RuntimeError, match="does not require grad") as raised:
        loop()
    (note,) = raised.value.__notes__
    assert ("ran with gradients off" if mistake == "no_grad" else "all frozen") in note
