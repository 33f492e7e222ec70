"""The plugin contract: layer families, their registry, and the built-in families.

A family (`LayerFamily`) is everything layerlens knows about one kind of
layer, in one object and usually one module: see `registry` for the hooks and
`docs/plugins.md` for a complete plugin. The built-in families live beside
this file, one module each (`conv`, `pool`, `norm`, ...), and are loaded the
way an installed plugin's are, on first use.
"""

from .registry import (
    ENTRY_POINT_GROUP,
    Coverage,
    Expected,
    LayerFamily,
    Probe,
    Unverifiable,
    coverage,
    families,
    judge_like,
    register,
    register_reference,
    unregister,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Coverage",
    "Expected",
    "LayerFamily",
    "Probe",
    "Unverifiable",
    "coverage",
    "families",
    "judge_like",
    "register",
    "register_reference",
    "unregister",
]
