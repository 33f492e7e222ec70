"""Verification against independent numpy references: `verify` for every layer
of a forward pass, `verify_optimizer` for optimizer steps."""

from .adapters import UnverifiableError
from .optimizer import OptimizerReport, StepResult, verify_optimizer
from .report import Verdict, VerifyReport
from .run import TOLERANCES, verify

__all__ = [
    "TOLERANCES",
    "OptimizerReport",
    "StepResult",
    "UnverifiableError",
    "Verdict",
    "VerifyReport",
    "verify",
    "verify_optimizer",
]
