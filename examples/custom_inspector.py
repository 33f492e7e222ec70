"""Teach layerlens about a layer of your own: details and a check, in a few lines.

Run: python examples/custom_inspector.py
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

import layerlens as ll


class Gain(nn.Module):
    """Multiplies its input by a fixed gain."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


@ll.register(Gain)
def inspect_gain(module: Gain, record: ll.LayerRecord) -> Iterator[ll.Check]:
    record.details["gain"] = module.gain
    yield ll.Check("gain_positive", module.gain > 0, ">0", module.gain, "gain must be positive")


def main() -> None:
    model = nn.Sequential(nn.Linear(4, 4), Gain(2.0), Gain(-0.5))
    t = ll.trace(model, torch.randn(3, 4))
    print(t.table(columns=["layer", "type", "output", "checks", "details"]))
    print("\nfailed:", [f"{c.name}: {c.message}" for c in t.failures])


if __name__ == "__main__":
    main()
