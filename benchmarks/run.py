"""The benchmark harness: layerlens against a plain forward (and its peers, when
installed) on a fixed model set, timed in one process, interleaved, medians after
warm-up. Prints Markdown and writes it to --out (benchmarks/RESULTS.md)."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import subprocess
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
from .models import CASES, TRAINING_CASES, Case, training_loss
from .timing import interleaved
from .watch_floor import HookFloor

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
    columns = ["plain forward", "values=None, ops=False", "values=None", "stats", "full", "to_dot"]
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
    }
    for name in peer_names:
        variants[name] = _peer(name, model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return interleaved(variants, rounds)


def training_table(cases: list[Case], rounds: int, steps: int = 20) -> tuple[str, dict[str, dict[str, float]]]:
    """A training step (forward, mean-square loss, backward, SGD step) plain, watched,
    and under the hooks watch cannot do without (`watch_floor`), each as an overhead."""
    rows, raw = [], {}
    keys = ("every=10", "every=1", "floor every=10", "floor every=1")
    for case in cases:
        medians = _training_medians(case, rounds, steps)
        raw[case.name] = medians
        base = medians["plain"]
        rows.append([case.name, f"{base / steps * MS:.2f} ms", *(_overhead(medians[k], base) for k in keys)])
    head = ["model", "training step", "watch every=10", "watch every=1", "hook floor every=10", "hook floor every=1"]
    return _markdown(head, rows), raw


def _overhead(value: float, base: float) -> str:
    return f"{(value / base - 1) * 100:+.1f}%"


def _training_medians(case: Case, rounds: int, steps: int) -> dict[str, float]:
    """Seconds for `steps` training steps: plain, and under each watch or floor (attached for the block)."""
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
    floor10, floor1 = HookFloor(model, opt, 10), HookFloor(model, opt, 1)
    variants: dict[str, Callable[[], object]] = {
        "plain": block,
        "every=10": lambda: block(every10),
        "every=1": lambda: block(every1),
        "floor every=10": lambda: block(floor10),
        "floor every=1": lambda: block(floor1),
    }
    return interleaved(variants, rounds)


def memory_table(cases: list[Case]) -> tuple[str, dict[str, dict[str, float]]]:
    """Per model, in a fresh process each: peak RSS of a plain forward and of the
    trace, its growth, tracemalloc's peak, and the bytes of values kept."""
    rows, raw = [], {}
    for case in cases:
        cells, found = [], {}
        for values in ("stats", "full"):
            m = measure_in_subprocess(CASES.index(case), values)
            cells += [_mib(m["rss"]), _mib(m["tracemalloc"]), _mib(m["kept"])]
            found[f"{values}_peak"], found[f"{values}_growth"] = m["peak"], m["rss"]
            found["plain_peak"] = m["plain_peak"]
            if values == "full":
                found["kept"] = m["kept"]
        raw[case.name] = found
        rows.append([case.name, _mib(found["plain_peak"]), *cells])
    head = ["model", "plain forward: peak RSS", "stats: peak RSS growth", "stats: tracemalloc peak",
            "stats: values kept", "full: peak RSS growth", "full: tracemalloc peak", "full: values kept"]  # fmt: skip
    return _markdown(head, rows), raw


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def scale_table(rounds: int) -> tuple[str, list[float]]:
    """Trace cost per module call, as the number of calls grows (the deep MLP, 500 to 50,000 calls)."""
    rows, per_call = [], []
    for layers in (250, 2500, 25000):
        medians = _scale_medians(layers, max(2, rounds // (1 + layers // 2500)))
        calls = 2 * layers + 1
        per = [(medians[k] - medians["plain"]) / calls * 1e6 for k in ("none", "stats")]
        per_call.append(per[1])
        rows.append([f"{calls:,}", f"{medians['plain'] * MS:.1f} ms", f"{per[0]:.1f} us", f"{per[1]:.1f} us"])
    return _markdown(["module calls", "plain forward", "per call, values=None", "per call, stats"], rows), per_call


def real_table(python: str, rounds: int) -> tuple[str, list[dict[str, float]]]:
    """The real architectures, timed by `benchmarks.real_models` in the interpreter that has their libraries."""
    done = subprocess.run([python, "-m", "benchmarks.real_models", str(rounds)], capture_output=True, text=True)
    if done.returncode != 0:
        return f"(not run: {done.stderr.strip().splitlines()[-1:]})", []
    real = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    rows = [[r["model"], f"{r['plain'] * MS:.2f} ms", _ratio(r["stats"], r["plain"]),
             _ratio(r.get("torchinfo", math.nan), r["plain"])] for r in real]  # fmt: skip
    return _markdown(["model", "plain forward", "default trace", "torchinfo"], rows), real


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


# The performance issue's targets: (values=None, default) ratio limits per model.
LIMITS = {
    "conv stack": (1.25, 1.6),
    "ResNet-like CNN": (1.2, 1.3),
    "2,000-layer MLP": (1.7, 2.5),
    "transformer": (1.05, 1.2),
    "LSTM tagger": (1.05, 1.2),
}


def targets(
    forward: dict[str, dict[str, float]],
    training: dict[str, dict[str, float]],
    fixed: float | None,
    real: list[dict[str, float]],
    scale: list[float],
    memory: dict[str, dict[str, float]],
) -> str:
    """Every target of the performance issue against what was measured here, ✓ or ✗."""
    rows: list[list[str]] = []

    def row(target: str, model: str, value: float, limit: float, fmt: str = "x{:.2f}") -> None:
        rows.append([target, model, fmt.format(value), "✓" if value <= limit else "✗"])

    short = {c.name: c.short for c in CASES}
    for name, m in forward.items():
        base, label = m["plain forward"], short[name]
        if label in LIMITS:
            none, default = LIMITS[label]
            row(f"values=None <= x{none}", label, m["values=None"] / base, none)
            row(f"default <= x{default}", label, m["stats"] / base, default)
        if "torchinfo" in m:
            limit = 0.25 if label == "2,000-layer MLP" else 1.0
            what = "4x faster than torchinfo" if limit < 1 else "faster than torchinfo"
            row(f"default {what} (time ratio)", label, m["stats"] / m["torchinfo"], limit)
    if fixed is not None:
        row("fixed cost of a trace <= 150 us", "abc", fixed * 1e6, 150.0, "{:.0f} us")
    if real:
        ratios = sorted(r["stats"] / r["plain"] for r in real)
        row(f"real models: default median <= x2.0 ({len(real)} models)", "real", ratios[len(ratios) // 2], 2.0)
        for r in real:
            if "torchinfo" in r:
                row("real model: default faster than torchinfo", str(r["model"]), r["stats"] / r["torchinfo"], 1.0)
    short.update({c.name: c.short for c in TRAINING_CASES})
    for name, t in training.items():
        for every, limit in (("every=10", 5.0), ("every=1", 50.0)):
            floor = (t[f"floor {every}"] / t["plain"] - 1) * 100
            row(f"watch {every} < +{limit:.0f}% (hook floor {floor:+.1f}%)", short[name],
                (t[every] / t["plain"] - 1) * 100, limit, "{:+.1f}%")  # fmt: skip
    for name, m in memory.items():
        row("stats: peak RSS <= 1.10 x plain forward's", short[name], m["stats_peak"] / m["plain_peak"], 1.10)
        if m["kept"]:
            row("full: peak RSS growth <= 1.2 x bytes kept", short[name], m["full_growth"] / m["kept"], 1.2)
    if len(scale) > 1:
        row("cost per call constant, 500 -> 50,000 calls (<= x1.25)", "deep MLP", max(scale) / min(scale), 1.25)
    rows.append(["GPU: no host sync per layer (benchmarks/gpu.py)", "CUDA", "not run: no GPU lent", "✗"])
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
    parser.add_argument(
        "--models", help="comma-separated indices into the model set (0-5; 6, the small MLP, is timed in training only)"
    )
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--out", help="also write the Markdown here (e.g. benchmarks/RESULTS.md)")
    parser.add_argument("--skip", default="", help="sections to skip: forward,training,memory,scale,real")
    parser.add_argument(
        "--real-python",
        default=".venv-zoo/bin/python",
        help="the interpreter with torchvision, timm and transformers for the real models",
    )
    ns = parser.parse_args(argv)
    torch.set_num_threads(1)  # one thread: ratios, not the machine's parallelism
    cases = [CASES[int(i)] for i in ns.models.split(",") if int(i) < len(CASES)] if ns.models else list(CASES)
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
        trained = [TRAINING_CASES[int(i)] for i in ns.models.split(",")] if ns.models else list(TRAINING_CASES)
        table, training = training_table(trained, max(3, ns.rounds // 2))
        parts += ["## A training step, plain and watched", "", table, ""]
    real: list[dict[str, float]] = []
    if "real" not in skip and Path(ns.real_python).exists():
        table, real = real_table(ns.real_python, ns.rounds)
        parts += ["## Real architectures (default trace and torchinfo vs the plain forward)", "", table, ""]
    memory: dict[str, dict[str, float]] = {}
    if "memory" not in skip:
        table, memory = memory_table(cases)
        parts += ["## Memory: values='stats' vs 'full'", "", table, ""]
    scale: list[float] = []
    if "scale" not in skip:
        table, scale = scale_table(ns.rounds)
        parts += ["## Scale: cost per module call", "", table, ""]
    parts += ["## Targets", "", targets(forward, training, fixed[1] if fixed else None, real, scale, memory), ""]
    text = "\n".join(parts)
    print(text)
    if ns.out:
        Path(ns.out).write_text(text + "\n", encoding="utf-8")
    return 0
