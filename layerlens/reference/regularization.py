"""Dropout, given the mask it drew."""

from __future__ import annotations

import numpy as np


def dropout(x: np.ndarray, mask: np.ndarray, p: float) -> np.ndarray:
    """y = x * mask / (1 - p): kept elements (mask 1) are scaled so the expected
    value is unchanged; dropped ones (mask 0) are 0. With p = 1 everything is 0."""
    if p >= 1:
        return np.zeros_like(x)
    return x * mask / (1.0 - p)
