"""Doc diagrams as a build step: real Sphinx builds (HTML, LaTeX, `-j 2`, MyST)
and a real MkDocs build (mkdocs-material, `--strict`) of a tiny project whose
factory counts its calls, so "a second build re-traces nothing" is measured."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")
pytest.importorskip("mkdocs")
pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")

MODELS = """
from pathlib import Path
from torch import nn

def make():
    with open(Path(__file__).with_name("calls.txt"), "a") as f:
        f.write("make\\n")
    return nn.Sequential(nn.Conv1d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14, 2))

def broken():
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2))
"""

INDEX = """\
Models
======

.. toctree::

   page1
   page2
   page3
   page4
   page5
   page6
   myst

.. layerlens-diagram:: models:make
   :input-size: 2, 3, 16
   :caption: The <script>alert(1)</script> model
   :name: fig-model

See :numref:`fig-model`.

.. layerlens-table:: models:make
   :input-size: 2, 3, 16
   :columns: layer, type, output
"""

BROKEN_RST = """\

.. layerlens-diagram:: models:broken
   :input-size: 2, 3
"""

MYST = """\
# From Markdown

Some text.

```{layerlens-diagram} models:make
:input-size: 2, 3, 16
:depth: 0
```
"""


def _sphinx_project(root: Path, broken: bool = False) -> Path:
    src = root / "src"
    src.mkdir()
    (src / "conf.py").write_text(
        "import os, sys\nsys.path.insert(0, os.path.dirname(__file__))\n"
        "extensions = ['layerlens.sphinx', 'myst_parser']\nnumfig = True\n"
    )
    (src / "models.py").write_text(MODELS)
    (src / "index.rst").write_text(INDEX + (BROKEN_RST if broken else ""))
    for k in range(1, 7):  # enough documents for Sphinx to read in parallel with -j 2
        (src / f"page{k}.rst").write_text(
            f"Page {k}\n======\n\n.. layerlens-diagram:: models:make\n   :input-size: 2, 3, 16\n"
        )
    (src / "myst.md").write_text(
        MYST + ("\n```{layerlens-table} models:broken\n:input-size: 2, 3\n```\n" if broken else "")
    )
    return src


def _build(src: Path, out: Path, *args: str, builder: str = "html") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", builder, "-q", *args, str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _calls(src: Path) -> int:
    path = src / "calls.txt"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def test_sphinx_html_draws_svg_diagrams_and_tables(tmp_path: Path) -> None:
    src = _sphinx_project(tmp_path)
    done = _build(src, tmp_path / "html", "-W")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "html" / "index.html").read_text()
    svgs = re.findall(r'<object data="(_images/layerlens-[0-9a-f]+\.svg)"', page)
    assert len(svgs) == 1
    svg = (tmp_path / "html" / svgs[0]).read_text()
    assert svg.lstrip().startswith(("<?xml", "<svg")) and "Conv1d" in svg and "[2, 8, 14]" in svg
    assert re.search(r'See <a [^>]*href="#fig-model"><span class="std std-numref">Fig\. \d+</span>', page)  # :name:
    assert "&lt;script&gt;" in page and "<script>alert" not in page
    table = re.search(r'<table class="[^"]*layerlens-table.*?</table>', page, re.S)
    assert table is not None
    rows = re.findall(r"<tr", table.group(0))
    assert len(rows) == 1 + 5 + 1  # the header, the root and its four layers, the totals
    assert "[2, 8, 14]" in table.group(0) and "Conv1d" in table.group(0)
    myst = (tmp_path / "html" / "myst.html").read_text()
    assert "layerlens-" in myst and "Drawn to depth 0 of 1." in myst  # MyST, and a cut-off depth is stated


def test_sphinx_rebuilds_trace_only_what_changed(tmp_path: Path) -> None:
    src = _sphinx_project(tmp_path)
    out = tmp_path / "html"
    assert _build(src, out).returncode == 0
    first = _calls(src)
    assert first == 3  # one figure per distinct set of options: the cache serves the repeats
    assert _build(src, out).returncode == 0
    assert _calls(src) == first  # nothing changed: nothing re-read
    assert _build(src, out, "-E").returncode == 0
    assert _calls(src) == first  # every document read again, every figure from the cache
    (src / "models.py").write_text(MODELS + "\n# the model's source changed\n")
    assert _build(src, out).returncode == 0
    assert _calls(src) == first + 3  # its documents read again and traced again


def test_sphinx_parallel_build_matches_serial(tmp_path: Path) -> None:
    src = _sphinx_project(tmp_path)
    with (src / "conf.py").open("a") as conf:  # proof that reading really ran in worker processes
        conf.write(
            "def setup(app):\n"
            "    def merged(app, env, docnames, other):\n"
            "        with open(os.path.join(os.path.dirname(__file__), 'merged.txt'), 'a') as f:\n"
            "            f.write(' '.join(sorted(docnames)) + '\\n')\n"
            "    app.connect('env-merge-info', merged)\n"
        )
    serial = _build(src, tmp_path / "serial", "-W")
    parallel = _build(src, tmp_path / "parallel", "-W", "-j", "2", "-d", str(tmp_path / "doctrees-j2"))
    assert serial.returncode == 0 and parallel.returncode == 0, parallel.stderr
    assert (src / "merged.txt").is_file()
    names = {p.name for p in (tmp_path / "serial" / "_images").glob("layerlens-*.svg")}
    assert names and names == {p.name for p in (tmp_path / "parallel" / "_images").glob("layerlens-*.svg")}


def test_sphinx_latex_uses_png(tmp_path: Path) -> None:
    src = _sphinx_project(tmp_path)
    done = _build(src, tmp_path / "latex", "-W", builder="latex")
    assert done.returncode == 0, done.stderr
    tex = next((tmp_path / "latex").glob("*.tex")).read_text()
    pngs = re.findall(r"\\sphinxincludegraphics\[[^]]*\]\{(layerlens-[0-9a-f]+\.png)\}", tex)
    assert pngs and all((tmp_path / "latex" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "\\begin{longtable}" in tex or "\\begin{tabulary}" in tex or "\\begin{tabular" in tex


def test_sphinx_broken_factory_is_a_warning_at_its_line(tmp_path: Path) -> None:
    src = _sphinx_project(tmp_path, broken=True)
    done = _build(src, tmp_path / "html")
    assert done.returncode == 0
    rst_line = (INDEX + BROKEN_RST).splitlines().index(".. layerlens-diagram:: models:broken") + 1
    assert re.search(
        rf"index\.rst:{rst_line}: WARNING: layerlens-diagram models:broken: forward failed in '1' \(Linear\)",
        done.stderr,
    ), done.stderr
    md_line = (src / "myst.md").read_text().splitlines().index("```{layerlens-table} models:broken") + 1
    assert re.search(rf"myst\.md:{md_line}: WARNING: layerlens-table models:broken", done.stderr), done.stderr
    assert "Traceback" not in done.stderr
    strict = _build(src, tmp_path / "strict", "-W")
    assert strict.returncode != 0 and "forward failed in '1' (Linear)" in strict.stderr


MKDOCS_PAGE = """\
---
title: Models
---
# Models

```layerlens
model: models:make
input_size: [2, 3, 16]
caption: The <b>model</b>
```

How to write one (not replaced):

````markdown
```layerlens
model: nowhere:nothing
```
````

```layerlens
model: models:make
kind: table
input_size: 2, 3, 16
```
"""


def _mkdocs_project(root: Path, page: str) -> Path:
    (root / "docs").mkdir()
    (root / "models.py").write_text(MODELS)
    (root / "mkdocs.yml").write_text("site_name: Test\ntheme:\n  name: material\nplugins:\n  - layerlens\n")
    (root / "docs" / "index.md").write_text(page)
    return root


def _mkdocs(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=root, capture_output=True, text=True, timeout=300
    )


def test_mkdocs_plugin_draws_diagrams_and_tables(tmp_path: Path) -> None:
    pytest.importorskip("material")
    root = _mkdocs_project(tmp_path, MKDOCS_PAGE)
    done = _mkdocs(root)
    assert done.returncode == 0, done.stderr
    page = (root / "site" / "index.html").read_text()
    svgs = re.findall(r'<object data="(assets/layerlens/layerlens-[0-9a-f]+\.svg)"', page)
    assert len(svgs) == 1 and "Conv1d" in (root / "site" / svgs[0]).read_text()
    assert "The &lt;b&gt;model&lt;/b&gt;" in page
    assert "nowhere:nothing" in page  # a fence inside a longer fence is an example, left alone
    assert re.search(r'<table class="layerlens-table">.*Conv1d.*</table>', page, re.S)
    calls = _calls(root)
    assert calls == 2
    assert _mkdocs(root).returncode == 0
    assert _calls(root) == calls  # the second build traced nothing


def test_mkdocs_broken_model_fails_strict_at_its_line(tmp_path: Path) -> None:
    pytest.importorskip("material")
    page = MKDOCS_PAGE + "\nText.\n\n```layerlens\nmodel: models:broken\ninput_size: [2, 3]\n```\n"
    root = _mkdocs_project(tmp_path, page)
    done = _mkdocs(root)
    line = page.splitlines().index("model: models:broken")  # the fence's line, 1-based
    assert done.returncode != 0
    assert f"index.md:{line}: forward failed in '1' (Linear)" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_mkdocs_blocks_in_lists_and_admonitions(tmp_path: Path) -> None:
    pytest.importorskip("material")
    page = (
        "# T\n\n1. First, the model:\n\n    ```layerlens\n    model: models:make\n    input_size: [2, 3, 16]\n"
        "    ```\n\n!!! note\n\n    ```layerlens\n    model: models:make\n    kind: table\n    input_size: [2, 3, 16]\n"
        "    ```\n\n```markdown\nAn example, indented:\n\n    ```\n    not the end\n    ```\n```\n"
    )
    root = _mkdocs_project(tmp_path, page)
    (root / "mkdocs.yml").write_text(
        "site_name: T\ntheme:\n  name: material\nmarkdown_extensions:\n  - admonition\nplugins:\n  - layerlens\n"
    )
    done = _mkdocs(root)
    assert done.returncode == 0, done.stderr
    html = (root / "site" / "index.html").read_text()
    assert re.search(r'<li>.*?<object data="assets/layerlens/', html, re.S)
    assert re.search(r'class="admonition note".*?<table class="layerlens-table">', html, re.S)
    assert "not the end" in html


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("input_size: [2, 3]", "needs YAML with a model"),
        ("model: models:make\ninput_size: [2, x]", "input-size must be integers"),
        ("model: models:make\ninput_size: [2, 3, 16]\ndepth: -1", "depth must be an integer >= 0"),
        ("model: models:make\ninput_size: [2, 3, 16]\nwidht: 3", "unknown option 'widht'"),
        ("model: models:nothing\ninput_size: [2, 3]", "has no attribute 'nothing'"),
        ("model: [unclosed", "not valid YAML"),
    ],
)
def test_mkdocs_bad_blocks_say_what_is_wrong(tmp_path: Path, body: str, message: str) -> None:
    root = _mkdocs_project(tmp_path, f"# T\n\n```layerlens\n{body}\n```\n")
    (root / "mkdocs.yml").write_text("site_name: Test\nplugins:\n  - layerlens\n")
    done = _mkdocs(root)
    assert done.returncode != 0 and message in done.stderr and "index.md:3:" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_sphinx_reads_a_failing_page_again_once_the_model_is_fixed(tmp_path: Path) -> None:
    src = _sphinx_project(tmp_path, broken=True)
    out = tmp_path / "html"
    assert "forward failed" in _build(src, out).stderr
    (src / "models.py").write_text(MODELS.replace("nn.Linear(5, 2)", "nn.Linear(4, 2)"))
    again = _build(src, out, "-W")  # incremental: only the pages that depend on models.py are read
    assert again.returncode == 0, again.stderr
    assert (out / "index.html").read_text().count('<object data="_images/layerlens-') == 2  # the fixed one too


@pytest.mark.parametrize("builder", ["text", "man", "texinfo", "singlehtml", "epub", "xml"])
def test_every_builder_writes_the_page(tmp_path: Path, builder: str) -> None:
    src = _sphinx_project(tmp_path)
    alt = ":name: fig-model\n   :alt: a @{brace} \\fB diagram"
    (src / "index.rst").write_text(INDEX.replace(":name: fig-model", alt))
    done = _build(src, tmp_path / builder, builder=builder)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    if builder == "texinfo":
        assert "@@@{brace@}" in next((tmp_path / builder).glob("*.texi")).read_text()
    if builder == "man":
        assert "\\efB" in next((tmp_path / builder).glob("*.1")).read_text()  # a backslash is not a roff escape


def test_width_without_a_unit_is_pixels(tmp_path: Path) -> None:
    src = _sphinx_project(tmp_path)
    (src / "index.rst").write_text(INDEX.replace(":name: fig-model", ":name: fig-model\n   :width: 300"))
    assert _build(src, tmp_path / "html", "-W").returncode == 0
    assert 'style="width: 300px"' in (tmp_path / "html" / "index.html").read_text()
    assert _build(src, tmp_path / "latex", "-W", builder="latex").returncode == 0
    assert "width=300\\sphinxpxdimen" in next((tmp_path / "latex").glob("*.tex")).read_text()


def test_ten_line_conf_py(tmp_path: Path) -> None:
    """What the docs promise a user: the extension in conf.py and one directive."""
    (tmp_path / "conf.py").write_text("extensions = ['layerlens.sphinx']\n")
    (tmp_path / "index.rst").write_text(
        textwrap.dedent("""\
        Model
        =====

        .. layerlens-diagram:: torch.nn:Identity
           :input-size: 2, 3
        """)
    )
    done = _build(tmp_path, tmp_path / "out", "-W")
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "out" / "_images").glob("layerlens-*.svg"))
