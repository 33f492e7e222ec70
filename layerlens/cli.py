"""The `layerlens` command line: `layerlens trace|diagram|verify [MODULE:FACTORY] ...`, `layerlens demo`.

Exit status: 0 when the trace ran and every check held, 1 when checks failed,
2 when it could not run (bad arguments, a model that does not import, a
forward that raised); errors are printed without a traceback.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import RenderError, TraceError
from .render.graphviz_run import FORMATS, find_renderer

if TYPE_CHECKING:  # torch loads only when a command runs: --help and --version stay fast
    import torch
    from torch import nn

    from .options import TraceOptions
    from .trace_object import Trace


class CliError(Exception):
    """A problem with what the user asked for, reported as one line."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `layerlens` console script."""
    parser = _parser()
    ns = parser.parse_args(argv)
    if not getattr(ns, "command", None):
        parser.print_help()
        return 2
    try:
        return int(ns.run(ns))
    except (CliError, TraceError) as exc:
        print(f"layerlens: error: {exc}", file=sys.stderr)
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="layerlens", description="See what every layer of a PyTorch model does.")
    parser.add_argument("--version", action="version", version=f"layerlens {__version__}")
    sub = parser.add_subparsers(dest="command")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("model", nargs="?", help="MODULE:FACTORY or path/to/file.py:FACTORY, a callable returning an "
                       "nn.Module (default: the bundled abc classifier on real encoded strings)")  # fmt: skip
    model.add_argument("--arg", action="append", metavar="NAME=VALUE", default=[],
                       help="a keyword argument for the factory, e.g. --arg num_classes=10 (a Python literal, "
                       "else a string; repeat for several)")  # fmt: skip
    model.add_argument("--input-size", action="append", metavar="SHAPE",
                       help="input shape like 64,6 (repeat for several inputs)")  # fmt: skip
    model.add_argument(
        "--dtype", action="append", metavar="DTYPE", help="input dtype like float32 or long (repeat per input)"
    )
    model.add_argument("--kwarg", action="append", metavar="NAME=SHAPE[:DTYPE]", default=[],
                       help="a random keyword input for forward, e.g. --kwarg mask=2,16:bool")  # fmt: skip
    model.add_argument("--device", help="make the inputs on this device, e.g. cuda:0 (the model stays where it is)")
    model.add_argument("--mode", choices=("train", "eval"), help="run the model in this mode for the trace")
    model.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")

    p = sub.add_parser("trace", parents=[model], help="trace one forward pass and print the table")
    p.add_argument("--depth", type=int, help="show layers down to this depth only")
    p.add_argument("--values", choices=("stats", "full", "none"), default="stats")
    p.add_argument("--flops", action="store_true", help="count FLOPs per layer with torch's flop counter")
    p.add_argument("--fmt", default="simple", help="any tabulate format: simple, github, grid, html, latex, ...")
    p.add_argument("--columns", help="comma-separated table columns, e.g. layer,type,output,params,flops,out_bytes "
                   "(an unknown name lists them all)")  # fmt: skip
    p.add_argument("--checks", action="store_true", help="list every check with its message below the table")
    p.add_argument("--json", metavar="PATH", help="also save the trace as JSON (values to an .npz beside it)")
    p.set_defaults(run=_trace_command)

    d = sub.add_parser("diagram", parents=[model], help="draw the data flow of one forward pass")
    d.add_argument("--depth", type=int, help="draw modules down to this depth, each deeper one as part of its parent")
    d.add_argument("-o", "--output", default="diagram.svg", help="file to write: .svg, .png, .pdf, .dot or .gv")
    d.add_argument("--rankdir", choices=("TB", "LR"), default="TB", help="top to bottom or left to right")
    d.add_argument("--roll", action="store_true", help="draw each reused module once, with its call count")
    d.add_argument("--dpi", type=float, help="resolution of a .png (Graphviz's default is 96)")
    d.add_argument("--scale", type=float, help="scale a .png by this factor (2 for a sharp image on HiDPI screens)")
    d.set_defaults(run=_diagram_command)

    v = sub.add_parser("verify", parents=[model], help="check every layer against its numpy reference")
    v.add_argument("--rtol", type=float, help="relative tolerance (default: by dtype)")
    v.add_argument("--atol", type=float, help="absolute tolerance (default: by dtype)")
    v.add_argument("--fmt", default="simple", help="any tabulate format")
    v.add_argument("--json", metavar="PATH", help="also save the report as JSON")
    v.set_defaults(run=_verify_command)

    demo = sub.add_parser("demo", help="train the bundled abc classifier, trace it, write table/diagram/JSON")
    demo.add_argument("-o", "--output", "--out", dest="output", default="layerlens-demo",
                      help="output folder (default: ./layerlens-demo)")  # fmt: skip
    demo.add_argument("--retrain", action="store_true", help="train again even if the folder holds a model")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress display while training")
    demo.add_argument("--watch", type=int, nargs="?", const=10, metavar="EVERY",
                      help="train under layerlens.watch, sampling every EVERY steps (default 10)")  # fmt: skip
    demo.set_defaults(run=_demo_command)
    return parser


def _input_spec(ns: argparse.Namespace, default_x: torch.Tensor | None) -> tuple[Any, Any]:
    """(input_size, dtypes) from --input-size/--dtype; (None, None) to use the default inputs."""
    shapes = [_parse_shape(s, "--input-size") for s in ns.input_size or []]
    dtypes = [_parse_dtype(d) for d in ns.dtype or []] or None
    if not shapes and default_x is None:
        raise CliError("--input-size is required for a model of your own (e.g. --input-size 64,6 --dtype long)")
    if dtypes and not shapes:
        raise CliError("--dtype goes with --input-size")
    size: Any = (shapes[0] if len(shapes) == 1 else shapes) if shapes else None
    return size, dtypes


def _options(ns: argparse.Namespace, size: Any, dtypes: Any, **more: Any) -> TraceOptions:
    """The trace options the command line asked for, validated once."""
    from .options import TraceOptions

    try:
        return TraceOptions(input_size=size, dtypes=dtypes, mode=ns.mode, device=ns.device, seed=ns.seed, **more)
    except (TypeError, ValueError) as exc:
        raise CliError(str(exc).replace("device must be", "--device must be")) from None


def _inputs(ns: argparse.Namespace) -> tuple[nn.Module, Any, dict[str, Any], TraceOptions]:
    """The model, its positional inputs (None: made from the options), keyword inputs and options."""
    model, default_x = _load_model(ns.model, _factory_arguments(ns.arg))
    size, dtypes = _input_spec(ns, default_x)
    return model, None if size else default_x, _keyword_inputs(ns.kwarg, model, ns.seed), _options_for(ns, size, dtypes)


def _options_for(ns: argparse.Namespace, size: Any, dtypes: Any) -> TraceOptions:
    if ns.command == "verify":
        from .verification.verify_layers import VERIFY_MAX_BYTES

        return _options(ns, size, dtypes, values="full", max_bytes=VERIFY_MAX_BYTES)
    values = getattr(ns, "values", "stats")
    return _options(ns, size, dtypes, values=None if values == "none" else values, flops=getattr(ns, "flops", False))


def _traced(ns: argparse.Namespace) -> Trace:
    """Load the model named on the command line and trace it on its inputs."""
    from .tracing import trace

    model, x, kwargs, options = _inputs(ns)
    try:
        return trace(model, x, kwargs=kwargs, options=options)
    except (TypeError, ValueError) as exc:
        raise CliError(str(exc)) from None
    except TraceError as exc:
        raise CliError(_with_flag_hint(str(exc), ns)) from None


def _with_flag_hint(message: str, ns: argparse.Namespace) -> str:
    """A forward's failure with the flag that would fix it, where the inputs were ours to make."""
    if ns.input_size and not ns.dtype and "integer indices" in message:
        return message + "\n  hint: the inputs were made as float32; pass --dtype long for index inputs"
    if ns.input_size and ("expects (N, " in message or "in_features=" in message):
        return message + "\n  hint: check --input-size against the shape the first layer expects"
    return message


def _known_format(fmt: str) -> None:
    """Refuse an unknown table format before any work is done."""
    from .render.table_text import check_format

    try:
        check_format(fmt)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _trace_command(ns: argparse.Namespace) -> int:
    from .render.table import render_checks

    _known_format(ns.fmt)
    t = _traced(ns)
    columns = ns.columns.split(",") if ns.columns else None
    if columns is None and ns.flops:
        columns = ["layer", "type", "input", "output", "params", "flops", "checks"]
    try:
        print(t.table(fmt=ns.fmt, columns=columns, depth=ns.depth))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if ns.checks or not t.ok:
        print("\n" + render_checks(t, failed_only=not ns.checks))
    if ns.json:
        _save(t, Path(ns.json))
    return 0 if t.ok else 1


def _diagram_command(ns: argparse.Namespace) -> int:
    path = Path(ns.output)
    if path.suffix.lower() in FORMATS:
        try:
            find_renderer(FORMATS[path.suffix.lower()])  # before tracing: say early what is missing
        except RenderError as exc:
            raise CliError(str(exc)) from None
    if (ns.dpi is not None or ns.scale is not None) and path.suffix.lower() != ".png":
        raise CliError(f"--dpi and --scale apply to a .png, not to {path.suffix or 'a path without suffix'}")
    t = _traced(ns)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        t.render(path, depth=ns.depth, rankdir=ns.rankdir, roll=ns.roll, dpi=ns.dpi, scale=ns.scale)
    except (ValueError, RenderError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"diagram of {t.meta.model_type} ({len(t)} calls) written to {path}")
    return 0 if t.ok else 1


def _verify_command(ns: argparse.Namespace) -> int:
    from .verification import verify

    _known_format(ns.fmt)
    model, x, kwargs, options = _inputs(ns)
    try:
        report = verify(model, x, kwargs=kwargs, rtol=ns.rtol, atol=ns.atol, options=options)
        print(report.table(fmt=ns.fmt))
    except (TypeError, ValueError) as exc:
        raise CliError(str(exc)) from None
    except TraceError as exc:
        raise CliError(_with_flag_hint(str(exc), ns)) from None
    if ns.json:
        Path(ns.json).write_text(report.to_json(), encoding="utf-8")
    return 0 if report.ok else 1


def _demo_command(ns: argparse.Namespace) -> int:
    from .demo import run_demo, summary

    try:
        result = run_demo(ns.output, retrain=ns.retrain, seed=ns.seed, progress=not ns.quiet, watch_every=ns.watch)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    print(summary(result))
    return 0 if result.trace.ok else 1


def _save(t: Trace, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        t.save(path)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"trace saved to {path}", file=sys.stderr)


def _load_model(spec: str | None, arguments: dict[str, Any]) -> tuple[nn.Module, torch.Tensor | None]:
    """The model named by MODULE:FACTORY, or the bundled abc classifier with real inputs."""
    from .targets import TargetError, load_model

    if spec is None:
        if arguments:
            raise CliError("--arg goes with a MODULE:FACTORY model")
        from .models import abc

        return abc.build_model(), abc.encode(list(abc.SAMPLE_STRINGS))
    try:
        return load_model(spec, arguments), None
    except TargetError as exc:
        raise CliError(str(exc)) from None


def _factory_arguments(items: list[str]) -> dict[str, Any]:
    """`--arg name=value` as keyword arguments: Python literals (10, 0.5, True, (3, 3), 'x'), else strings."""
    arguments: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise CliError(f"--arg must be NAME=VALUE like num_classes=10, got {item!r}")
        try:
            arguments[name.strip()] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            arguments[name.strip()] = text
    return arguments


def _keyword_inputs(items: list[str], model: nn.Module, seed: int) -> dict[str, Any]:
    """`--kwarg name=2,16:bool` as random keyword inputs (made as `--input-size` ones are)."""
    from .inputs import random_inputs

    kwargs: dict[str, Any] = {}
    for k, item in enumerate(items):
        name, sep, spec = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise CliError(f"--kwarg must be NAME=SHAPE[:DTYPE] like mask=2,16:bool, got {item!r}")
        shape_text, _, dtype_text = spec.partition(":")
        shape = _parse_shape(shape_text, "--kwarg")
        dtype = _parse_dtype(dtype_text) if dtype_text else None
        kwargs[name.strip()] = random_inputs(shape, dtype, model, seed + 1 + k)[0]
    return kwargs


def _parse_shape(text: str, flag: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise CliError(f"{flag} must be integers like 64,6, got {text!r}") from None
    if not dims or any(d < 0 for d in dims):
        raise CliError(f"{flag} must be non-negative integers like 64,6, got {text!r}")
    return dims


def _parse_dtype(text: str) -> torch.dtype:
    import torch

    kind = getattr(torch, text.strip(), None)
    if not isinstance(kind, torch.dtype):
        raise CliError(f"unknown dtype {text!r} (try float32, float16, long, int32, bool)")
    return kind


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
