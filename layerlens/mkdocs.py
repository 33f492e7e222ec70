"""MkDocs plugin: `plugins: [layerlens]` in mkdocs.yml, then in any page

    ```layerlens
    model: mypackage.models:make_model
    input_size: [1, 3, 224, 224]
    caption: The model
    ```

The block's body is YAML with `model:` and the options of the Sphinx directive
(`kind: table` for the layer table). Diagrams are written to
`assets/layerlens/` in the site as SVG; tables are HTML tables. The cache
(`cache_dir`, default `.cache/layerlens` beside mkdocs.yml) is the Sphinx
extension's. A model that fails is a warning naming the page and line, so
`mkdocs build --strict` fails on it.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import yaml
from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.plugins import BasePlugin, get_plugin_logger
from mkdocs.utils import get_relative_url

from .doc_figures import Figure, FigureError, image_name, make_figure, parse_request, render_image, write_atomic

log = get_plugin_logger(__name__)

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_FIGURE_KEYS = ("caption", "alt", "width", "align", "kind")
ASSETS = "assets/layerlens"


class LayerlensConfig(base.Config):
    cache_dir = c.Type(str, default=".cache/layerlens")


class LayerlensPlugin(BasePlugin[LayerlensConfig]):
    """Replace ```` ```layerlens ```` blocks by the traced model's diagram or table."""

    def __init__(self) -> None:
        self.images: dict[str, bytes] = {}
        self.cache: Path | None = None

    def on_config(self, config: Any) -> Any:
        self.cache = Path(config.config_file_path or ".").resolve().parent / self.config.cache_dir
        self.images = {}
        return config

    def on_page_markdown(self, markdown: str, page: Any, config: Any, files: Any) -> str:
        out: list[str] = []
        lines = markdown.split("\n")
        offset = _front_matter_lines(page, markdown)
        k = 0
        while k < len(lines):
            m = _FENCE.match(lines[k])
            if m is None:
                out.append(lines[k])
                k += 1
                continue
            indent = m.group("indent")
            end = _closing(lines, k, m.group("fence"), len(indent))
            last = end if end is not None else len(lines) - 1
            if m.group("info").strip() == "layerlens" and end is not None:  # in a list or admonition too
                inner = lines[k + 1 : end]
                body = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in inner)
                out.append(indent + self._figure(body, page, offset + k + 1).strip("\n"))
            else:
                out.extend(lines[k : last + 1])  # another language's block: left alone, whatever it holds
            k = last + 1
        return "\n".join(out)

    def on_post_build(self, config: Any) -> None:
        for name, data in self.images.items():
            write_atomic(Path(config.site_dir) / ASSETS / name, data)

    def _figure(self, body: str, page: Any, line: int) -> str:
        where = f"{page.file.src_path}:{line}"
        try:
            spec = yaml.safe_load(body) if body.strip() else None
            if not isinstance(spec, dict) or "model" not in spec:
                raise FigureError("the block needs YAML with a model: module:factory line")
            options = {k: v for k, v in spec.items() if k not in (*_FIGURE_KEYS, "model")}
            kind = str(spec.get("kind", "diagram"))
            figure, _, _ = make_figure(parse_request(spec["model"], options, kind), self.cache)
            if figure.kind == "table":
                return _table_html(figure)
            return self._diagram_html(figure, spec, page)
        except yaml.YAMLError as exc:
            log.warning(f"{where}: the block is not valid YAML: {str(exc).splitlines()[0]}")
        except FigureError as exc:
            log.warning(f"{where}: {exc}")
        except Exception as exc:  # drawing: Graphviz missing or failing
            log.warning(f"{where}: cannot draw the diagram: {exc}")
        return ""

    def _diagram_html(self, figure: Figure, spec: dict[str, Any], page: Any) -> str:
        name = image_name(figure.dot, "svg")
        if name not in self.images:
            self.images[name] = render_image(figure.dot, "svg", self.cache)
        uri = html.escape(get_relative_url(f"{ASSETS}/{name}", page.url))
        alt = html.escape(str(spec.get("alt") or f"Data-flow diagram of {figure.title}"))
        style = f' style="width: {html.escape(str(spec["width"]))}"' if spec.get("width") else ""
        align = f' style="text-align: {html.escape(str(spec["align"]))}"' if spec.get("align") else ""
        caption = " ".join(str(t) for t in (spec.get("caption") or "", figure.depth_note()) if t)
        caption_html = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        return (
            f'\n<figure class="layerlens-diagram"{align}>'
            f'<object data="{uri}" type="image/svg+xml" aria-label="{alt}"{style}>'
            f'<img src="{uri}" alt="{alt}"{style}></object>{caption_html}</figure>\n'
        )


def _front_matter_lines(page: Any, markdown: str) -> int:
    """Lines of YAML front matter MkDocs took off the page, so warnings name the file's own line."""
    source = getattr(page.file, "content_string", "") if getattr(page, "file", None) else ""
    at = source.find(markdown[:200]) if markdown.strip() else -1
    return source[:at].count("\n") if at > 0 else 0


def _closing(lines: list[str], start: int, fence: str, indent: int) -> int | None:
    """The line that closes the fence opened at `start`: the same character, at least
    as long, indented no more than 3 columns past the opening fence (CommonMark)."""
    for k in range(start + 1, len(lines)):
        line = lines[k]
        stripped = line.strip()
        lead = len(line) - len(line.lstrip())
        if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence) and lead <= indent + 3:
            return k
    return None


def _table_html(figure: Figure) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in figure.headers)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in figure.rows)
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in figure.notes)
    return f'\n<table class="layerlens-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>\n{notes}\n'
