"""What `watch` records on a sampled step: plain data, safe to keep and to dump."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..json_floats import encode
from ..records import TensorStats


@dataclass
class LayerHealth:
    """One module call on a sampled step.

    `dead_fraction`: ReLU-family outputs, the fraction of units (every
    position but the batch's) that are zero for every sample. `saturated_fraction`:
    sigmoid/tanh outputs within 1% of their bounds. `drop_rate`: Dropout in
    training, the fraction of non-zero inputs it zeroed (compare with `p`).
    These two fractions come from an evenly strided sample of 4,096 elements of
    larger outputs; so do the output's mean, std and zero fraction, while its
    min, max and NaN/Inf counts are exact.
    `input_modified`: the call changed one of its inputs in place although the
    layer does not say it works in place (no `inplace=True`).
    `grad_norm`, `grad_max`: the 2-norm and largest |value| of the gradient
    with respect to the output (from the backward pass of the same step), with
    its NaN and Inf counts.
    """

    name: str
    type_name: str
    training: bool
    leaf: bool = True
    output: TensorStats | None = None
    inputs_finite: bool = True
    input_modified: bool = False  # a floating input's version counter went up during this call
    dead_fraction: float | None = None
    saturated_fraction: float | None = None
    drop_rate: float | None = None
    p: float | None = None
    grad_norm: float | None = None
    grad_max: float | None = None
    grad_nan: int = 0
    grad_inf: int = 0

    @property
    def output_finite(self) -> bool:
        return self.output is None or (self.output.nan_count == 0 and self.output.inf_count == 0)

    @property
    def has_grad(self) -> bool:
        return self.grad_norm is not None

    @property
    def grad_finite(self) -> bool:
        return self.grad_nan == 0 and self.grad_inf == 0


@dataclass
class ParamHealth:
    """One parameter on a sampled step: its gradient's 2-norm and largest |value|
    (NaN/Inf counted when there are any), and with an optimizer the size of the
    update relative to the weight, ||p_new - p_old|| / ||p_old||."""

    name: str
    module: str
    grad_norm: float | None = None
    grad_max: float | None = None
    grad_nan: int = 0
    grad_inf: int = 0
    weight_norm: float | None = None
    update_ratio: float | None = None


@dataclass(frozen=True)
class Alert:
    """Something went wrong: which kind, at which step, in which layer, and the numbers."""

    kind: str
    step: int
    layer: str
    type_name: str
    message: str
    rank: int = 0
    param: str = ""  # the parameter, for alerts about one
    caused_by: str = ""  # for an effect of an earlier alert: that alert, in one line

    def __str__(self) -> str:
        where = f"rank {self.rank}, " if self.rank else ""
        cause = f" (caused by: {self.caused_by})" if self.caused_by else ""
        return f"[{where}step {self.step}] {self.kind}: {self.message}{cause}"


@dataclass
class StepRecord:
    """Everything recorded on one sampled step."""

    step: int
    rank: int = 0
    layers: list[LayerHealth] = field(default_factory=list)
    params: list[ParamHealth] = field(default_factory=list)
    logs: dict[str, float] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)

    def layer(self, name: str) -> LayerHealth:
        """The first call of the module with this name on this step."""
        for h in self.layers:
            if h.name == name:
                return h
        raise KeyError(f"no layer {name!r} was called on step {self.step}")

    def param(self, name: str) -> ParamHealth:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"no parameter {name!r} on step {self.step}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly data (non-finite floats as `{"$float": "nan"}`, as in traces)."""
        plain: dict[str, Any] = encode(asdict(self))
        return plain
