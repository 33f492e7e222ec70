"""Matplotlib figures for the images layerlens writes (training curves, watch
plots), made without pyplot: the user's backend and open figures stay as they
are. Matplotlib is optional (`pip install torch-layerlens[plot]`)."""

from __future__ import annotations

from typing import Any


def new_figure(width: float, height: float) -> Any | None:
    """A `matplotlib.figure.Figure` of this size in inches, or None without matplotlib."""
    try:
        import matplotlib  # noqa: F401  (the package first: a blocked or missing matplotlib fails here)
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure(figsize=(width, height))
