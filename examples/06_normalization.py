"""Tutorial section 6: BatchNorm, LayerNorm and InstanceNorm normalise over
different axes of the same (N, C, L) tensor.

BatchNorm: per channel, over the batch and the length (the whole class's
marks, per subject). LayerNorm over (C, L): per sample (each student's own
marks). InstanceNorm: per sample and channel. The `norm_statistics` check
recomputes each output with the statistics and axes its layer should use.
"""

from __future__ import annotations

import torch
from torch import nn

import layerlens as ll


class ThreeNorms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.batch = nn.BatchNorm1d(3)
        self.layer = nn.LayerNorm([3, 5])
        self.instance = nn.InstanceNorm1d(3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.batch(x), self.layer(x), self.instance(x)


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5) * 3 + 2
    t = ll.trace(ThreeNorms().train(), x)
    print(t.table(columns=["layer", "type", "input", "output", "checks"]))
    print()
    for r in t[1:]:
        print(f"{r.name}: {r.checks[0].message}")
    print("verify:", ll.verify(ThreeNorms().train(), x).summary())
    b, ln, inst = (r.outputs[0].stats for r in t[1:])
    assert b is not None and ln is not None and inst is not None
    print(f"\nall three outputs have mean ~0 and std ~1 overall: {b.mean:.3f}/{b.std:.3f}, {ln.mean:.3f}/{ln.std:.3f}, "
          f"{inst.mean:.3f}/{inst.std:.3f}; what differs is over which axes")  # fmt: skip


if __name__ == "__main__":
    main()
