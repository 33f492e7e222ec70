"""The bundled abc classifier: the tutorial's model and encoding, exactly."""

from __future__ import annotations

import csv
import pickle
import string
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import layerlens as ll
from layerlens.models import abc


def test_model_is_the_tutorials() -> None:
    m = abc.build_model()
    assert (m.embedding.num_embeddings, m.embedding.embedding_dim, m.embedding.padding_idx) == (53, 10, 0)
    assert (m.rnn.input_size, m.rnn.hidden_size, m.rnn.num_layers, m.rnn.batch_first) == (10, 20, 2, True)
    assert (m.linear.in_features, m.linear.out_features) == (120, 3)
    assert isinstance(m.loss, nn.CrossEntropyLoss)
    x = abc.encode(["xyzab", "qwbert"])
    assert m(x).shape == (2, 3)
    assert m(x, torch.tensor([0, 1])).dim() == 0


def test_building_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a, b = abc.build_model(seed=3), abc.build_model(seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_encoding_is_index_plus_one_with_zero_padding() -> None:
    x = abc.encode(["abcde", "ZYXabc"])
    assert x.dtype == torch.long and x.shape == (2, 6)
    assert x[0].tolist() == [1, 2, 3, 4, 5, 0]
    letters = string.ascii_letters
    assert x[1].tolist() == [letters.index(c) + 1 for c in "ZYXabc"]
    assert len(abc.VOCAB) == 52


def test_label_follows_the_priority_rule() -> None:
    assert [abc.label(s) for s in ("xxbxa", "qqbqqc", "zzzzc", "Aabcd")] == [0, 1, 2, 0]
    with pytest.raises(ValueError, match="none of 'a', 'b', 'c'"):
        abc.label("xyzwv")
    with pytest.raises(ValueError, match="no class"):
        abc.label("ABCDE")  # upper case does not count


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abcd", "has 4 characters"),
        ("abcdefg", "has 7 characters"),
        ("", "has 0 characters"),
        ("ab-de", "contains '-'"),
    ],
)
def test_encoding_rejects_bad_strings_clearly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        abc.encode([text])


def test_encode_needs_a_list() -> None:
    with pytest.raises(TypeError, match="single string"):
        abc.encode("abcde")


def test_trace_of_the_abc_model_is_clean_with_the_loss_keyword() -> None:
    m = abc.build_model()
    t = ll.trace(m, abc.encode(list(abc.SAMPLE_STRINGS)), kwargs={"y": torch.tensor([0, 1, 2, 0, 2, 2])})
    assert [r.name for r in t] == ["", "embedding", "rnn", "linear", "loss"]
    assert t.ok and t["loss"].output_shapes == ((),)
    assert {c.name for c in t.checks} == {"embedding_index_range", "embedding_padding_row", "rnn_final_state"}


# -- data, training, persistence, prediction -------------------------------------


@pytest.fixture(scope="module")
def trained() -> abc.TrainResult:
    return abc.train(progress=False)


def test_generated_data_follows_the_rule_and_the_seed() -> None:
    texts, classes = abc.generate(500, seed=7)
    assert all(len(s) in (5, 6) and any(c in s for c in "abc") for s in texts)
    assert classes == [abc.label(s) for s in texts]
    assert abc.generate(500, seed=7) == (texts, classes)
    assert abc.generate(500, seed=8) != (texts, classes)
    assert {0, 1, 2} == set(classes)


def test_training_reaches_995_percent_on_fresh_strings(trained: abc.TrainResult) -> None:
    texts, classes = abc.generate(2000, seed=12345)
    assert abc.accuracy(trained.model, texts, classes) >= 0.995
    assert trained.stopped_early and trained.epochs <= 30
    assert len(trained.history.loss) == len(trained.history.accuracy) == trained.epochs
    assert trained.history.loss[-1] < trained.history.loss[0]


def test_training_is_deterministic_and_leaves_the_rng_alone(trained: abc.TrainResult) -> None:
    state = torch.get_rng_state()
    again = abc.train(progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert again.history.loss == trained.history.loss
    assert all(torch.equal(p, q) for p, q in zip(again.model.parameters(), trained.model.parameters(), strict=True))


def test_predict_gives_classes_and_probabilities(trained: abc.TrainResult) -> None:
    preds = abc.predict(trained.model, ["xyzab", "qwbert", "cxyzw"])
    assert [p.cls for p in preds] == [0, 1, 2]
    assert all(abs(sum(p.probabilities) - 1) < 1e-5 for p in preds)
    with pytest.raises(ValueError, match="has 4 characters"):
        abc.predict(trained.model, ["abcd"])
    trained.model.train()
    abc.predict(trained.model, ["xyzab"])
    assert trained.model.training  # the model's mode is left as it was
    trained.model.eval()


def test_save_and_load_round_trip(trained: abc.TrainResult, tmp_path: Path) -> None:
    abc.save(trained.model, tmp_path)
    loaded = abc.load(tmp_path)
    x = abc.encode(["xyzab", "Bbxyz"])
    assert torch.equal(loaded(x), trained.model(x))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_load_refuses_corrupt_mismatched_and_pickled_files(
    trained: abc.TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    abc.save(trained.model, tmp_path)
    weights = tmp_path / "abc_model.pt"
    weights.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a readable abc model"):
        abc.load(tmp_path)

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    weights.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(ValueError, match="is not a readable abc model"):
        abc.load(tmp_path)
    assert "pwned" not in capsys.readouterr().out  # refused, never executed
    torch.save({"embedding.weight": torch.zeros(3, 3)}, weights)
    with pytest.raises(ValueError, match="saved from a different model"):
        abc.load(tmp_path)
    (tmp_path / "abc_vocab.json").write_text('{"vocab": ["a"], "seq_len": 6}')
    with pytest.raises(ValueError, match="does not describe this model's vocabulary"):
        abc.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no vocabulary file"):
        abc.load(tmp_path / "nowhere")


def test_training_curve_as_csv_and_png(trained: abc.TrainResult, tmp_path: Path) -> None:
    path = trained.history.to_csv(tmp_path / "curve.csv")
    rows = list(csv.DictReader(path.open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, trained.epochs + 1))
    assert float(rows[-1]["accuracy"]) == pytest.approx(trained.accuracy, abs=1e-4)
    pytest.importorskip("matplotlib")
    png = trained.history.plot(tmp_path / "curve.png")
    assert png is not None and png.read_bytes().startswith(b"\x89PNG")


def test_without_optional_extras(
    trained: abc.TrainResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert trained.history.plot(tmp_path / "curve.png") is None
    abc.train(epochs=2, progress=True, target_accuracy=None)
    err = capsys.readouterr().err
    assert "epoch 1/2  loss " in err and "epoch 2/2  loss " in err and "accuracy" in err
