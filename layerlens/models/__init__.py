"""Models bundled with layerlens: the tutorial's abc classifier (`abc`) and a
gallery of small models that show what diagrams and checks are for
(`gallery`). The repository's own `examples/` folder holds scripts that use
them."""

import importlib
import importlib.util
from typing import Any


def __getattr__(name: str) -> Any:
    """`layerlens.models.abc` without importing it first."""
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
