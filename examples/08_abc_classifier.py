"""Tutorial section 8: the abc classifier, trained, traced and used.

A string of 5 or 6 letters is class 0 if it contains 'a', else 1 for 'b',
else 2 for 'c'. Embedding -> 2-layer RNN -> reshape -> Linear, Adam, batches of 64.
"""

from __future__ import annotations

import layerlens as ll
from layerlens.models import abc


def main() -> None:
    result = abc.train(progress=False)
    print(f"trained {result.epochs} epochs in {result.seconds:.1f} s, validation accuracy {result.accuracy:.2%}")
    texts, classes = abc.generate(2000, seed=2)
    print(f"accuracy on 2,000 fresh strings: {abc.accuracy(result.model, texts, classes):.2%}")
    t = ll.trace(result.model, abc.encode(texts[:64]))
    print(t.table(columns=["layer", "type", "input", "output", "params", "checks", "details"]))
    print("verify:", ll.verify(result.model, abc.encode(texts[:64])).summary())
    for p in abc.predict(result.model, ["xyzab", "qwbert", "cxyzw", "Bbxyz"]):
        print(f"{p.text}: class {p.cls} (p={p.probabilities[p.cls]:.3f}), ground truth {abc.label(p.text)}")


if __name__ == "__main__":
    main()
