"""layerlens: see what every layer of a PyTorch model does.

`layerlens.trace(model, x)` runs one forward pass and records, for every
module call, its inputs and outputs (shapes, dtypes, statistics or copies),
the layer's own facts, and checks that they add up.
"""

from ._version import __version__
from .errors import LayerlensWarning, TraceError
from .formulas import conv_output_length, pool_output_length
from .inspectors import register, unregister
from .inspectors.registry import register_reference
from .records import Check, LayerRecord, TensorInfo, TensorStats
from .render.json_trace import load_trace
from .result import Summary, Trace, TraceMeta
from .tracing import trace
from .verification import OptimizerReport, Verdict, VerifyReport, verify, verify_optimizer
from .watching import Alert, Thresholds, Watch, WatchAlert, watch

__all__ = [
    "Alert",
    "Check",
    "LayerRecord",
    "LayerlensWarning",
    "OptimizerReport",
    "Summary",
    "TensorInfo",
    "TensorStats",
    "Thresholds",
    "Trace",
    "TraceError",
    "TraceMeta",
    "Verdict",
    "VerifyReport",
    "Watch",
    "WatchAlert",
    "__version__",
    "conv_output_length",
    "load_trace",
    "pool_output_length",
    "register",
    "register_reference",
    "trace",
    "unregister",
    "verify",
    "verify_optimizer",
    "watch",
]
