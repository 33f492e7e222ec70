"""Verification against independent numpy references: `verify` for every layer
of a forward pass, `verify_optimizer` for optimizer steps."""

from .report import Verdict, VerifyReport
from .verify_layers import TOLERANCES, verify
from .verify_optimizer import OptimizerReport, StepResult, verify_optimizer

__all__ = [
    "TOLERANCES",
    "OptimizerReport",
    "StepResult",
    "Verdict",
    "VerifyReport",
    "verify",
    "verify_optimizer",
]
