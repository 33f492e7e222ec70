"""Notebooks as users see them: a notebook executed by nbconvert, exported with
JupyterLab's and the classic notebook's own stylesheets, and opened in headless
Chromium. The page is measured (the tree column lines up, nothing overflows,
one SVG per output, the diagram frame is bounded and zooms) and screenshots
are written to `build/notebook-screenshots/` (or $LAYERLENS_SCREENSHOTS).

Skipped when Chromium, chromedriver, selenium or nbconvert is missing, unless
$LAYERLENS_REQUIRE_BROWSER is set (CI sets it: there a skip would hide a failure).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("LAYERLENS_SCREENSHOTS", ROOT / "build" / "notebook-screenshots"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
MISSING = [
    name
    for name, found in (
        ("chromium", CHROMIUM),
        ("chromedriver", DRIVER),
        ("selenium", importlib.util.find_spec("selenium")),
        ("nbconvert", importlib.util.find_spec("nbconvert")),
        ("ipykernel", importlib.util.find_spec("ipykernel")),
        ("Graphviz dot", shutil.which("dot")),
    )
    if not found
]
if MISSING:
    if os.environ.get("LAYERLENS_REQUIRE_BROWSER"):
        raise RuntimeError(f"the browser test needs {', '.join(MISSING)} (LAYERLENS_REQUIRE_BROWSER is set)")
    pytest.skip(f"needs {', '.join(MISSING)}", allow_module_level=True)

CELLS = [
    "import torch\nfrom torch import nn\nimport layerlens as ll\nfrom layerlens.models import abc",
    "t = ll.trace(abc.build_model(), abc.encode(list(abc.SAMPLE_STRINGS)))\nt",
    # a 241-call model: a tall diagram, to be bounded by its frame
    "deep = nn.Sequential(*[m for _ in range(60) for m in (nn.Linear(8, 8), nn.ReLU())],\n"
    "                     nn.Sequential(nn.Linear(8, 8), nn.Tanh()), *[nn.Linear(8, 8) for _ in range(117)])\n"
    "big = ll.trace(deep, torch.randn(2, 8))\nassert len(big) == 241\nbig",
    't.show(depth=1, rankdir="LR")',
    't["rnn"]',
    "t.summary()",
    "ll.verify(abc.build_model(), abc.encode(list(abc.SAMPLE_STRINGS)))",
]
TEMPLATES = ("lab", "classic")
OUTPUT_AREA = {"lab": ".jp-OutputArea-output", "classic": ".output_area"}


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The notebook, executed once, exported with each template."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import ExecutePreprocessor

    folder = tmp_path_factory.mktemp("notebook")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    ExecutePreprocessor(timeout=300, kernel_name="python3").preprocess(nb, {"metadata": {"path": str(folder)}})
    nbformat.write(nb, folder / "layerlens.ipynb")
    found = {}
    for template in TEMPLATES:
        body, _ = HTMLExporter(template_name=template).from_notebook_node(nb)
        found[template] = folder / f"{template}.html"
        found[template].write_text(body, encoding="utf-8")
    return found


@pytest.fixture(scope="module")
def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    flags = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,900")
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    yield driver
    driver.quit()


def _open(browser: Any, page: Path) -> None:
    browser.get(page.as_uri())
    browser.execute_script("return document.fonts ? document.fonts.ready : null")


def _outputs(browser: Any, template: str) -> list[Any]:
    return list(browser.find_elements("css selector", OUTPUT_AREA[template]))


@pytest.mark.parametrize("template", TEMPLATES)
def test_one_svg_per_output_and_no_horizontal_overflow(browser: Any, pages: dict[str, Path], template: str) -> None:
    _open(browser, pages[template])
    counts = [len(o.find_elements("css selector", "svg.layerlens-diagram")) for o in _outputs(browser, template)]
    assert counts.count(1) == 3 and set(counts) <= {0, 1}, counts  # t, big and t.show(): one diagram each
    overflow = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert overflow[0] <= overflow[1], f"the page scrolls sideways: {overflow}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1100, min(int(height) + 100, 8000))
    browser.save_screenshot(str(SHOTS / f"{template}-notebook.png"))
    browser.set_window_size(1100, 900)


@pytest.mark.parametrize("template", TEMPLATES)
def test_the_tree_column_lines_up(browser: Any, pages: dict[str, Path], template: str) -> None:
    """In every layerlens table, the names at one depth start at one x, the tree
    glyphs of one column share an x, and cells are left-aligned."""
    _open(browser, pages[template])
    measured = browser.execute_script(
        """
        const out = [];
        for (const table of document.querySelectorAll('table.layerlens-table')) {
          const rows = [];
          for (const td of table.querySelectorAll('tbody tr td:first-child')) {
            const node = td.firstChild; const text = node ? node.textContent : '';
            const style = getComputedStyle(td);
            const xs = [];
            for (let i = 0; i < text.length; i++) {
              const r = document.createRange(); r.setStart(node, i); r.setEnd(node, i + 1);
              xs.push(r.getBoundingClientRect().left - td.getBoundingClientRect().left);
            }
            rows.push({text, xs, align: style.textAlign, space: style.whiteSpace});
          }
          out.push(rows);
        }
        return out;
        """
    )
    assert measured, "no layerlens table on the page"
    nested = 0
    for rows in measured:
        assert all(r["align"] in ("left", "start") and r["space"].startswith("pre") for r in rows), rows[:2]
        starts: dict[int, set[float]] = {}
        for r in rows:
            text, xs = r["text"], r["xs"]
            name_at = next((i for i, ch in enumerate(text) if ch not in " │├└─"), len(text))
            if 0 < name_at < len(text):
                starts.setdefault(name_at, set()).add(round(xs[name_at], 0))
            for i, ch in enumerate(text):
                if ch in "│├└" and i:  # a glyph at column i sits where column i sits in the other rows
                    starts.setdefault(-i, set()).add(round(xs[i], 0))
        assert all(len(xs) == 1 for xs in starts.values()), starts
        nested += any(k < 0 for k in starts)  # a table with glyphs below the first column: a real tree
    assert nested >= 1, "no table with a nested tree was measured"


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_tall_diagram_is_bounded_scrolls_and_zooms(browser: Any, pages: dict[str, Path], template: str) -> None:
    _open(browser, pages[template])
    frames = browser.find_elements("css selector", ".layerlens-figure")
    height = "return arguments[0].querySelector('svg').getBBox().height"
    tall = max(frames, key=lambda f: browser.execute_script(height, f))
    frame = tall.find_element("css selector", ".ll-frame")
    client, scroll = browser.execute_script("return [arguments[0].clientHeight, arguments[0].scrollHeight]", frame)
    assert client <= 570 and scroll > client, (client, scroll)
    svg = frame.find_element("css selector", "svg")
    widths = {}
    for label in ("fit", "100%", "200%"):
        tall.find_element("xpath", f".//label[text()='{label}']").click()
        widths[label] = svg.rect["width"]
    assert widths["200%"] == pytest.approx(2 * widths["100%"], rel=0.02)
    assert widths["fit"] <= frame.rect["width"]
    tall.find_element("xpath", ".//label[text()='fit']").click()
    browser.execute_script("arguments[0].scrollIntoView()", tall)
    SHOTS.mkdir(parents=True, exist_ok=True)
    tall.screenshot(str(SHOTS / f"{template}-tall-diagram.png"))
