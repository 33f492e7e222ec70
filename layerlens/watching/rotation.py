"""Which modules a sampled step measures: all of them in a model of up to
`per_step` modules; beyond that the root, the first trainable layer and an
interleaved share (every k-th module, a different share each sampled step), so
a sampled step costs about the same on a 4,000-layer model as on a 250-layer
one and every layer is still measured every k-th sampled step. NaN/Inf is
checked on every step regardless (see `nan_origin`)."""

from __future__ import annotations

import math

from torch import nn

Params = list[tuple[str, str, nn.Parameter]]  # (name, owning module, parameter)


class Rotation:
    """The modules (id -> name) and parameters for each sampled step."""

    def __init__(self, names: dict[int, str], params: Params, per_step: int | None) -> None:
        self.names, self.params = names, params
        count = len(names)
        stride = 1 if per_step is None or count <= per_step else math.ceil(count / max(1, per_step))
        # an odd stride mixes layer kinds that alternate (Linear, ReLU, Linear, ...) within each share
        self.stride = stride + 1 if stride > 1 and stride % 2 == 0 else stride
        self._shares: dict[int, tuple[dict[int, str], Params]] = {}
        # the first trainable parameter's layer is in every share: vanishing gradients are judged from the
        # input side on, and a share that starts deeper would take a scaled residual branch for the input
        self._anchor = next((owner for _, owner, p in params if p.requires_grad), "")

    def pick(self, sample: int) -> tuple[dict[int, str], Params]:
        """The share for the `sample`-th sampled step (0, 1, ...)."""
        if self.stride == 1:
            return self.names, self.params
        phase = sample % self.stride
        share = self._shares.get(phase)
        if share is None:
            chosen = {key: name for i, (key, name) in enumerate(self.names.items())
                      if i % self.stride == phase or name in ("", self._anchor)}  # fmt: skip
            owners = set(chosen.values())
            share = self._shares[phase] = (chosen, [p for p in self.params if p[1] in owners])
        return share
