"""layerlens: see what every layer of a PyTorch model does.

`layerlens.trace(model, x)` runs one forward pass and records, for every
module call, its inputs and outputs (shapes, dtypes, statistics or copies),
the layer's own facts, and checks that they add up. `verify` compares every
layer with an independent numpy reference; `watch` stays attached while a
model trains. More lives in a few documented submodules: `layerlens.layers`
(the plugin contract), `layerlens.verification`, `layerlens.watching`,
`layerlens.records`, `layerlens.reference` (numpy layers and optimizers).
"""

from typing import Any

from ._version import __version__
from .errors import LayerlensWarning, TraceError
from .formulas import conv_output_length, pool_output_length
from .layers.registry import LayerFamily, register, unregister
from .options import TraceOptions
from .records import Check, LayerRecord, TensorInfo
from .trace import Trace, load_trace
from .tracing import trace
from .verification import verify, verify_optimizer
from .watching import watch

__all__ = [
    "Check",
    "LayerFamily",
    "LayerRecord",
    "LayerlensWarning",
    "TensorInfo",
    "Trace",
    "TraceError",
    "TraceOptions",
    "__version__",
    "conv_output_length",
    "load_trace",
    "pool_output_length",
    "register",
    "trace",
    "unregister",
    "verify",
    "verify_optimizer",
    "watch",
]

# Names that were top-level before the public API was made small: still importable
# from here, and documented where they live now.
_MOVED = {
    "TensorStats": "records",
    "TraceMeta": "trace_data",
    "Summary": "trace_data",
    "register_reference": "layers.registry",
    "Verdict": "verification",
    "VerifyReport": "verification",
    "OptimizerReport": "verification",
    "Alert": "watching",
    "Thresholds": "watching",
    "Watch": "watching",
    "WatchAlert": "watching",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f".{_MOVED[name]}", __name__), name)
    raise AttributeError(f"module 'layerlens' has no attribute {name!r}")
