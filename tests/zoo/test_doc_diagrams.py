"""The real models in the docs (docs/real-models.md) meet the readability list:
at most ~2,000 pt tall at the default depth, no loose nodes, no empty
clusters, short names unique within each cluster, the same DOT every time."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from layerlens.doc_figures import make_figure, parse_request
from tests.test_diagram import Dot

DOCS = Path(__file__).parents[2] / "docs"
sys.path.insert(0, str(DOCS))

pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")


def _page_specs() -> list[tuple[str, dict[str, str]]]:
    """Every layerlens-diagram on the real-models page, with its options."""
    text = (DOCS / "real-models.md").read_text(encoding="utf-8")
    specs = []
    for m in re.finditer(r"^```\{layerlens-diagram\} (\S+)\n((?::[\w-]+:.*\n)*)```", text, re.M):
        options = dict(re.findall(r"^:([\w-]+):\s*(.*)$", m.group(2), re.M))
        specs.append((m.group(1), {k: v for k, v in options.items() if k not in ("caption", "name")}))
    return specs


SPECS = _page_specs()


def test_the_page_draws_the_eight_models() -> None:
    names = {model.split(":")[1] for model, _ in SPECS}
    expected = {"resnet50", "efficientnet_b0", "convnext_tiny", "vit_b_16", "swin_t", "bert_base", "gpt2", "whisper"}
    assert names == expected


@pytest.mark.parametrize(("model", "options"), SPECS, ids=[m for m, _ in SPECS])
def test_real_model_diagram_is_readable(model: str, options: dict[str, str]) -> None:
    figure, _, _ = make_figure(parse_request(model, options), None)
    again, _, _ = make_figure(parse_request(model, options), None)
    assert figure.dot == again.dot  # deterministic
    svg = subprocess.run(["dot", "-Tsvg"], input=figure.dot, capture_output=True, text=True, check=True).stdout
    height = float(re.search(r'<svg[^>]*height="([\d.]+)pt"', svg).group(1))  # type: ignore[union-attr]
    assert height <= 2000
    d = Dot(figure.dot)
    linked = {s for s, _, _ in d.edges} | {t for _, t, _ in d.edges} | {s for s, _, _ in d.dashed}
    assert set(d.labels) <= linked, "loose nodes"
    for inside, direct in _clusters(figure.dot):
        assert re.search(r"^\s*\w+ \[label=", inside, re.M), "an empty cluster"
        titles = [m.group(1) for m in re.finditer(r"^\s*\w+ \[label=<<B>([^<]*)</B>", direct, re.M)]
        assert len(titles) == len(set(titles)), "names repeat inside a cluster"


def _clusters(dot: str) -> list[tuple[str, str]]:
    """For each cluster: all its lines, and only those directly in it (not in sub-clusters)."""
    lines = dot.splitlines()
    found = []
    for k, line in enumerate(lines):
        if not line.lstrip().startswith("subgraph cluster_"):
            continue
        depth, inside, direct = 0, [], []
        for inner in lines[k:]:
            depth += inner.count("{") - inner.count("}") if inner.strip() in ("}",) or "subgraph" in inner else 0
            inside.append(inner)
            if depth == 1 and "subgraph" not in inner:
                direct.append(inner)
            if depth == 0:
                break
        found.append(("\n".join(inside), "\n".join(direct)))
    return found


def test_rolled_resnet_stays_untangled() -> None:
    """torchvision's Bottleneck calls one ReLU three times: rolled, it must not become
    one node that every edge of the block runs through and back."""
    import models  # docs/models.py
    import torch

    import layerlens as ll
    from tests.test_diagram_readable import _topological

    d = Dot(ll.trace(models.resnet50(), torch.randn(1, 3, 64, 64)).to_dot(roll=True))
    _topological(d)  # no cycles: nothing in a ResNet is recurrent
    relus = [n for n in d.names.values() if n.startswith("layer1.0.relu")]
    assert relus == ["layer1.0.relu", "layer1.0.relu #1", "layer1.0.relu #2"]
