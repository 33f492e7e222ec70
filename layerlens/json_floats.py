"""One JSON encoding of non-finite floats for everything layerlens writes
(trace documents, verify reports, watch.jsonl): `{"$float": "nan"}`, `"inf"`,
`"-inf"`. Strict JSON (no bare `NaN`), and read back to the same floats."""

from __future__ import annotations

import math
from typing import Any


def encode(value: Any) -> Any:
    """`value` with every non-finite float replaced by its `{"$float": ...}` object
    (tuples become lists, dict keys strings)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": _NAMES[value > 0] if not math.isnan(value) else "nan"}
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def decode_float(value: Any) -> Any:
    """A `{"$float": ...}` object as its float; anything else unchanged (a
    malformed one is a ValueError)."""
    if isinstance(value, dict) and set(value) == {"$float"}:
        text = value["$float"]
        if text not in ("nan", "inf", "-inf"):
            raise ValueError(f'{{"$float": {text!r}}} is not "nan", "inf" or "-inf"')
        return float(text)
    return value


_NAMES = {True: "inf", False: "-inf"}
