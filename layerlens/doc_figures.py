"""Diagrams and tables for documentation builds (the Sphinx extension and the
MkDocs plugin share this): options parsed once, the model traced at build
time, and a cache so a rebuild re-traces only what changed.

A cached figure is keyed by its options, layerlens's own code and torch's
version, and remembers the source files of the model's classes and factory:
it is used again only while every one of those files is unchanged.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._version import __version__
from .errors import LayerlensWarning, RenderError, TraceError
from .render.graphviz_run import find_renderer, run
from .render.table import COLUMNS, table_cells
from .targets import TargetError, load_attribute, load_model
from .trace_object import Trace
from .tracing import trace

HEIGHT = 2000.0  # points: the default depth is the deepest whose diagram is at most this tall
KINDS = ("diagram", "table")


class FigureError(Exception):
    """A doc figure that cannot be made: bad options, a model that fails to build or trace.
    Its text is one line, for a build warning at the directive's line."""


@dataclass(frozen=True)
class Request:
    """What one directive or fenced block asks for (every field part of the cache key)."""

    model: str
    kind: str = "diagram"
    input_size: tuple[tuple[int, ...], ...] | None = None
    dtypes: tuple[str, ...] | None = None
    inputs: str | None = None  # module:attribute giving example inputs (a tensor, tuple, or dict of keywords)
    mode: str | None = None
    ops: bool = True  # catch functional ops (False: modules only)
    depth: int | None = None  # None: the deepest that fits HEIGHT (diagrams), everything (tables)
    roll: bool = False
    collapse: bool = True
    bookkeeping: bool = False
    rankdir: str = "TB"
    columns: tuple[str, ...] | None = None


@dataclass
class Figure:
    """A traced figure: DOT text of a diagram, or table cells; what the caption should say."""

    kind: str
    title: str
    dot: str = ""
    depth: int | None = None  # the depth drawn, None for the whole model
    deepest: int = 0  # the trace's deepest call
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def depth_note(self) -> str:
        """The caption's statement of how deep a cut-off diagram goes ("" when nothing is cut)."""
        if self.kind != "diagram" or self.depth is None or self.depth >= self.deepest:
            return ""
        return f"Drawn to depth {self.depth} of {self.deepest}."


# -- options --------------------------------------------------------------------------------


def parse_request(model: str, options: Mapping[str, Any], kind: str = "diagram") -> Request:
    """A Request from directive options (text) or YAML (lists, numbers, booleans); keys may
    use `-` or `_`. A FigureError names the option and what was expected."""
    if not isinstance(model, str) or ":" not in model:
        raise FigureError(f"the model must be given as module:factory (e.g. mypkg.models:build), got {model!r}")
    if kind not in KINDS:
        raise FigureError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    known = {f.name for f in fields(Request)} - {"model", "kind"}
    values: dict[str, Any] = {}
    for raw_key, raw in options.items():
        key = str(raw_key).replace("-", "_")
        if key not in known:
            raise FigureError(
                f"unknown option {raw_key!r}; known: {', '.join(sorted(k.replace('_', '-') for k in known))}"
            )
        values[key] = _PARSE[key](raw, key.replace("_", "-"))
    return Request(model=model.strip(), kind=kind, **values)


def _shapes(raw: Any, name: str) -> tuple[tuple[int, ...], ...]:
    """`1, 3, 224, 224`, `(1, 16), (1, 16)`, `[1, 16]` or `[[1, 16], [1, 16]]`."""
    if isinstance(raw, str):
        groups = re.findall(r"\(([^()]*)\)|\[([^\[\]]*)\]", raw)
        texts = [a or b for a, b in groups] if groups else [raw]
        try:
            shapes = tuple(tuple(int(d) for d in re.split(r"[,x\s]+", t.strip()) if d) for t in texts)
        except ValueError:
            raise FigureError(f"{name} must be integers like 1, 3, 224, 224, got {raw!r}") from None
    elif isinstance(raw, (list, tuple)) and raw and all(isinstance(d, (list, tuple)) for d in raw):
        shapes = tuple(_int_tuple(d, name, raw) for d in raw)
    elif isinstance(raw, (list, tuple, int)):
        shapes = (_int_tuple(raw if isinstance(raw, (list, tuple)) else [raw], name, raw),)
    else:
        raise FigureError(f"{name} must be a shape like 1, 3, 224, 224, got {raw!r}")
    if not shapes or any(not s or any(d < 0 for d in s) for s in shapes):
        raise FigureError(f"{name} must be non-negative integers like 1, 3, 224, 224, got {raw!r}")
    return shapes


def _int_tuple(dims: Any, name: str, raw: Any) -> tuple[int, ...]:
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise FigureError(f"{name} must be integers like 1, 3, 224, 224, got {raw!r}")
    return tuple(dims)


def _words(raw: Any, name: str) -> tuple[str, ...]:
    items = re.split(r"[,\s]+", raw.strip()) if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise FigureError(f"{name} must be a list of names, got {raw!r}")
    return tuple(i for i in items if i)


def _dtypes(raw: Any, name: str) -> tuple[str, ...]:
    names = _words(raw, name)
    for n in names:
        if not isinstance(getattr(torch, n, None), torch.dtype):
            raise FigureError(f"{name}: unknown dtype {n!r} (try float32, float16, long, int32, bool)")
    return names


def _columns(raw: Any, name: str) -> tuple[str, ...]:
    names = _words(raw, name)
    unknown = [c for c in names if c not in COLUMNS]
    if unknown:
        raise FigureError(f"{name}: unknown column(s) {', '.join(unknown)}; choose from {', '.join(COLUMNS)}")
    return names


def _depth(raw: Any, name: str) -> int | None:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("auto", "")):
        return None
    try:
        depth = int(raw) if not isinstance(raw, bool) else -1
    except (TypeError, ValueError):
        depth = -1
    if depth < 0:
        raise FigureError(f"{name} must be an integer >= 0 or auto, got {raw!r}")
    return depth


def _flag(raw: Any, name: str) -> bool:
    """A directive flag (present: no value) or a yes/no value."""
    if isinstance(raw, bool):
        return raw
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "true", "yes", "1", "on")):
        return True
    if isinstance(raw, str) and raw.strip().lower() in ("false", "no", "0", "off"):
        return False
    raise FigureError(f"{name} must be true or false, got {raw!r}")


def _choice(*allowed: str) -> Any:
    def parse(raw: Any, name: str) -> str:
        text = raw.strip() if isinstance(raw, str) else raw
        if text not in allowed:
            raise FigureError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return str(text)

    return parse


def _target(raw: Any, name: str) -> str:
    if not isinstance(raw, str) or ":" not in raw:
        raise FigureError(f"{name} must be module:attribute, got {raw!r}")
    return raw.strip()


_PARSE: dict[str, Any] = {
    "input_size": _shapes,
    "dtypes": _dtypes,
    "inputs": _target,
    "mode": _choice("train", "eval"),
    "ops": _flag,
    "depth": _depth,
    "roll": _flag,
    "collapse": _flag,
    "bookkeeping": _flag,
    "rankdir": _choice("TB", "LR", "BT", "RL"),
    "columns": _columns,
}


# -- making a figure, with the cache ----------------------------------------------------------


def make_figure(request: Request, cache_dir: Path | None) -> tuple[Figure, list[str], bool]:
    """The figure, the source files it depends on, and whether it came from the cache."""
    key = _key(request)
    cached = _cached(cache_dir, key) if cache_dir is not None else None
    if cached is not None:
        return cached[0], cached[1], True
    figure, deps = _traced_figure(request)
    if cache_dir is not None:
        entry = {"figure": asdict(figure), "deps": {p: _loaded_hash(p) for p in deps}}
        write_atomic(cache_dir / f"{key}.json", json.dumps(entry).encode("utf-8"))
    return figure, deps, False


def _traced_figure(request: Request) -> tuple[Figure, list[str]]:
    try:
        with torch.random.fork_rng(devices=[]):  # the same weights every build; the build's RNG untouched
            torch.manual_seed(0)
            model = load_model(request.model)
            x, kwargs = _inputs(request)
        options: dict[str, Any] = {"values": "stats", "mode": request.mode, "ops": request.ops}
        if request.input_size is not None:
            size = request.input_size[0] if len(request.input_size) == 1 else list(request.input_size)
            options.update(input_size=size, dtypes=[getattr(torch, d) for d in request.dtypes or ()] or None)
        t = trace(model, x, kwargs=kwargs, **options)
    except (TargetError, TraceError) as exc:
        raise FigureError(_first_line(exc)) from None
    except (TypeError, ValueError) as exc:
        raise FigureError(f"{request.model}: {_first_line(exc)}") from None
    deps = _sources(model, request)
    deepest = max((r.depth for r in t), default=0)
    if request.kind == "table":
        cells = table_cells(t, request.columns, request.depth)
        rows = [[_keep_indent(r[0]), *r[1:]] if cells.headers[0] == "Layer" else r for r in cells.rows]
        return Figure("table", t.meta.model_type, headers=cells.headers, rows=rows, notes=cells.notes), deps
    depth = request.depth if request.depth is not None else fitting_depth(t, request)
    dot = t.to_dot(depth=depth, **_drawing(request))
    return Figure("diagram", t.meta.model_type, dot=dot, depth=depth, deepest=deepest), deps


def _keep_indent(name: str) -> str:
    """The tree's indentation as no-break spaces, which HTML and LaTeX keep."""
    body = name.lstrip(" │├└─")
    return name[: len(name) - len(body)].replace(" ", "\u00a0") + body


def _inputs(request: Request) -> tuple[Any, dict[str, Any] | None]:
    """Example inputs from `inputs:` (called if callable): a dict is keyword inputs."""
    if request.inputs is None:
        if request.input_size is None:
            raise FigureError(f"{request.model}: give input-size (and dtypes) or inputs (module:attribute)")
        return None, None
    value = load_attribute(request.inputs, "ATTRIBUTE", "inputs")
    try:
        value = value() if callable(value) else value
    except Exception as exc:
        raise FigureError(f"calling {request.inputs} failed: {type(exc).__name__}: {_first_line(exc)}") from None
    if isinstance(value, Mapping):
        return None, dict(value)
    return value, None


def _drawing(request: Request) -> dict[str, Any]:
    return {"rankdir": request.rankdir, "roll": request.roll, "collapse": request.collapse,
            "bookkeeping": request.bookkeeping}  # fmt: skip


def fitting_depth(t: Trace, request: Request, height: float = HEIGHT) -> int | None:
    """The deepest depth whose diagram is at most `height` points tall (None: all of it),
    laid out by Graphviz; depth 1 when even that is taller."""
    deepest = max((r.depth for r in t), default=0)
    try:
        command = find_renderer("svg")
    except RenderError:
        return None
    candidates: list[int | None] = [None, *range(deepest - 1, 0, -1)]
    for depth in candidates:
        with warnings.catch_warnings():  # a too-large candidate is what this loop is here to avoid
            warnings.simplefilter("ignore", LayerlensWarning)
            svg = run(t.to_dot(depth=depth, **_drawing(request)), "svg", command).decode("utf-8", "replace")
        found = re.search(r'<svg[^>]*\sheight="([\d.]+)pt"', svg)
        if found is None or float(found.group(1)) <= height:
            return depth
    return 1 if deepest > 1 else None


def render_image(dot: str, fmt: str, cache_dir: Path | None) -> bytes:
    """`dot` drawn as `svg` or `png`, cached by content."""
    name = f"{hashlib.sha256(dot.encode('utf-8')).hexdigest()[:20]}.{fmt}"
    path = cache_dir / "images" / name if cache_dir is not None else None
    if path is not None and path.is_file():
        return path.read_bytes()
    data = run(dot, fmt, find_renderer(fmt))
    if path is not None:
        write_atomic(path, data)
    return data


def image_name(dot: str, fmt: str) -> str:
    """A file name for the drawn diagram, the same for the same DOT."""
    return f"layerlens-{hashlib.sha256(dot.encode('utf-8')).hexdigest()[:20]}.{fmt}"


def _key(request: Request) -> str:
    text = json.dumps([asdict(request), code_fingerprint(), torch.__version__], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _cached(cache_dir: Path, key: str) -> tuple[Figure, list[str]] | None:
    try:
        entry = json.loads((cache_dir / f"{key}.json").read_text(encoding="utf-8"))
        deps: dict[str, str] = entry["deps"]
        if any(_file_hash(p) != digest for p, digest in deps.items()):
            return None
        return Figure(**entry["figure"]), list(deps)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing, unreadable or malformed: trace again


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """layerlens's own code, so an edited (editable) install re-traces too."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _sources(model: nn.Module, request: Request) -> list[str]:
    """The source files the figure depends on: the factory's and inputs' modules and every
    class of the model's modules, outside torch and layerlens (their versions are in the key)."""
    skip = (Path(torch.__file__).resolve().parent, Path(__file__).resolve().parent)
    found: set[str] = set()
    modules = {type(m).__module__ for m in model.modules()}
    for spec in (request.model, request.inputs):
        if spec:
            modules.add(spec.rpartition(":")[0])
    for name in modules:
        path = _module_file(name)
        if path is not None and not any(path.is_relative_to(s) for s in skip):
            found.add(str(path))
    return sorted(found)


def _module_file(name: str) -> Path | None:
    if name.endswith(".py"):
        return Path(name).resolve() if Path(name).is_file() else None
    module = sys.modules.get(name)
    try:
        source = inspect.getsourcefile(module) if module is not None else None
    except TypeError:
        return None
    return Path(source).resolve() if source else None


# The hash of each source file as this process first read it: a module imported once
# stays as it was even when its file changes (mkdocs serve), so a figure traced from
# it must not be filed under the new file's hash.
_FIRST_SEEN: dict[str, str] = {}


def _loaded_hash(path: str) -> str:
    return _FIRST_SEEN.setdefault(path, _file_hash(path))


def spec_files(*specs: str | None) -> list[str]:
    """The source files of the modules named by `module:attribute` specs, found without
    importing them (so a document whose factory fails is read again once it is fixed)."""
    import importlib.util

    found = []
    for spec in specs:
        module = spec.rpartition(":")[0].strip() if spec else ""
        if module.endswith(".py"):
            found.append(str(Path(module).resolve()))
            continue
        try:
            origin = importlib.util.find_spec(module).origin if module else None  # type: ignore[union-attr]
        except (ImportError, ValueError, AttributeError):
            origin = None
        if origin and origin.endswith(".py"):
            found.append(str(Path(origin).resolve()))
    return found


def _file_hash(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "missing"


def write_atomic(path: Path, data: bytes) -> None:
    """Write so that a parallel build never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
