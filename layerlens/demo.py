"""`layerlens demo`: train the bundled abc classifier (or reuse the one saved in
the output folder), trace it on real encoded strings, and write everything a
reader wants to look at into one folder."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RenderError
from .models import abc
from .models.abc import MODEL_FILE, VOCAB_FILE
from .render.table import render_checks
from .trace_object import Trace
from .tracing import trace

TRACE_BATCH = 64


@dataclass
class DemoResult:
    """What the demo did and wrote."""

    trace: Trace
    trained: abc.TrainResult | None
    test_accuracy: float
    predictions: list[abc.Prediction] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def run_demo(
    out: str | Path = "layerlens-demo",
    retrain: bool = False,
    seed: int = 0,
    progress: bool = True,
    watch_every: int | None = None,
) -> DemoResult:
    """Train or load, trace, and write the table, diagram, JSON, curve and predictions;
    with `watch_every`, train (again) under `layerlens.watch` and write its log and plot."""
    start = time.perf_counter()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    trained = None
    if retrain or watch_every is not None or not (folder / MODEL_FILE).is_file():
        trained = abc.train(seed=seed, progress=progress, watch_every=watch_every)
        model = trained.model
        files += [abc.save(model, folder), folder / VOCAB_FILE]
        files.append(trained.history.to_csv(folder / "training_curve.csv"))
        files += [p for p in (trained.history.plot(folder / "training_curve.png"),) if p is not None]
        if trained.watch is not None:
            files.append(trained.watch.to_jsonl(folder / "watch.jsonl"))
            files += [p for p in (trained.watch.plot(folder / "watch.png"),) if p is not None]
    else:
        model = abc.load(folder)
    test_texts, test_classes = abc.generate(2000, seed + 2)
    accuracy = abc.accuracy(model, test_texts, test_classes)
    texts, _ = abc.generate(TRACE_BATCH, seed + 3)
    t = trace(model, abc.encode(texts))
    files += _write_outputs(t, folder)
    predictions = abc.predict(model, list(abc.SAMPLE_STRINGS))
    files.append(folder / "predictions.md")
    files[-1].write_text("\n".join(_prediction_lines(predictions)) + "\n", encoding="utf-8")
    return DemoResult(t, trained, accuracy, predictions, files, time.perf_counter() - start)


def _write_outputs(t: Trace, folder: Path) -> list[Path]:
    files = [folder / "table.txt", folder / "table.md", folder / "trace.json", folder / "diagram.dot"]
    files[0].write_text(t.table() + "\n\n" + render_checks(t) + "\n", encoding="utf-8")
    columns = ["layer", "type", "input", "output", "params", "checks", "details", "mean", "std", "zeros"]
    files[1].write_text(t.table(fmt="github", columns=columns) + "\n", encoding="utf-8")
    t.save(files[2])
    t.render(files[3])
    with contextlib.suppress(RenderError):  # without a renderer the DOT is there, and the summary says so
        files.append(t.render(folder / "diagram.svg"))
    return files


def _prediction_lines(predictions: list[abc.Prediction]) -> list[str]:
    """A Markdown table: string, predicted class, its probability, the ground truth."""
    lines = ["| string | predicted | probability | ground truth |", "|---|---|---|---|"]
    for p in predictions:
        lines.append(f"| {p.text} | {p.cls} | {p.probabilities[p.cls]:.3f} | {abc.label(p.text)} |")
    return lines


def summary(result: DemoResult) -> str:
    """What to print after the demo: the table, the numbers, and where things went."""
    lines = [result.trace.table(), ""]
    if result.trained is not None:
        tr = result.trained
        how = "early stop" if tr.stopped_early else "all epochs"
        lines.append(
            f"trained in {tr.epochs} epochs ({how}), {tr.seconds:.1f} s: validation accuracy {tr.accuracy:.2%}"
        )
    else:
        lines.append("reused the model saved in the output folder (--retrain to train again)")
    lines.append(f"accuracy on 2,000 fresh strings: {result.test_accuracy:.2%}")
    if result.trained is not None and result.trained.watch is not None:
        w = result.trained.watch
        alerts = "; ".join(str(a) for a in w.alerts) or "no alerts"
        lines.append(f"watch: {len(w.history)} sampled steps of {w.step_count}, {alerts}")
    lines.append(f"checks: {len(result.trace.checks) - len(result.trace.failures)}/{len(result.trace.checks)} passed")
    lines += ["", *_prediction_lines(result.predictions), ""]
    lines += [f"wrote {p}" for p in result.files]
    if result.trained is not None and not any(p.suffix == ".png" for p in result.files):
        lines.append("(no training_curve.png: `pip install torch-layerlens[plot]` (matplotlib) to draw the curves)")
    if not any(p.suffix == ".svg" for p in result.files):
        lines.append("(no diagram.svg: install Graphviz or `pip install torch-layerlens[render]` to draw diagram.dot)")
    lines.append(f"done in {result.seconds:.1f} s")
    return "\n".join(lines)
