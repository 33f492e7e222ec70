"""Tutorial section 5: Conv1d slides kernels along a sequence.

Output length: L_out = floor((L_in + 2*padding - dilation*(kernel_size-1) - 1)/stride + 1).
The tutorial's shorthand (L_in - kernel_size + 2*padding)/stride + 1 is the
same formula with dilation 1 and an exact division.
"""

from __future__ import annotations

import torch
from torch import nn

import layerlens as ll

CONFIGS = [  # (L_in, kernel_size, stride, padding, dilation)
    (256, 3, 1, 0, 1),
    (256, 3, 1, 1, 1),
    (256, 5, 2, 2, 1),
    (100, 3, 3, 0, 2),
    (7, 4, 2, 1, 1),
]


def main() -> None:
    print("L_in  k  s  p  d   formula  torch  check  verify")
    for L, k, s, p, d in CONFIGS:
        conv = nn.Conv1d(1, 1, k, stride=s, padding=p, dilation=d)
        t = ll.trace(conv, torch.randn(1, 1, L), values=None)
        check = t[0].checks[0]
        formula = ll.conv_output_length(L, k, s, p, d)
        verdict = "ok" if check.ok else "FAIL"
        agrees = "agrees" if ll.verify(conv, torch.randn(1, 1, L)).ok else "DIFFERS"
        print(f"{L:4d} {k:2d} {s:2d} {p:2d} {d:2d}   {formula:7d}  {check.actual:5d}  {verdict:5s}  {agrees}")

    # A misread expectation: the author believed padding=1 keeps the length with kernel_size=5
    # ("same" needs padding=2), and sized the classifier for 32 channels x 64 positions.
    model = nn.Sequential(nn.Conv1d(8, 32, kernel_size=5, padding=1), nn.Flatten(), nn.Linear(32 * 64, 10))
    try:
        ll.trace(model, torch.randn(2, 8, 64))
    except ll.TraceError as err:
        print("\nthe check catches the misreading:")
        print(err.trace["0"].checks[0].message)
        print(str(err).splitlines()[0])
        print(str(err).splitlines()[2].strip())


if __name__ == "__main__":
    main()
