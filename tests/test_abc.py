"""The bundled abc classifier: the tutorial's model and encoding, exactly."""

from __future__ import annotations

import string

import pytest
import torch
from torch import nn

import layerlens as ll
from layerlens.examples import abc


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
