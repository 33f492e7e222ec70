"""Dropout layers: `p`, the mode of the call, the observed drop rate, and
`dropout_scaling`: in training every output is 0 or `x/(1-p)`, in eval the
output is the input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..records import Check, LayerRecord
from ._common import first_tensor, machine_eps
from .registry import probe, register

_ALPHA = (nn.AlphaDropout, nn.FeatureAlphaDropout)
# The rule is checked on (at most) this many leading elements: exact for those, at a bounded cost.
_SAMPLE = 1 << 16


@register(nn.modules.dropout._DropoutNd)
def inspect_dropout(module: nn.modules.dropout._DropoutNd, record: LayerRecord) -> Iterator[Check]:
    """p, inplace, training; `observed_drop_fraction`; `dropout_scaling`."""
    record.details.update(p=module.p, inplace=module.inplace, training=record.training)
    m = record.measures
    if "bad" not in m:
        return
    bad, total = int(m["bad"]), int(m["total"])
    if record.training and m.get("nonzero_inputs"):
        record.details["observed_drop_fraction"] = round(float(m["dropped"]) / float(m["nonzero_inputs"]), 4)
    if m["rule"] == "alpha":
        return  # alpha dropout's training transform is affine, not a rescaling: nothing to check
    name = type(module).__name__
    if not record.training:
        message = f"{name} (eval): output equals input: {bad} of {total} elements differ"
    elif module.p >= 1:
        message = f"{name}(p=1, training): every output is 0: {bad} of {total} elements are not"
    else:
        scale = 1.0 / (1.0 - module.p)
        drop = record.details.get("observed_drop_fraction")
        seen = f"; dropped {drop:.1%} of nonzero inputs" if drop is not None else ""
        message = (
            f"{name}(p={module.p}, training): every output is 0 or x/(1-p) = x*{scale:.4g}: "
            f"{bad} of {total} checked elements are neither{seen}"
        )
    yield Check("dropout_scaling", bad == 0, 0, bad, message)


def _keep_input(module: nn.Module, args: tuple[Any, ...]) -> Any:
    """An in-place dropout overwrites its input: keep a copy to compare with."""
    x = first_tensor(args)
    return x.detach().clone() if x is not None and getattr(module, "inplace", False) else None


def _scaling(module: nn.Module, args: tuple[Any, ...], output: Any, kept: Any) -> dict[str, Any]:
    """Count, on device, the outputs that break the dropout rule."""
    assert isinstance(module, nn.modules.dropout._DropoutNd)
    x = kept if kept is not None else first_tensor(args)
    if x is None or not isinstance(output, torch.Tensor) or output.shape != x.shape:
        return {}
    x, y = x.detach(), output.detach()
    if not module.training and y.data_ptr() == x.data_ptr() and y.stride() == x.stride():
        return {"total": x.numel(), "rule": "scale", "bad": 0}  # the identity returned its input
    x, y = x.reshape(-1)[:_SAMPLE], y.reshape(-1)[:_SAMPLE]
    found: dict[str, Any] = {"total": x.numel(), "rule": "alpha" if isinstance(module, _ALPHA) else "scale"}
    if not module.training:
        found["bad"] = (~((y == x) | (torch.isnan(y) & torch.isnan(x)))).sum()
        return found
    zero = y == 0
    nonzero_in = x != 0
    found.update(dropped=(zero & nonzero_in).sum(), nonzero_inputs=nonzero_in.sum())
    if module.p >= 1:
        found["bad"] = (~zero).sum()
    elif isinstance(module, _ALPHA):
        found["bad"] = 0
    else:
        rtol = 8 * machine_eps(str(y.dtype).removeprefix("torch."))
        scaled = x * (1.0 / (1.0 - module.p))
        close = torch.isclose(y, scaled, rtol=rtol, atol=0.0, equal_nan=True)
        found["bad"] = (~(zero | close)).sum()
    return found


probe(nn.modules.dropout._DropoutNd, before=_keep_input)(_scaling)
