"""The models the documentation's diagrams and tables trace at build time
(`.. layerlens-diagram:: models:<factory>`). Library models are built from
their configs with random weights: nothing is downloaded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from layerlens.models import abc, gallery


def _seeded(make: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return make().eval()


# -- the bundled examples ----------------------------------------------------------------


def abc_classifier() -> nn.Module:
    return abc.build_model()


def abc_inputs() -> torch.Tensor:
    return abc.encode(list(abc.SAMPLE_STRINGS))


def resnet_like() -> nn.Module:
    return gallery.build_resnet_like()[0]


def lstm_tagger() -> nn.Module:
    return gallery.build_lstm_tagger()[0]


def lstm_tokens() -> torch.Tensor:
    """The gallery's token ids (in the embedding's range)."""
    return gallery.build_lstm_tagger()[1]


def reused_block() -> nn.Module:
    return gallery.build_reused_block()[0]


# -- real models (torchvision, timm, transformers) ---------------------------------------


def resnet50() -> nn.Module:
    import torchvision

    return _seeded(lambda: torchvision.models.resnet50(weights=None))


def efficientnet_b0() -> nn.Module:
    import torchvision

    return _seeded(lambda: torchvision.models.efficientnet_b0(weights=None))


def convnext_tiny() -> nn.Module:
    import timm

    return _seeded(lambda: timm.create_model("convnext_tiny", pretrained=False))


def vit_b_16() -> nn.Module:
    import timm

    return _seeded(lambda: timm.create_model("vit_base_patch16_224", pretrained=False))


def swin_t() -> nn.Module:
    import torchvision

    return _seeded(lambda: torchvision.models.swin_t(weights=None))


def bert_base() -> nn.Module:
    from transformers import BertConfig, BertModel

    return _seeded(lambda: BertModel(BertConfig()))


def text_inputs() -> dict[str, Any]:
    """Eight tokens of two sentences, the second padded: the attention mask matters."""
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102, 0], [101, 2023, 2003, 102, 0, 0, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2Model

    return _seeded(lambda: GPT2Model(GPT2Config()))


def whisper() -> nn.Module:
    from transformers import WhisperConfig, WhisperModel

    return _seeded(lambda: WhisperModel(WhisperConfig()))


def whisper_inputs() -> dict[str, Any]:
    """30 s of 80-bin log-mel features and four decoder tokens."""
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(1, 80, 3000, generator=gen)
    return {"input_features": features, "decoder_input_ids": torch.tensor([[1, 2, 3, 4]])}
