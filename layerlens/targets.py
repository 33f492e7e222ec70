"""Import what a user names as `package.module:attribute` (or `path/to/file.py:attribute`):
the CLI's model argument and the doc directives' argument. Every failure is a
`TargetError` with one readable line, never a traceback from the import."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from torch import nn


class TargetError(Exception):
    """A `module:attribute` that cannot be imported, called, or is not what was expected."""


def load_attribute(spec: str, what: str = "FACTORY", role: str = "model") -> Any:
    """The attribute named by `module:attribute`."""
    target, sep, attr = spec.strip().rpartition(":")
    if not sep or not target or not attr:
        raise TargetError(f"{role} must be MODULE:{what} (e.g. mypkg.models:build), got {spec!r}")
    module = import_module(target)
    value = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise TargetError(f"{target!r} has no attribute {attr!r}")
        value = getattr(value, part)
    return value


def load_model(spec: str, arguments: dict[str, Any] | None = None) -> nn.Module:
    """The model a `module:factory` spec names: a module instance, or what the
    factory returns when called with `arguments` as keywords."""
    factory = load_attribute(spec)
    if not isinstance(factory, nn.Module) and not callable(factory):
        raise TargetError(f"{spec} is a {type(factory).__name__}, not an nn.Module or a function returning one")
    if arguments and isinstance(factory, nn.Module):
        raise TargetError(f"{spec} is a module instance, not a factory: it takes no arguments")
    try:
        model = factory if isinstance(factory, nn.Module) else factory(**(arguments or {}))
    except Exception as exc:
        raise TargetError(f"calling {spec} failed: {type(exc).__name__}: {_one_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise TargetError(f"{spec} returned {type(model).__name__}, not an nn.Module")
    return model


def import_module(target: str) -> Any:
    """A module by dotted name (the working directory importable, as `python -m` does) or by `.py` path."""
    try:
        if target.endswith(".py"):
            path = Path(target)
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None or not path.is_file():
                raise TargetError(f"no such file: {target}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        if "" not in sys.path:
            sys.path.insert(0, "")
        return importlib.import_module(target)
    except TargetError:
        raise
    except Exception as exc:
        raise TargetError(f"cannot import {target!r}: {type(exc).__name__}: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
