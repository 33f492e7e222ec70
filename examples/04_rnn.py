"""Tutorial section 4: an RNN reads a sequence; h_n[-1] summarises it.

RNN(5, 6, num_layers=2, batch_first=True) on (1, 4, 5) returns the top layer's
output at every step, (1, 4, 6), and the last hidden state of each layer,
(2, 1, 6). batch_first only changes which axis is time: the check
`rnn_final_state` confirms the last time step along that axis equals h_n[-1].
"""

from __future__ import annotations

import torch
from torch import nn

import layerlens as ll


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 4, 5)  # (batch, seq, feature)
    first = nn.RNN(5, 6, num_layers=2, batch_first=True)
    t = ll.trace(first, x)
    print(t.table(columns=["layer", "type", "input", "output", "checks", "details"]))
    r = t[0]
    print(f"\nbatch_first=True reads (1, 4, 5) as batch {r.details['batch']}, {r.details['seq_len']} steps")
    print(r.checks[0].message)
    print("verify:", ll.verify(first, x).summary())

    second = nn.RNN(5, 6, num_layers=2)  # batch_first=False: (seq, batch, feature)
    second.load_state_dict(first.state_dict())
    t2 = ll.trace(second, x.transpose(0, 1))
    steps, shapes = t2[0].details["seq_len"], t2[0].output_shapes
    print(f"batch_first=False on the transposed (4, 1, 5): {steps} steps, outputs {shapes}")
    same = torch.allclose(first(x)[0], second(x.transpose(0, 1))[0].transpose(0, 1))
    print(f"same numbers either way: {same}")
    t3 = ll.trace(second, x)
    print(f"but (1, 4, 5) given to batch_first=False is read as {t3[0].details['seq_len']} step of batch "
          f"{t3[0].details['batch']}: h_n[-1] then summarises a one-step 'sequence'")  # fmt: skip


if __name__ == "__main__":
    main()
