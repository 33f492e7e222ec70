"""`Trace.table()`: one row per call with tree-indented names, via `tabulate`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..flop_count import flops_text
from ..records import LayerRecord, TensorStats
from ..trace_data import TraceData, check_depth, output_bytes, size_text
from .facts import key_facts
from .table_text import cell_text, check_format, note_lines, tabulate_text

DEFAULT_COLUMNS = ("layer", "type", "input", "output", "params", "checks")


def _stat(field: str, fmt: Callable[[float], str] = lambda v: f"{v:.4g}") -> Callable[[LayerRecord], str]:
    def cell(r: LayerRecord) -> str:
        s = _main_stats(r)
        return fmt(getattr(s, field)) if s is not None else ""

    return cell


def _main_stats(r: LayerRecord) -> TensorStats | None:
    return r.outputs[0].stats if r.outputs else None


def _nonfinite(r: LayerRecord) -> str:
    s = _main_stats(r)
    if s is None:
        return ""
    return f"{s.nan_count} nan, {s.inf_count} inf" if s.nan_count or s.inf_count else "0"


def _shapes(infos: Sequence[object]) -> str:
    return ", ".join(t.describe() for t in infos)  # type: ignore[attr-defined]


def _params(r: LayerRecord) -> str:
    return f"{r.num_params:,}" if r.call_index == 0 else "(reused)"


def _checks(r: LayerRecord) -> str:
    if r.error is not None:
        return f"✗ raised {r.error.split(':', 1)[0]}"
    failed = sorted({c.name for c in r.checks if not c.ok})
    if failed:
        return "✗ " + ", ".join(failed)
    if r.checks:
        return "✓"
    return "not checked" if r.not_checked else ""


_COLUMNS: dict[str, tuple[str, Callable[[LayerRecord], str]]] = {
    "type": ("Type", lambda r: r.type_name),
    "input": ("Input", lambda r: _shapes(r.inputs)),
    "output": ("Output", lambda r: _shapes(r.outputs)),
    "params": ("Params", _params),
    "checks": ("Checks", _checks),
    "details": ("Details", key_facts),
    "dtype": ("Out dtype", lambda r: r.outputs[0].dtype if r.outputs else ""),
    "device": ("Device", lambda r: r.outputs[0].device if r.outputs else ""),
    "train": ("Mode", lambda r: "train" if r.training else "eval"),
    "trainable": ("Trainable", lambda r: f"{r.trainable_params:,}"),
    "mean": ("Out mean", _stat("mean")),
    "std": ("Out std", _stat("std")),
    "min": ("Out min", _stat("min")),
    "max": ("Out max", _stat("max")),
    "zeros": ("Out zeros", _stat("zero_fraction", lambda v: f"{v:.1%}")),
    "nonfinite": ("Out NaN/Inf", _nonfinite),
    "flops": ("FLOPs", lambda r: "" if r.flops is None else flops_text(r.flops)),
    "mult_adds": ("Mult-adds", lambda r: "" if r.flops is None else flops_text(r.flops // 2)),
    "out_bytes": ("Out size", lambda r: size_text(output_bytes(r))),
}
COLUMNS = ("layer", *_COLUMNS)


@dataclass(frozen=True)
class TableCells:
    """A table before formatting: header, rows of text cells (totals last) and notes below it."""

    headers: list[str]
    rows: list[list[str]]
    notes: list[str]


def table_cells(trace: TraceData, columns: Sequence[str] | None = None, depth: int | None = None) -> TableCells:
    """The cells of `Trace.table()`, for renderers that build tables of their own (Sphinx, MkDocs)."""
    cols = _check_columns(columns)
    check_depth(depth)
    shown = [i for i, r in enumerate(trace.records) if depth is None or r.depth <= depth]
    names = _tree_names(trace.records, shown)
    rows = [[names[k] if c == "layer" else _COLUMNS[c][1](trace.records[i]) for c in cols] for k, i in enumerate(shown)]
    rows.append(_totals(trace, cols))
    headers = ["Layer" if c == "layer" else _COLUMNS[c][0] for c in cols]
    notes = [f"warning: {w}" for w in trace.warnings]
    if trace.error:
        notes.insert(0, f"error: {trace.error}")
    notes += _unchecked_notes(trace, shown)
    return TableCells(headers, rows, notes)


def render_table(
    trace: TraceData, fmt: str = "simple", columns: Sequence[str] | None = None, depth: int | None = None
) -> str:
    """The table text for `trace` in tabulate format `fmt`."""
    check_format(fmt)
    cells = table_cells(trace, columns, depth)
    text = tabulate_text(cells.rows, cells.headers, fmt)  # our cells are text: escaped for the format
    return "\n".join([text, *note_lines(cells.notes, fmt)])


def _unchecked_notes(trace: TraceData, shown: list[int]) -> list[str]:
    """One line per module type whose family's checks did not apply, with the reason."""
    reasons: dict[str, str] = {}
    for i in shown:
        r = trace.records[i]
        if r.not_checked and not r.checks:
            reasons.setdefault(r.type_name, r.not_checked)
    return [f"not checked: {kind} ({why})" for kind, why in reasons.items()]


def _check_columns(columns: Sequence[str] | None) -> list[str]:
    cols = list(DEFAULT_COLUMNS if columns is None else columns)
    unknown = [c for c in cols if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown table column(s) {unknown}; choose from {', '.join(COLUMNS)}")
    return cols


def _totals(trace: TraceData, cols: list[str]) -> list[str]:
    s = trace.summary()
    cells = {
        "layer": "Total",
        "type": f"{s.layer_calls} calls",
        "params": f"{s.total_params:,} ({s.trainable_params:,} trainable)",
        "checks": _total_checks(trace, s.checks, s.failures),
        "trainable": f"{s.trainable_params:,}",
        "flops": "" if s.flops is None else flops_text(s.flops),
        "mult_adds": "" if s.mult_adds is None else flops_text(s.mult_adds),
        "out_bytes": f"{size_text(s.output_bytes)} (leaves)",
    }
    return [cells.get(c, "") for c in cols]


def _total_checks(trace: TraceData, checks: int, failures: int) -> str:
    """The totals row's checks cell: a failed forward or failed checks first, never a bare ✓ then."""
    if trace.error is not None:
        raised = next((r for r in reversed(trace.records) if r.error is not None), None)
        where = f" in '{raised.label}'" if raised is not None else ""
        return f"✗ forward raised{where}" + (f" ({failures} of {checks} checks failed)" if failures else "")
    return f"{checks - failures}/{checks} ✓" if not failures else f"✗ {failures} of {checks} failed"


def _tree_names(records: list[LayerRecord], shown: list[int]) -> list[str]:
    """Labels of the shown records (indices into `records`), indented under the
    call they ran inside, with tree glyphs."""
    pos = {ti: k for k, ti in enumerate(shown)}
    parents: list[int | None] = []
    for ti in shown:
        p = records[ti].parent
        while p is not None and p not in pos:  # an enclosing call hidden by `depth`
            p = records[p].parent
        parents.append(pos[p] if p is not None else None)
    last_child = {p: k for k, p in enumerate(parents)}
    names = []
    for k, ti in enumerate(shown):
        p = parents[k]
        if p is None:
            names.append(records[ti].label)
            continue
        prefix = "└─ " if last_child[p] == k else "├─ "
        up: int | None = p
        while up is not None and parents[up] is not None:
            prefix = ("   " if last_child[parents[up]] == up else "│  ") + prefix
            up = parents[up]
        names.append(prefix + _short(records[ti], records[shown[p]]))
    return names


def _short(r: LayerRecord, parent: LayerRecord) -> str:
    """The name relative to the parent call's module, when it is nested in it."""
    if parent.name and r.name.startswith(parent.name + "."):
        base = r.name[len(parent.name) + 1 :]
        return base if r.call_index == 0 else f"{base} #{r.call_index}"
    return r.label


def render_checks(trace: TraceData, failed_only: bool = False) -> str:
    """One line per check: mark, layer, check name and its message."""
    lines = []
    for r in trace.records:
        for c in r.checks:
            if c.ok and failed_only:
                continue
            line = f"{'✓' if c.ok else '✗'} {r.label}  {c.name}: {c.message}"
            lines.append(cell_text(line, "plain"))  # one line each, whatever a name holds (a newline, an ESC)
    return "\n".join(lines) if lines else "(no checks)"
