"""Tutorial section 7: Dropout zeroes each element with probability p in
training, and scales the others by 1/(1-p) so the expected value is unchanged;
in eval mode it passes its input through.
"""

from __future__ import annotations

import torch
from torch import nn

import layerlens as ll


def main() -> None:
    torch.manual_seed(3)  # a draw that keeps some and drops some
    drop = nn.Dropout(p=0.6)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    t = ll.trace(drop, x, values="full", mode="train")
    y = t[0].outputs[0].value
    assert y is not None
    print(f"input:  {x.tolist()}")
    print(f"train:  {[round(v, 3) for v in y.tolist()]}  (kept values x 1/(1-0.6) = x 2.5)")
    print(t.checks[0].message)
    t = ll.trace(drop, x, values="full", mode="eval")
    y = t[0].outputs[0].value
    assert y is not None
    print(f"eval:   {y.tolist()}")
    print(t.checks[0].message)
    print("verify (train, from the mask it drew):", ll.verify(drop, x, mode="train").summary())
    big = ll.trace(nn.Dropout(0.6), torch.ones(100_000), mode="train")
    print(f"on 100,000 ones: dropped {big[0].details['observed_drop_fraction']:.1%} (p = 60%), "
          f"mean {big[0].outputs[0].stats.mean:.3f} (expected 1.0)")  # type: ignore[union-attr]  # fmt: skip


if __name__ == "__main__":
    main()
