"""Dropout layers: `p`, the mode of the call, the observed drop rate, and
`dropout_scaling`: in training every output is 0 or `x/(1-p)`, in eval the
output is the input. The numpy reference replays the mask read off the
output; `watch` measures the drop rate and alerts on a Dropout left in
training mode while the model is evaluated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..records import Check, LayerRecord
from ..tensor_stats import as_numpy, strided, strided_np
from ._helpers import first_input, first_tensor, machine_eps
from .registry import Expected, LayerFamily, Probe, Unverifiable

_ALPHA = (nn.AlphaDropout, nn.FeatureAlphaDropout)
# The rule is checked on (at most) this many leading elements: exact for those, at a bounded cost.
_SAMPLE = 1 << 16


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


def _keep_input(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """An in-place dropout overwrites its input: keep a copy to compare with."""
    x = first_tensor(args)
    return x.detach().clone() if x is not None and getattr(module, "inplace", False) else None


def _scaling(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, kept: Any
) -> dict[str, Any]:
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


def dropout(x: np.ndarray, mask: np.ndarray, p: float) -> np.ndarray:
    """y = x * mask / (1 - p): kept elements (mask 1) are scaled so the expected
    value is unchanged; dropped ones (mask 0) are 0. With p = 1 everything is 0."""
    if p >= 1:
        return np.zeros_like(x)
    return x * mask / (1.0 - p)


def reference_dropout(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """Eval: the identity. Training: `dropout` with the mask the layer drew, read off its output."""
    x = first_input(inputs)
    if not r.training:
        return Expected(x, by="dropout")
    if isinstance(m, _ALPHA):
        raise Unverifiable("alpha dropout's training transform is not recomputed")
    observed = r.outputs[0].value if r.outputs else None
    if observed is None:
        raise Unverifiable("its output was not recorded, so its mask is unknown")
    mask = (observed != 0).astype(np.float64)
    return Expected(dropout(x, mask, m.p), by="dropout")


def dropout_health(module: Any, x: torch.Tensor | None, y: torch.Tensor) -> dict[str, Any]:
    """`dropped`: in training, the fraction of non-zero inputs zeroed (compare with `p`)."""
    found: dict[str, Any] = {"p": float(module.p)}
    if not module.training or x is None or x.shape != y.shape:
        return found
    a, b = as_numpy(x), as_numpy(y)
    if a is not None and b is not None:
        kept_np = strided_np(a) != 0
        found["dropped"] = int(np.count_nonzero((strided_np(b) == 0) & kept_np)) / max(
            1, int(np.count_nonzero(kept_np))
        )
    else:
        kept = strided(x) != 0
        found["dropped"] = ((strided(y) == 0) & kept).sum() / kept.sum().clamp(min=1)
    return found


def dropout_mode_alert(module: Any, model_training: bool) -> tuple[str, str] | None:
    """A Dropout in training mode while the model is evaluated drops activations."""
    if not model_training and module.training and module.p > 0:
        return "dropout_in_eval", "is in training mode while the model is evaluated: it drops activations"
    return None


_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
FAMILIES = (
    LayerFamily("dropout", _TYPES, inspect=inspect_dropout, probe=Probe(_scaling, _keep_input),
                reference=reference_dropout, health=dropout_health, mode_alert=dropout_mode_alert,
                modal=lambda m: m.p > 0, color="#dde3ea"),
)  # fmt: skip
