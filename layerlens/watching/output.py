"""How watched steps are shown and kept: a table, a crash-safe JSONL stream,
and a plot."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from .. import html_blocks
from ..render.figure import new_figure
from ..render.table_text import check_format, note_lines, tabulate_text
from .health import StepRecord

_LAYER_HEADERS = ["Layer", "Type", "Mean", "Std", "Zeros", "NaN/Inf", "Health", "Grad norm", "Alert"]
_PARAM_HEADERS = ["Parameter", "Grad norm", "Weight norm", "Update/weight"]


def render_table(record: StepRecord, fmt: str = "simple") -> str:
    """One row per layer call of a sampled step, then its parameters' numbers."""
    check_format(fmt)
    layers, params = _layer_rows(record), _param_rows(record)
    text = tabulate_text(layers, _LAYER_HEADERS, fmt)
    if params:
        text += "\n\n" + tabulate_text(params, _PARAM_HEADERS, fmt)
    title = note_lines([_title(record)], fmt)[-1]  # escaped as the format needs (Markdown's blank line dropped)
    alerts = note_lines([str(a) for a in record.alerts], fmt)
    return "\n".join([title, text, *alerts])


def render_html(record: StepRecord, alerts: list[Any]) -> str:
    """The step's tables for a notebook, below the watch's alerts so far."""
    parts = [html_blocks.notes([f"⚠ {a}" for a in alerts] or ["no alerts"]), html_blocks.notes([_title(record)])]
    parts.append(html_blocks.table(_LAYER_HEADERS, _layer_rows(record)))
    params = _param_rows(record)
    if params:
        parts.append(html_blocks.table(_PARAM_HEADERS, params))
    return f'<div class="layerlens-watch">{"".join(parts)}</div>'


def _title(record: StepRecord) -> str:
    title = f"step {record.step}" + (f", rank {record.rank}" if record.rank else "")
    logs = ", ".join(f"{k}={v:.4g}" for k, v in record.logs.items())
    return f"{title}{'  ' + logs if logs else ''}"


def _layer_rows(record: StepRecord) -> list[list[str]]:
    flagged = {a.layer for a in record.alerts}
    rows = []
    for h in record.layers:
        out = h.output
        special = ""
        if h.dead_fraction is not None:
            special = f"dead {h.dead_fraction:.0%}"
        elif h.saturated_fraction is not None:
            special = f"saturated {h.saturated_fraction:.0%}"
        elif h.drop_rate is not None:
            special = f"dropped {h.drop_rate:.0%} (p={h.p:g})"
        rows.append([
            h.name or "(root)", h.type_name,
            _g(out.mean if out else None), _g(out.std if out else None),
            f"{out.zero_fraction:.0%}" if out else "", _nonfinite(out), special,
            _g(h.grad_norm) + (f" ({h.grad_nan} NaN, {h.grad_inf} Inf)" if h.grad_nan or h.grad_inf else ""),
            "⚠" if h.name in flagged else "",
        ])  # fmt: skip
    return rows


def _param_rows(record: StepRecord) -> list[list[str]]:
    return [[p.name, _g(p.grad_norm), _g(p.weight_norm), _g(p.update_ratio)] for p in record.params]


def _g(x: float | None) -> str:
    return "" if x is None else f"{x:.3g}"


def _nonfinite(stats: object) -> str:
    if stats is None:
        return ""
    nan, inf = getattr(stats, "nan_count", 0), getattr(stats, "inf_count", 0)
    return f"{nan}/{inf}" if nan or inf else ""


class JsonlWriter:
    """One JSON line per sampled step, each written with a single append-mode
    write and flushed: a run killed at any moment leaves whole lines only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")

    def write(self, record: StepRecord) -> None:
        line = (json.dumps(record.to_dict(), allow_nan=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            while 0 < written < len(line):  # a short write (a nearly full disk): finish the line or fail
                more = os.write(fd, line[written:])
                if more == 0:
                    break
                written += more
            if written < len(line):
                raise OSError(errno.ENOSPC, f"watch: only {written} of {len(line)} bytes of a line reached {self.path}")
        finally:
            os.close(fd)


def plot(history: list[StepRecord], logs: list[tuple[int, dict[str, float]]], path: Path) -> Path | None:
    """Logged values (the tutorial's loss/accuracy curve), per-layer gradient norms
    and activation std over the sampled steps."""
    fig = new_figure(7, 9)
    if fig is None:
        return None
    axes = fig.subplots(3, 1, sharex=True)
    keys = sorted({k for _, entry in logs for k in entry})
    for key in keys:
        points = [(step, entry[key]) for step, entry in logs if key in entry]
        axes[0].plot([s for s, _ in points], [v for _, v in points], label=key)
    axes[0].set_title("logged values")
    for name in _layer_names(history):
        norms = [(r.step, h.grad_norm) for r in history for h in r.layers if h.name == name and h.grad_norm is not None]
        if norms:
            axes[1].semilogy([s for s, _ in norms], [v for _, v in norms], label=name or "(root)")
        stds = [(r.step, h.output.std) for r in history for h in r.layers if h.name == name and h.output]
        if stds:
            axes[2].plot([s for s, _ in stds], [v for _, v in stds], label=name or "(root)")
    axes[1].set_title("output gradient norm per layer")
    axes[2].set_title("activation std per layer")
    axes[2].set_xlabel("step")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _layer_names(history: list[StepRecord]) -> list[str]:
    names: dict[str, None] = {}
    for r in history:
        for h in r.layers:
            if h.leaf:
                names.setdefault(h.name)
    return list(names)


def to_board(writer: Any, record: StepRecord) -> None:
    """One sampled step to anything with `add_scalar` (a TensorBoard SummaryWriter)."""
    for h in record.layers:
        if h.output is not None:
            writer.add_scalar(f"activation_std/{h.name or 'root'}", h.output.std, record.step)
        if h.grad_norm is not None:
            writer.add_scalar(f"output_grad_norm/{h.name or 'root'}", h.grad_norm, record.step)
    for p in record.params:
        if p.grad_norm is not None:
            writer.add_scalar(f"param_grad_norm/{p.name}", p.grad_norm, record.step)
        if p.update_ratio is not None:
            writer.add_scalar(f"update_ratio/{p.name}", p.update_ratio, record.step)
    for key, value in record.logs.items():
        writer.add_scalar(f"log/{key}", value, record.step)
