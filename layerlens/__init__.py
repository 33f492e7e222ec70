"""layerlens: see what every layer of a PyTorch model does.

`layerlens.trace(model, x)` runs one forward pass and records, for every
module call, its inputs and outputs (shapes, dtypes, statistics or copies),
the layer's own facts, and checks that they add up. `verify` compares every
layer with an independent numpy reference; `watch` stays attached while a
model trains. More lives in a few documented submodules: `layerlens.layers`
(the plugin contract), `layerlens.verification`, `layerlens.watching`,
`layerlens.records`, `layerlens.reference` (numpy layers and optimizers).

Names load on first use, so `import layerlens` (and `layerlens --help`) does
not import torch until something needs it.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .errors import LayerlensWarning, TraceError
    from .formulas import conv_output_length, pool_output_length
    from .layers.registry import LayerFamily, register, unregister
    from .options import TraceOptions
    from .records import Check, LayerRecord, TensorInfo
    from .trace_object import Trace, load_trace
    from .tracing import trace
    from .verification.verify_layers import verify
    from .verification.verify_optimizer import verify_optimizer
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

# Where each public name lives, and names that were top-level before the public
# API was made small: still importable from here, documented where they live now.
_HOME = {
    "LayerlensWarning": "errors", "TraceError": "errors",
    "conv_output_length": "formulas", "pool_output_length": "formulas",
    "LayerFamily": "layers.registry", "register": "layers.registry", "unregister": "layers.registry",
    "TraceOptions": "options", "Check": "records", "LayerRecord": "records", "TensorInfo": "records",
    "Trace": "trace_object", "load_trace": "trace_object", "trace": "tracing",
    "verify": "verification", "verify_optimizer": "verification", "watch": "watching",
    "TensorStats": "records", "TraceMeta": "trace_data", "Summary": "trace_data",
    "register_reference": "layers.registry", "Verdict": "verification", "VerifyReport": "verification",
    "OptimizerReport": "verification", "Alert": "watching", "Thresholds": "watching", "Watch": "watching",
    "WatchAlert": "watching",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is not None:
        value = getattr(importlib.import_module(f".{home}", __name__), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)  # `layerlens.layers` without importing it first
    else:
        raise AttributeError(f"module 'layerlens' has no attribute {name!r}")
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
