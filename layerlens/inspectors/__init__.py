"""Built-in inspectors, one module per layer family, and their registry.

Importing this package registers them all.
"""

from . import attention, conv, dropout, embedding, generic, linear, norm, pool, recurrent
from .registry import Probe, expectation_for, inspector_for, probe_for, register, unregister

__all__ = [
    "Probe",
    "attention",
    "conv",
    "dropout",
    "embedding",
    "expectation_for",
    "generic",
    "inspector_for",
    "linear",
    "norm",
    "pool",
    "probe_for",
    "recurrent",
    "register",
    "unregister",
]
