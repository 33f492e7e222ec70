"""The package's shape, as a specification: no import cycle anywhere, the public
API is the documented list, and a family's knowledge stays in its module."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

import layerlens as ll

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "layerlens"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that `path` imports anywhere (functions included),
    except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            submodules = {f"{base}.{a.name}" for a in node.names} & modules
            found.update(submodules)
            if base in modules and len(submodules) < len(node.names):  # names from the module itself
                found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_import_walk_sees_real_edges() -> None:
    graph = _graph()
    assert "layerlens.layers.registry" in graph["layerlens.tracing"]
    assert "layerlens.trace_data" in graph["layerlens.render.table"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_no_import_cycle_in_the_package() -> None:
    assert _cycles(_graph()) == []


def test_the_output_side_is_a_straight_line() -> None:
    """records -> TraceData -> renderers -> Trace: nothing below imports what is above it."""
    graph = _graph()
    renderers = {m for m in graph if m.startswith("layerlens.render")}
    for m in ("layerlens.records", "layerlens.trace_data", *renderers):
        assert "layerlens.trace_object" not in graph[m], m
    for m in ("layerlens.records", "layerlens.trace_data"):
        assert not graph[m] & renderers, m
    assert graph["layerlens.errors"] == set()


def test_the_public_api_is_small_and_documented() -> None:
    documented = re.findall(r"^\| `([A-Za-z_]+)` \|", (ROOT / "docs" / "api.md").read_text(encoding="utf-8"), re.M)
    assert sorted(documented) == sorted(ll.__all__)
    assert len(ll.__all__) <= 20
    for name in ll.__all__:
        assert getattr(ll, name) is not None


# Every name of the public contract (shared/API.md) is importable as written there.
CONTRACT = (
    "trace", "Trace", "TraceError", "LayerRecord", "TensorInfo", "Check", "register", "load_trace",
    "conv_output_length", "verify", "watch",
)  # fmt: skip


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_names_work(name: str) -> None:
    assert callable(getattr(ll, name))


def test_names_that_moved_still_resolve() -> None:
    from layerlens.verification import VerifyReport
    from layerlens.watching import Watch

    assert ll.VerifyReport is VerifyReport and ll.Watch is Watch
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = ll.nonsense  # type: ignore[attr-defined]


FAMILY_NAMES = ("BatchNorm", "Conv1d", "_ConvNd", "Dropout", "Embedding", "RNNBase", "LSTM",
                "MultiheadAttention", "LayerNorm", "GroupNorm", "MaxPool", "Softmax", "MSELoss")  # fmt: skip


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_knowledge_stays_in_its_module(name: str) -> None:
    """A family's class names appear in code only in its module: elsewhere at
    most in docstrings and comments (generic code that gives an example)."""
    done = subprocess.run(
        ["git", "grep", "-n", name, "--", "layerlens", ":!layerlens/layers", ":!layerlens/reference",
         ":!layerlens/models"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    for line in done.stdout.splitlines():
        path, number, _ = line.split(":", 2)
        assert _in_prose(ROOT / path, int(number), name), line


def _in_prose(path: Path, number: int, name: str) -> bool:
    """Whether `name` on line `number` of `path` lies in a docstring or a comment."""
    source = path.read_text(encoding="utf-8")
    if name not in source.splitlines()[number - 1].split("#", 1)[0]:
        return True  # only in the comment
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            doc = body[0].value
            docstring = isinstance(doc, ast.Constant) and isinstance(doc.value, str)
            if docstring and doc.lineno <= number <= (doc.end_lineno or doc.lineno):
                return True
    return False


def test_every_built_in_family_is_documented() -> None:
    page = (ROOT / "docs" / "layers.md").read_text(encoding="utf-8")
    from layerlens.layers.registry import BUILTIN

    builtin = [f for f in ll.layers.families() if any(f"layers.{m}" in _defined_in(f) for m in BUILTIN)]
    assert len(builtin) > 30
    for family in builtin:
        assert f"`{family.name}`" in page, f"family {family.name} is not in docs/layers.md"


def _defined_in(family: ll.LayerFamily) -> str:
    hooks = [family.inspect, family.reference, family.probe and family.probe.after, family.health, family.expect]
    return " ".join(getattr(h, "__module__", "") for h in hooks if h is not None)
