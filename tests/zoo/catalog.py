"""The real-model zoo: torchvision, timm and transformers models as users build
them, from small configs with random weights (nothing is downloaded), each with
inputs for one forward pass.

`MODELS` maps a name to a builder returning `(model, args, kwargs)`; builders
import their library only when called, so listing the zoo costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Built = tuple[nn.Module, tuple[Any, ...], dict[str, Any]]


def _image(size: int = 64, batch: int = 2, channels: int = 3) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0))


def _tokens(batch: int = 2, length: int = 12, vocab: int = 99) -> torch.Tensor:
    return torch.randint(1, vocab, (batch, length), generator=torch.Generator().manual_seed(0))


def _seeded(make: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return make().eval()


# -- torchvision ----------------------------------------------------------------------


def _tv(name: str, size: int = 64, **kw: Any) -> Callable[[], Built]:
    def build() -> Built:
        import torchvision

        model = _seeded(lambda: torchvision.models.get_model(name, weights=None, **kw))
        return model, (_image(size),), {}

    return build


def _tv_vit() -> Built:
    from torchvision.models import VisionTransformer

    model = _seeded(lambda: VisionTransformer(32, 8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64))
    return model, (_image(32),), {}


def _tv_video() -> Built:
    import torchvision

    model = _seeded(lambda: torchvision.models.video.r3d_18(weights=None))
    return model, (torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0)),), {}


def _tv_detection(name: str) -> Callable[[], Built]:
    def build() -> Built:
        import torchvision

        make = getattr(torchvision.models.detection, name)
        model = _seeded(lambda: make(weights=None, weights_backbone=None, num_classes=3))
        return model, ([torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))],), {}

    return build


def _tv_frozen_bn() -> Built:
    import torchvision

    model = _seeded(lambda: torchvision.models.resnet18(norm_layer=torchvision.ops.misc.FrozenBatchNorm2d))
    return model, (_image(32),), {}


def _tv_segmentation() -> Built:
    import torchvision

    model = _seeded(
        lambda: torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None)
    )
    return model, (_image(64),), {}


# -- timm -----------------------------------------------------------------------------


def _timm(name: str, size: int = 64, **kw: Any) -> Callable[[], Built]:
    def build() -> Built:
        import timm

        model = _seeded(lambda: timm.create_model(name, pretrained=False, **kw))
        return model, (_image(size),), {}

    return build


# -- transformers ---------------------------------------------------------------------

_SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
          "vocab_size": 99, "max_position_embeddings": 64}  # fmt: skip


def _hf(
    model_class: str, config_class: str, inputs: Callable[[], dict[str, Any]], **config: Any
) -> Callable[[], Built]:
    def build() -> Built:
        import transformers

        cfg = getattr(transformers, config_class)(**config)
        model = _seeded(lambda: getattr(transformers, model_class)(cfg))
        return model, (), inputs()

    return build


def _text(**extra: Any) -> Callable[[], dict[str, Any]]:
    def inputs() -> dict[str, Any]:
        ids = _tokens()
        mask = torch.ones_like(ids)
        mask[1, -3:] = 0  # a padded sequence: masks take their real path
        return {"input_ids": ids, "attention_mask": mask, **extra}

    return inputs


def _seq2seq() -> dict[str, Any]:
    return {**_text()(), "decoder_input_ids": _tokens(length=7)}


def _pixels(size: int = 32) -> Callable[[], dict[str, Any]]:
    return lambda: {"pixel_values": _image(size)}


def _audio_features() -> dict[str, Any]:
    return {"input_features": torch.randn(2, 16, 60, generator=torch.Generator().manual_seed(0)),
            "decoder_input_ids": _tokens(length=5)}  # fmt: skip


def _waveform() -> dict[str, Any]:
    return {"input_values": torch.randn(2, 1600, generator=torch.Generator().manual_seed(0))}


def _clip_inputs() -> dict[str, Any]:
    return {**_text()(), "pixel_values": _image(32)}


_LLAMA = {**_SMALL, "num_key_value_heads": 1}

MODELS: dict[str, Callable[[], Built]] = {
    # torchvision
    "tv/resnet18": _tv("resnet18"),
    "tv/resnet50": _tv("resnet50", 32),
    "tv/mobilenet_v2": _tv("mobilenet_v2"),
    "tv/mobilenet_v3_small": _tv("mobilenet_v3_small"),
    "tv/efficientnet_b0": _tv("efficientnet_b0"),
    "tv/convnext_tiny": _tv("convnext_tiny", 32),
    "tv/swin_t": _tv("swin_t", 64),
    "tv/vit": _tv_vit,
    "tv/densenet121": _tv("densenet121", 32),
    "tv/squeezenet1_1": _tv("squeezenet1_1"),
    "tv/shufflenet_v2_x0_5": _tv("shufflenet_v2_x0_5"),
    "tv/regnet_y_400mf": _tv("regnet_y_400mf"),
    "tv/googlenet": _tv("googlenet", 64, aux_logits=False, init_weights=True),
    "tv/r3d_18": _tv_video,
    "tv/lraspp_mobilenet_v3": _tv_segmentation,
    "tv/inception_v3": _tv("inception_v3", 80, aux_logits=False, init_weights=True),
    "tv/fasterrcnn_mobilenet": _tv_detection("fasterrcnn_mobilenet_v3_large_320_fpn"),
    "tv/ssdlite": _tv_detection("ssdlite320_mobilenet_v3_large"),
    "tv/resnet18_frozen_bn": _tv_frozen_bn,
    # timm
    "timm/efficientnet_b0": _timm("efficientnet_b0"),
    "timm/tf_efficientnet_b0": _timm("tf_efficientnet_b0"),
    "timm/tf_mobilenetv3_small_100": _timm("tf_mobilenetv3_small_100"),
    "timm/mixnet_s": _timm("mixnet_s"),
    "timm/resnet18d": _timm("resnet18d"),
    "timm/convnext_atto": _timm("convnext_atto"),
    "timm/vit_tiny": _timm("vit_tiny_patch16_224", 32, img_size=32, patch_size=8),
    "timm/deit_tiny": _timm("deit_tiny_patch16_224", 32, img_size=32, patch_size=8),
    "timm/swin_tiny": _timm("swin_tiny_patch4_window7_224", 224),
    "timm/regnetx_002": _timm("regnetx_002"),
    "timm/nf_resnet26": _timm("nf_resnet26"),
    "timm/levit_128s": _timm("levit_128s", 224),
    "timm/mobilevit_xxs": _timm("mobilevit_xxs", 64),
    "timm/ghostnet_100": _timm("ghostnet_100"),
    "timm/dla34": _timm("dla34"),
    "timm/edgenext_xx_small": _timm("edgenext_xx_small"),
    "timm/pvt_v2_b0": _timm("pvt_v2_b0"),
    "timm/mobileone_s0": _timm("mobileone_s0"),
    "timm/cait_xxs24": _timm("cait_xxs24_224", 32, img_size=32, patch_size=8),
    "timm/efficientformer_l1": _timm("efficientformer_l1", 224),
    "timm/eva02_tiny": _timm("eva02_tiny_patch14_224", 224),
    # transformers
    "hf/bert": _hf("BertModel", "BertConfig", _text(), **_SMALL),
    "hf/distilbert": _hf("DistilBertModel", "DistilBertConfig", _text(), dim=32, n_layers=2, n_heads=2,
                         hidden_dim=64, vocab_size=99, max_position_embeddings=64),
    "hf/roberta": _hf("RobertaModel", "RobertaConfig", _text(), **_SMALL, pad_token_id=1),
    "hf/albert": _hf("AlbertModel", "AlbertConfig", _text(), **_SMALL, embedding_size=16),
    "hf/gpt2": _hf("GPT2LMHeadModel", "GPT2Config", _text(), n_embd=32, n_layer=2, n_head=2, vocab_size=99,
                   n_positions=64, bos_token_id=1, eos_token_id=2),
    "hf/t5": _hf("T5ForConditionalGeneration", "T5Config", _seq2seq, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                 num_heads=2, vocab_size=99),
    "hf/bart": _hf("BartForConditionalGeneration", "BartConfig", _seq2seq, d_model=32, encoder_layers=2,
                   decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                   decoder_ffn_dim=64, vocab_size=99, max_position_embeddings=64),
    "hf/whisper": _hf("WhisperForConditionalGeneration", "WhisperConfig", _audio_features, d_model=32,
                      encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                      encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=99, num_mel_bins=16,
                      max_source_positions=30, max_target_positions=32, pad_token_id=0, bos_token_id=1,
                      eos_token_id=2, decoder_start_token_id=1),
    "hf/llama": _hf("LlamaForCausalLM", "LlamaConfig", _text(), **_LLAMA),
    "hf/mistral": _hf("MistralForCausalLM", "MistralConfig", _text(), **_LLAMA),
    "hf/qwen2": _hf("Qwen2ForCausalLM", "Qwen2Config", _text(), **_LLAMA),
    "hf/gpt_neox": _hf("GPTNeoXForCausalLM", "GPTNeoXConfig", _text(), **_SMALL),
    "hf/opt": _hf("OPTForCausalLM", "OPTConfig", _text(), hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=2, ffn_dim=64, vocab_size=99, max_position_embeddings=64,
                  word_embed_proj_dim=32),
    "hf/wav2vec2": _hf("Wav2Vec2Model", "Wav2Vec2Config", _waveform, **_SMALL, conv_dim=(16, 16),
                       conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8,
                       num_conv_pos_embedding_groups=2),
    "hf/clip": _hf("CLIPModel", "CLIPConfig", _clip_inputs,
                   text_config={**_SMALL, "projection_dim": 16, "bos_token_id": 1, "eos_token_id": 2},
                   vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                  "intermediate_size": 64, "image_size": 32, "patch_size": 8}, projection_dim=16),
    "hf/vit": _hf("ViTModel", "ViTConfig", _pixels(32), **{**_SMALL, "image_size": 32, "patch_size": 8}),
    "hf/convnext": _hf("ConvNextModel", "ConvNextConfig", _pixels(32), hidden_sizes=[8, 16, 24, 32],
                       depths=[1, 1, 1, 1]),
    "hf/electra": _hf("ElectraModel", "ElectraConfig", _text(), **_SMALL, embedding_size=16),
    "hf/deberta_v2": _hf("DebertaV2Model", "DebertaV2Config", _text(), **_SMALL),
    "hf/falcon": _hf("FalconForCausalLM", "FalconConfig", _text(), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, vocab_size=99),
    "hf/phi": _hf("PhiForCausalLM", "PhiConfig", _text(), **_SMALL),
    "hf/gemma": _hf("GemmaForCausalLM", "GemmaConfig", _text(), **_LLAMA, head_dim=16),
    "hf/bloom": _hf("BloomForCausalLM", "BloomConfig", _text(), hidden_size=32, n_layer=2, n_head=2, vocab_size=99),
    "hf/mixtral": _hf("MixtralForCausalLM", "MixtralConfig", _text(), **_LLAMA, num_local_experts=2,
                      num_experts_per_tok=1),
    "hf/mamba": _hf("MambaModel", "MambaConfig", _text(), hidden_size=32, num_hidden_layers=2, vocab_size=99,
                    state_size=4),
    "hf/mpnet": _hf("MPNetModel", "MPNetConfig", _text(), **_SMALL),
    "hf/hubert": _hf("HubertModel", "HubertConfig", _waveform, **_SMALL, conv_dim=(16, 16), conv_stride=(5, 4),
                     conv_kernel=(10, 4), num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2),
    "hf/segformer": _hf("SegformerModel", "SegformerConfig", _pixels(64), hidden_sizes=[8, 16, 24, 32],
                        depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2], decoder_hidden_size=32),
    "hf/swin": _hf("SwinModel", "SwinConfig", _pixels(32), image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                   num_heads=[1, 2], window_size=4),
    "hf/marian": _hf("MarianMTModel", "MarianConfig", _seq2seq, d_model=32, encoder_layers=1, decoder_layers=1,
                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                     vocab_size=99, max_position_embeddings=64, decoder_start_token_id=1, pad_token_id=0),
}  # fmt: skip
