"""The benchmark harness: layerlens against a plain forward (and its peers, when
installed) on a fixed model set, timed in one process, interleaved, medians after
warm-up. Prints Markdown and writes it to --out (benchmarks/RESULTS.md)."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import layerlens as ll
from layerlens.models import gallery as example_models

from .memory import measure_in_subprocess
from .models import CASES, Case, training_loss
from .timing import interleaved

MS = 1e3


@contextlib.contextmanager
def unfused(on: bool) -> Iterator[None]:
    """The MHA fast path off (what a trace runs) for a model whose baseline is unfused."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(not on and before)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def forward_table(cases: list[Case], rounds: int, peers: bool) -> tuple[str, dict[str, dict[str, float]]]:
    """Trace variants and peers as ratios to the plain forward of each model."""
    columns = ["plain forward", "values=None, ops=False", "values=None", "stats", "full", "to_dot", "verify"]
    peer_names = [p for p in ("torchinfo", "torchview", "torchlens") if peers and _installed(p)]
    rows, raw = [], {}
    for case in cases:
        medians = _forward_medians(case, rounds, peer_names)
        raw[case.name] = medians
        base = medians["plain forward"]
        cells = [f"{base * MS:.2f} ms"] + [_ratio(medians[c], base) for c in columns[1:]]
        cells += [_ratio(medians[p], base) for p in peer_names]
        rows.append([case.name + (f" ({case.note})" if case.note else ""), *cells])
    head = ["model", *columns, *peer_names]
    return _markdown(head, rows), raw


def _forward_medians(case: Case, rounds: int, peer_names: list[str]) -> dict[str, float]:
    model, x = case.build()
    t = ll.trace(model, x, values=None)

    def plain() -> None:
        with torch.no_grad(), unfused(case.unfused):
            model(x)

    variants: dict[str, Callable[[], object]] = {
        "plain forward": plain,
        "values=None, ops=False": lambda: ll.trace(model, x, values=None, ops=False),
        "values=None": lambda: ll.trace(model, x, values=None),
        "stats": lambda: ll.trace(model, x),
        "full": lambda: ll.trace(model, x, values="full", max_bytes=2**34),
        "to_dot": lambda: t.to_dot(),
        "verify": lambda: ll.verify(model, x),
    }
    for name in peer_names:
        variants[name] = _peer(name, model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return interleaved(variants, rounds)


def training_table(cases: list[Case], rounds: int, steps: int = 20) -> tuple[str, dict[str, dict[str, float]]]:
    """A training step (forward, mean-square loss, backward, SGD step) plain and watched."""
    rows, raw = [], {}
    for case in cases:
        medians = _training_medians(case, rounds, steps)
        raw[case.name] = medians
        base = medians["plain"]
        overheads = (f"+{(medians[k] / base - 1) * 100:.1f}%" for k in ("every=10", "every=1"))
        rows.append([case.name, f"{base / steps * MS:.2f} ms", *overheads])
    return _markdown(["model", "training step", "watch every=10", "watch every=1"], rows), raw


def _training_medians(case: Case, rounds: int, steps: int) -> dict[str, float]:
    """Seconds for `steps` training steps: plain, and under each watch (attached for the block)."""
    model, x = case.build()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)

    def block(w: Any = None) -> None:
        if w is not None:
            w.attach()
        for _ in range(steps):
            opt.zero_grad()
            loss: Any = training_loss(model(x))
            loss.backward()
            opt.step()
        if w is not None:
            w.detach()

    every10, every1 = ll.watch(model, every=10, optimizer=opt), ll.watch(model, every=1, optimizer=opt)
    variants: dict[str, Callable[[], object]] = {
        "plain": block,
        "every=10": lambda: block(every10),
        "every=1": lambda: block(every1),
    }
    return interleaved(variants, rounds)


def memory_table(cases: list[Case]) -> str:
    """Per model, in a fresh process each: peak-RSS growth over a plain forward,
    tracemalloc's peak, and the bytes of values kept, for "stats" and "full"."""
    rows = []
    for case in cases:
        cells = []
        for values in ("stats", "full"):
            m = measure_in_subprocess(CASES.index(case), values)
            cells += [_mib(m["rss"]), _mib(m["tracemalloc"]), _mib(m["kept"])]
        rows.append([case.name, *cells])
    head = ["model", "stats: peak RSS growth", "stats: tracemalloc peak", "stats: values kept",
            "full: peak RSS growth", "full: tracemalloc peak", "full: values kept"]  # fmt: skip
    return _markdown(head, rows)


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def scale_table(rounds: int) -> str:
    """Trace cost per module call, as the number of calls grows (the deep MLP)."""
    rows = []
    for layers in (250, 1000, 4000):
        medians = _scale_medians(layers, rounds)
        calls = 2 * layers + 1
        per = [(medians[k] - medians["plain"]) / calls * 1e6 for k in ("none", "stats")]
        rows.append([f"{calls:,}", f"{medians['plain'] * MS:.1f} ms", f"{per[0]:.1f} us", f"{per[1]:.1f} us"])
    return _markdown(["module calls", "plain forward", "per call, values=None", "per call, stats"], rows)


def _scale_medians(layers: int, rounds: int) -> dict[str, float]:
    model, x = example_models.build_deep_mlp(layers=layers)

    def plain() -> None:
        with torch.no_grad():
            model(x)

    return interleaved(
        {
            "plain": plain,
            "none": lambda: ll.trace(model, x, values=None, ops=False),
            "stats": lambda: ll.trace(model, x),
        },
        rounds,
    )


def fixed_cost(rounds: int) -> tuple[str, float]:
    """What a trace costs beyond the forward on a model whose forward is tiny."""
    model, x = CASES[0].build()

    def plain() -> None:
        with torch.no_grad():
            model(x)

    medians = interleaved({"plain": plain, "trace": lambda: ll.trace(model, x, values=None, ops=False)}, rounds * 5)
    extra = medians["trace"] - medians["plain"]
    return f"{extra * 1e6:.0f} us beyond a {medians['plain'] * 1e6:.0f} us forward", extra


def targets(forward: dict[str, dict[str, float]], training: dict[str, dict[str, float]], fixed: float | None) -> str:
    """The performance issue's targets against what was measured here."""
    rows: list[list[str]] = []

    def row(target: str, model: str, value: float, limit: float, fmt: str = "x{:.2f}") -> None:
        rows.append([target, short[model], fmt.format(value), "✓" if value <= limit else "✗"])

    short = {c.name: c.short for c in CASES}
    mlp = CASES[2].name
    for name, m in forward.items():
        base = m["plain forward"]
        none = m["values=None, ops=False"] / base
        if name == mlp:
            row("values=None <= x2.0", name, none, 2.0)
            row("stats <= x3.0", name, m["stats"] / base, 3.0)
            row("to_dot < 300 ms", name, m["to_dot"] * 1e3, 300.0, "{:.0f} ms")
        else:
            if base >= 0.010:
                row("values=None <= x1.1 (forward >= 10 ms)", name, none, 1.1)
            row("stats <= x1.5", name, m["stats"] / base, 1.5)
        row("op capture adds <= 0.3", name, (m["values=None"] - m["values=None, ops=False"]) / base, 0.3, "+{:.2f}")
        if "torchinfo" in m:
            row("faster than torchinfo (values=None)", name, m["values=None, ops=False"] / m["torchinfo"], 1.0)
            if name == mlp:
                row("4x faster than torchinfo", name, m["values=None, ops=False"] / m["torchinfo"], 0.25)
    if fixed is not None:
        row("fixed cost on abc < 300 us", CASES[0].name, fixed * 1e6, 300.0, "{:.0f} us")
    for name in (CASES[0].name, CASES[1].name):
        if name in training:
            t = training[name]
            row("watch every=10 < 5%", name, (t["every=10"] / t["plain"] - 1) * 100, 5.0, "+{:.1f}%")
            row("watch every=1 < 50%", name, (t["every=1"] / t["plain"] - 1) * 100, 50.0, "+{:.1f}%")
    return _markdown(["target", "model", "measured", "met"], rows)


def _peer(name: str, model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    if name == "torchinfo":
        import torchinfo

        return lambda: torchinfo.summary(model, input_data=x, verbose=0)
    if name == "torchview":
        import torchview

        return lambda: torchview.draw_graph(model, input_data=x).visual_graph.source
    import torchlens
    from torchlens.options import CaptureOptions

    options = CaptureOptions(unwrap_when_done=True)  # leave torch unwrapped for everything else
    return lambda: torchlens.trace(model, x, capture=options)


def _installed(name: str) -> bool:
    try:
        __import__(name)
    except Exception:
        return False
    return True


def _ratio(value: float, base: float) -> str:
    return f"x{value / base:.2f}" if value == value else "error"


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"{datetime.date.today()}: {platform.platform()}, {cpu}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, "
        f"Python {sys.version.split()[0]}, layerlens {ll.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--models", help="comma-separated indices into the model set (0-5)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--out", help="also write the Markdown here (e.g. benchmarks/RESULTS.md)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: forward,training,memory,scale")
    ns = parser.parse_args(argv)
    cases = [CASES[int(i)] for i in ns.models.split(",")] if ns.models else list(CASES)
    skip = set(ns.skip.split(","))
    parts = ["# layerlens benchmarks", "", machine(), ""]
    forward: dict[str, dict[str, float]] = {}
    training: dict[str, dict[str, float]] = {}
    fixed = None
    if "forward" not in skip:
        table, forward = forward_table(cases, ns.rounds, not ns.no_peers)
        fixed = fixed_cost(ns.rounds)
        parts += ["## Trace, diagram and verify vs a plain forward (ratio of medians)", "", table, "",
                  f"Fixed cost of a trace (abc classifier): {fixed[0]}", ""]  # fmt: skip
    if "training" not in skip:
        table, training = training_table(cases, max(3, ns.rounds // 2))
        parts += ["## A training step, plain and watched", "", table, ""]
    if forward or training:
        parts += ["## Targets", "", targets(forward, training, fixed[1] if fixed else None), ""]
    if "memory" not in skip:
        parts += ["## Memory: values='stats' vs 'full'", "", memory_table(cases), ""]
    if "scale" not in skip:
        parts += ["## Scale: cost per module call", "", scale_table(ns.rounds), ""]
    text = "\n".join(parts)
    print(text)
    if ns.out:
        Path(ns.out).write_text(text + "\n", encoding="utf-8")
    return 0
