"""The `layerlens` command: default abc model, MODULE:FACTORY, options, and
errors as one clear line with a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from layerlens.cli import main


def test_default_traces_the_abc_classifier(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace"]) == 0
    out = capsys.readouterr().out
    for name in ("AbcClassifier", "├─ embedding", "├─ rnn", "└─ linear", "Total"):
        assert name in out
    assert "[6, 6] int64" in out


def test_factory_with_input_size_dtype_format_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mymodels.py").write_text(
        textwrap.dedent(
            """
            from torch import nn
            def build():
                return nn.Sequential(nn.Embedding(30, 4), nn.Flatten(), nn.Linear(24, 2))
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    out_json = tmp_path / "out" / "t.json"
    code = main(["trace", "mymodels:build", "--input-size", "64,6", "--dtype", "long", "--fmt", "github",
                 "--json", str(out_json)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("| Layer") and "| Embedding" in out and "[64, 6] int64" in out
    assert json.loads(out_json.read_text())["schema"] == "layerlens.trace/1"
    assert main(["trace", str(tmp_path / "mymodels.py") + ":build", "--input-size", "2x6", "--dtype", "long"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trace", "nosuchmodule:build", "--input-size", "2,3"], "cannot import 'nosuchmodule'"),
        (["trace", "json:nothing", "--input-size", "2,3"], "'json' has no attribute 'nothing'"),
        (["trace", "json", "--input-size", "2,3"], "model must be MODULE:FACTORY"),
        (["trace", "json:dumps", "--input-size", "2,3"], "calling json:dumps failed"),
        (["trace", "json:JSONDecoder", "--input-size", "2,3"], "returned JSONDecoder, not an nn.Module"),
        (["trace", "--input-size", "2,a"], "--input-size must be integers"),
        (["trace", "--input-size", "2,6", "--dtype", "floaty"], "unknown dtype 'floaty'"),
        (["trace", "--columns", "layer,bogus"], "unknown table column"),
        (["trace", "torch.nn:Identity"], "--input-size is required"),
        (["trace", "--input-size", "99999999999999999999,3"], "at most 2**40"),
        (["trace", "--input-size", "2,6", "--fmt", "bogus"], "unknown table format 'bogus'"),
        (["verify", "--input-size", "2,6", "--fmt", "bogus"], "unknown table format 'bogus'"),
    ],
)
def test_errors_are_one_line_and_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("layerlens: error: ") and message in err
    assert "Traceback" not in err and "frame #" not in err and len(err.splitlines()) == 1


def test_forward_failure_exits_2_with_the_explanation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "--input-size", "4,7", "--dtype", "long"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("layerlens: error: forward failed in 'linear' (Linear)")
    assert "Linear(in_features=120) got last dim 140" in err


def test_failed_checks_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "trimmed.py").write_text(
        textwrap.dedent(
            """
            from torch import nn
            import layerlens
            class Trimmed(nn.Conv1d):
                def forward(self, x):
                    return super().forward(x)[..., :-1]
            layerlens.layers.judge_like(Trimmed, nn.Conv1d)  # its forward claims to compute a Conv1d
            def build():
                return Trimmed(1, 1, 3)
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    assert main(["trace", "trimmed:build", "--input-size", "1,1,9"]) == 1


def test_console_script_and_module_entry_point() -> None:
    done = subprocess.run([sys.executable, "-m", "layerlens", "trace", "--depth", "0"], capture_output=True, text=True)
    assert done.returncode == 0 and "AbcClassifier" in done.stdout and "rnn" not in done.stdout
    done = subprocess.run([sys.executable, "-m", "layerlens", "--version"], capture_output=True, text=True)
    assert done.stdout.startswith("layerlens ")


def test_checks_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "--checks"]) == 0
    out = capsys.readouterr().out
    assert "✓ embedding  embedding_index_range: indices span" in out
    assert "✓ rnn  rnn_final_state:" in out


def test_diagram_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "abc.dot"
    assert main(["diagram", "-o", str(out)]) == 0
    assert "written to" in capsys.readouterr().out
    text = out.read_text()
    assert text.startswith("digraph AbcClassifier") and "reshape" in text
    out = tmp_path / "r.dot"
    args = ["diagram", "layerlens.models.gallery:resnet_like", "--input-size", "1,3,16,16"]
    assert main([*args, "--depth", "1", "--rankdir", "LR", "-o", str(out)]) == 0
    text = out.read_text()
    assert "rankdir=LR" in text and "block1.conv1" not in text and "block1" in text


def test_diagram_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["diagram", "-o", str(tmp_path / "x.jpg")]) == 2
    assert "writes .svg, .png, .pdf, .dot or .gv" in capsys.readouterr().err
    from layerlens.render import graphviz_run

    monkeypatch.setattr(graphviz_run.shutil, "which", lambda name: None)
    monkeypatch.setattr(graphviz_run, "_beside_python", lambda name: None)
    assert main(["diagram", "-o", str(tmp_path / "x.svg")]) == 2
    assert "pip install torch-layerlens[render]" in capsys.readouterr().err
