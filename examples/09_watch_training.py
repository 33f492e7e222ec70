"""Watching training: the step and the layer where things went wrong.

The abc model with a hand-written log-softmax, log(exp(x) / sum(exp(x))), and
a learning rate far too high: the logits grow until exp() overflows, and the
loss turns NaN. `layerlens.watch` names the first layer whose output went bad
while its inputs were still finite — the hand-written log-softmax, not the
loss after it — and the step it happened at.
"""

from __future__ import annotations

import torch
from torch import nn

import layerlens as ll
from layerlens.models import abc


class NaiveLogSoftmax(nn.Module):
    """log(softmax(x)) written out: exp overflows for large logits (inf / inf = NaN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = torch.exp(x)
        return torch.log(e / e.sum(dim=1, keepdim=True))


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(53, 10, padding_idx=0)
        self.rnn = nn.RNN(10, 20, num_layers=2, batch_first=True)
        self.linear = nn.Linear(120, 3)
        self.log_softmax = NaiveLogSoftmax()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.embedding(x))
        out: torch.Tensor = self.log_softmax(self.linear(h.reshape(h.shape[0], -1)))
        return out


def main() -> None:
    torch.manual_seed(0)
    model = Classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=50.0)  # far too high
    texts, classes = abc.generate(6400, seed=0)
    x, y = abc.encode(texts), torch.tensor(classes)
    with ll.watch(model, every=1, optimizer=optimizer) as w:
        for step, i in enumerate(range(0, len(x), 64), start=1):
            loss = nn.functional.nll_loss(model(x[i : i + 64]), y[i : i + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            w.log(loss=loss.item())
            if not torch.isfinite(loss):
                print(f"step {step}: the loss is {loss.item()}")
                break
    for alert in w.alerts:
        print(alert)
    first = next(a for a in w.alerts if a.kind == "nan")
    print(f"\nfirst bad layer: {first.layer} ({first.type_name}) at step {first.step}")
    print(w.table(step=first.step).split("\n\n")[0])


if __name__ == "__main__":
    main()
