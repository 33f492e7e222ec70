"""Run a Graphviz layout program on DOT text: `dot` from PATH, or the
pip-installable `graphviz-pure` (`pip install torch-layerlens[render]`) when there
is no `dot`. Finding one is checked before any work is done."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from ..errors import LayerlensWarning, RenderError

FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
_PURE_FORMATS = {"svg", "png"}  # graphviz-pure 0.2 writes no PDF yet


def find_renderer(fmt: str = "svg", prefer: str | None = None) -> list[str]:
    """The command line that renders `fmt`: Graphviz's `dot`, else `graphviz-pure`.
    `prefer` ("dot" or "graphviz-pure") picks one when both are installed."""
    dot = shutil.which("dot")
    pure = shutil.which("graphviz-pure") or _beside_python("graphviz-pure")
    order = (
        [("graphviz-pure", pure), ("dot", dot)]
        if prefer == "graphviz-pure"
        else [("dot", dot), ("graphviz-pure", pure)]
    )
    for name, exe in order:
        if exe and (name == "dot" or fmt in _PURE_FORMATS):
            return [exe]
    if pure and fmt not in _PURE_FORMATS:
        raise RenderError(
            f"writing .{fmt} needs Graphviz's dot (graphviz-pure writes svg and png): "
            "install Graphviz (apt-get install graphviz, brew install graphviz, conda install graphviz)"
        )
    raise RenderError(
        "drawing a diagram needs Graphviz's `dot` or `graphviz-pure`, and neither was found: install Graphviz "
        "(apt-get install graphviz, brew install graphviz, conda install graphviz) or run "
        "`pip install torch-layerlens[render]`; Trace.to_dot() works without either"
    )


def run(source: str, fmt: str, command: list[str]) -> bytes:
    """Lay out and draw `source` in format `fmt`; Graphviz's warnings become ours."""
    try:
        done = subprocess.run([*command, f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RenderError(f"running {command[0]} failed: {exc}") from None
    message = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        raise RenderError(f"{Path(command[0]).name} failed (exit {done.returncode}): {message}")
    if message:
        warnings.warn(f"{Path(command[0]).name}: {message}", LayerlensWarning, stacklevel=3)
    if fmt == "svg":
        return themeproof_svg(done.stdout.decode("utf-8", "replace")).encode("utf-8")
    return done.stdout


# Graphviz carries a tooltip on an `<a xlink:title=...>` wrapped in a `<g id="a_...">`,
# right after the element's `<title>`; a page's link styles (underlines, colours) then
# restyle every label. The tooltip moves into the `<title>`, which browsers show too.
_TOOLTIP_LINK = re.compile(r'<title>[^<]*</title>\n<g id="a_[^"]*"><a xlink:title="([^"]*)">\n')
_LINK_END = "</a>\n</g>\n"
_TEXT_STYLE = (
    "<style>.layerlens-diagram text{text-decoration:none;font-style:normal;letter-spacing:normal;"
    "text-transform:none}</style>"
)


def themeproof_svg(svg: str) -> str:
    """The SVG without link elements (tooltips as `<title>`s) and with its text's
    style fixed, so a documentation theme or notebook stylesheet cannot restyle it."""
    links = len(_TOOLTIP_LINK.findall(svg))
    if links and links == svg.count(_LINK_END) and svg.count("<a ") == links:
        svg = _TOOLTIP_LINK.sub(lambda m: f"<title>{m.group(1)}</title>\n", svg).replace(_LINK_END, "")
    return re.sub(
        r"^(<svg\b(?![^>]*\bclass=)[^>]*?)>", rf'\1 class="layerlens-diagram">{_TEXT_STYLE}', svg, count=1, flags=re.M
    )


def with_dpi(source: str, dpi: float | None = None, scale: float | None = None) -> str:
    """DOT text drawn at `dpi` (Graphviz's default is 96), or at `scale` times 96;
    for raster output (PNG)."""
    for name, value in (("dpi", dpi), ("scale", scale)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
            raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if dpi is not None and scale is not None:
        raise ValueError("give dpi or scale, not both (scale=2 is dpi=192)")
    value = dpi if dpi is not None else 96 * scale if scale is not None else None
    if value is None:
        return source
    head, brace, body = source.partition("{")
    return f"{head}{brace}\n  graph [dpi={value:g}];{body}"


def _beside_python(name: str) -> str | None:
    """A console script installed in this interpreter's environment, even when
    that environment's bin folder is not on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() else None


def render_svg(source: str) -> str:
    """DOT text drawn as SVG, sized to fit its container (width at most 100%)."""
    return fit_svg(run(source, "svg", find_renderer("svg")).decode("utf-8"))


def fit_svg(svg: str) -> str:
    """Let an SVG shrink to its container: keep its natural size as a maximum."""
    return re.sub(
        r"<svg ([^>]*?)width=\"([^\"]+)\" height=\"([^\"]+)\"",
        r'<svg \1width="\2" height="\3" style="max-width:100%;height:auto"',
        svg,
        count=1,
    )
