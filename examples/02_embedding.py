"""Tutorial section 2: Embedding turns indices into vectors.

Embedding(10, 4, padding_idx=0) on a 2x4 index tensor gives 2x4x4: one
4-vector per index, and index 0 (the padding index) maps to the zero row.
"""

from __future__ import annotations

import torch
from torch import nn

import layerlens as ll


def main() -> None:
    torch.manual_seed(0)
    embed = nn.Embedding(10, 4, padding_idx=0)
    indices = torch.tensor([[0, 2, 3, 4], [5, 6, 7, 8]])
    t = ll.trace(embed, indices, values="full")
    print(t.table(columns=["layer", "type", "input", "output", "params", "checks", "details"]))
    out = t[0].outputs[0].value
    assert out is not None
    print(f"\noutput shape: {tuple(out.shape)} (batch 2, 4 positions, 4 numbers each)")
    print(f"output[0, 0], the padding index 0: {out[0, 0].tolist()}")
    print(f"output[1, 2] equals weight[7]: {bool((out[1, 2] == embed.weight[7].detach().numpy()).all())}")
    for check in t.checks:
        print(f"{check.name}: {check.message}")
    print("verify:", ll.verify(embed, indices).summary())


if __name__ == "__main__":
    main()
