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


MODELS = """
import torch
from torch import nn

def embedder(vocab=10, width=4):
    return nn.Sequential(nn.Embedding(vocab, width), nn.Linear(width, 2))

class Masked(nn.Module):
    def forward(self, x, mask=None):
        return x if mask is None else x * mask

def masked():
    return Masked()
"""


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "clim.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_version_and_help_do_not_import_torch() -> None:
    probe = (
        "import sys\nfrom layerlens.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    for flag in ("--version", "--help"):
        done = subprocess.run([sys.executable, "-c", probe, flag], capture_output=True, text=True)
        assert done.stdout.strip().splitlines()[-1] == "False", (flag, done.stdout, done.stderr)


def test_factory_arguments_keyword_inputs_and_device(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["trace", "clim:embedder", "--arg", "vocab=25", "--arg", "width=8", "--input-size", "2,3", "--dtype", "long"]
    assert main([*args, "--device", "cpu", "--columns", "layer,params"]) == 0
    out = capsys.readouterr().out
    assert "200" in out.splitlines()[3]  # the Embedding: 25 x 8 parameters
    assert main(["trace", "clim:masked", "--input-size", "2,3", "--kwarg", "mask=2,3:bool"]) == 0
    assert "[2, 3], [2, 3] bool" in capsys.readouterr().out  # the keyword input reached forward
    for bad, message in (
        (["--arg", "novalue"], "--arg must be NAME=VALUE"),
        (["--kwarg", "mask=2,a"], "--kwarg must be integers"),
        (["--device", "warp"], "--device must be"),
    ):
        assert main(["trace", "clim:masked", "--input-size", "2,3", *bad]) == 2
        assert message in capsys.readouterr().err


def test_flops_on_the_command_line_match_the_api(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    import layerlens as ll

    assert main(["trace", "clim:embedder", "--input-size", "2,3", "--dtype", "long", "--flops"]) == 0
    out = capsys.readouterr().out
    import clim  # the models file in the working directory

    expected = ll.trace(clim.embedder(), input_size=(2, 3), dtypes=[torch.long], flops=True).summary().flops
    assert "FLOPs" in out.splitlines()[0] and f" {expected} " in out.splitlines()[-1]


def test_embedding_given_float_inputs_names_the_flag_to_use(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trace", "clim:embedder", "--input-size", "2,3"]) == 2
    assert "pass --dtype long" in capsys.readouterr().err


def test_every_subcommand_spells_the_output_flag_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from layerlens.cli import _parser

    parser = _parser()
    for command in ("diagram", "demo"):
        ns = parser.parse_args([command, "-o", str(tmp_path / "x")])
        assert ns.output == str(tmp_path / "x")
        assert parser.parse_args([command, "--output", "y"]).output == "y"


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_png_scale_and_dpi(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("graphviz")
    from layerlens.render.graphviz_run import find_renderer

    try:
        find_renderer("png")
    except Exception:
        pytest.skip("no Graphviz renderer")
    plain, big, fine = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    assert main(["diagram", "-o", str(plain)]) == 0
    assert main(["diagram", "-o", str(big), "--scale", "2"]) == 0
    assert main(["diagram", "-o", str(fine), "--dpi", "144"]) == 0
    (w, h), (w2, h2), (w3, _) = _png_size(plain), _png_size(big), _png_size(fine)
    assert abs(w2 / w - 2) < 0.02 and abs(h2 / h - 2) < 0.02 and abs(w3 / w - 1.5) < 0.02
    assert main(["diagram", "-o", str(tmp_path / "d.svg"), "--dpi", "200"]) == 2
    assert "apply to a .png" in capsys.readouterr().err


def test_keyword_index_inputs_span_the_models_embedding_like_positional_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "kwemb.py").write_text(
        textwrap.dedent(
            """
            from torch import nn
            class M(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.emb = nn.Embedding(40, 2)
                def forward(self, x, ids=None):
                    return x + self.emb(ids).sum()
            def build():
                return M()
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    json_path = tmp_path / "t.json"
    assert main(["trace", "kwemb:build", "--input-size", "2", "--kwarg", "ids=64:long", "--json", str(json_path)]) == 0
    emb = next(r for r in json.loads(json_path.read_text())["records"] if r["name"] == "emb")
    assert 2 <= emb["inputs"][0]["stats"]["max"] < 40  # not only 0 and 1: the model's own index range
