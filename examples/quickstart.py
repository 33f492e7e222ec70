"""Trace the bundled abc classifier and look at what every layer did.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import layerlens as ll
from layerlens.models import abc


def main() -> None:
    model = abc.build_model()
    x = abc.encode(["xyzab", "qwbert", "cxyzw", "hello"])
    t = ll.trace(model, x)
    print(t)  # the table
    rnn = t["rnn"]
    print("\nrnn details:", rnn.details)
    print("rnn output shapes:", rnn.output_shapes)
    for check in t.checks:
        print(("ok   " if check.ok else "FAIL ") + check.name + ": " + check.message)


if __name__ == "__main__":
    main()
