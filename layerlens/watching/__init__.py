"""`layerlens.watch`: a debugging aid that stays attached while a model trains."""

from .alerts import KINDS, Thresholds
from .health import Alert, LayerHealth, ParamHealth, StepRecord
from .watcher import Watch, WatchAlert, watch

__all__ = [
    "KINDS",
    "Alert",
    "LayerHealth",
    "ParamHealth",
    "StepRecord",
    "Thresholds",
    "Watch",
    "WatchAlert",
    "watch",
]
