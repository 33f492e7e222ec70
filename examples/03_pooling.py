"""Tutorial section 3: pooling shrinks its input with a max or a mean per window.

The tutorial embeds 4 indices (a 4x4 matrix), then pools it four ways.
Output length per dimension: floor((L_in + 2*padding - dilation*(kernel_size-1) - 1)/stride + 1).
"""

from __future__ import annotations

import torch
from torch import nn

import layerlens as ll


class Pools(nn.Module):
    """The tutorial's four pools, side by side on one embedded input."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 4, padding_idx=0)
        self.max2d = nn.MaxPool2d((4, 1), stride=(1, 1))
        self.max1d = nn.MaxPool1d(2, stride=1)
        self.avg2d = nn.AvgPool2d((4, 1), stride=(1, 1))
        self.avg1d = nn.AvgPool1d(2, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        e = self.embedding(x).unsqueeze(0).unsqueeze(0)  # (1, 1, 4, 4)
        flat = e.squeeze(0)  # (1, 4, 4)
        return self.max2d(e), self.max1d(flat), self.avg2d(e), self.avg1d(flat)


def main() -> None:
    torch.manual_seed(0)
    t = ll.trace(Pools(), torch.tensor([0, 1, 2, 3]), values="full")
    print(t.table(columns=["layer", "type", "input", "output", "checks", "details"]))
    print()
    for check in t.checks:
        if check.name == "pool_output_length":
            print(f"{check.message}")
    e = t["embedding"].outputs[0].value
    m = t["max2d"].outputs[0].value
    assert e is not None and m is not None
    print("verify:", ll.verify(Pools(), torch.tensor([0, 1, 2, 3])).summary())
    print(f"\nMaxPool2d((4, 1)) is the column-wise max of the 4x4 embedding: {bool((m.reshape(4) == e.max(0)).all())}")


if __name__ == "__main__":
    main()
