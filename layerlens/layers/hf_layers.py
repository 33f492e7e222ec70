"""Hugging Face transformers' own layers, judged by what they compute (active once
transformers is imported):

- learned positional embeddings (BART, mBART, OPT, Whisper): a table looked up
  at *positions* (shifted by an offset of 2 for BART and OPT), not at the ids
  the layer is given; `embedding_index_range` checks the positions used;
- scaled word embeddings (BART's `embed_scale`): an Embedding times a constant;
- GPT-2's `Conv1D`: y = x W + b with W of shape (in, out);
- RMSNorm layers (Llama, Mistral, Qwen2, T5): x / sqrt(mean(x^2) + eps) * w,
  the statistics in float32;
- ConvNeXt's LayerNorm, channels-first or channels-last.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..records import Check, LayerRecord
from ._helpers import array, copy_attrs, first_input, first_tensor, machine_eps, shape_text
from .activation import gelu, numpy_activation, sigmoid, silu
from .embedding import FAMILIES as EMBEDDING_FAMILIES
from .embedding import _index_range, embedding
from .linear import linear
from .norm import FAMILIES as NORM_FAMILIES
from .norm import channels_last_measures, inspect_norm, norm_measures, reference_channels_first_norm, rms_norm
from .registry import Expected, LayerFamily, Probe, Unverifiable

_MODELS = "transformers.models"


def _hf(path: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{_MODELS}.{path}:{n}" for n in names)


# -- positional embeddings ------------------------------------------------------------


def _call_parts(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(first input, cache length, position_ids) of a positional embedding's call."""
    cache = args[1] if len(args) > 1 else kwargs.get("cache_length", kwargs.get("past_key_values_length", 0))
    position_ids = args[2] if len(args) > 2 else kwargs.get("position_ids")
    return first_tensor(args), cache, position_ids


def _positions(module: Any, first: Any, cache: Any, position_ids: Any) -> torch.Tensor | None:
    """The table rows the call reads, as the layer's own forward computes them."""
    offset = int(getattr(module, "offset", 0))
    if isinstance(position_ids, torch.Tensor):
        return position_ids + offset
    if not isinstance(first, torch.Tensor) or not isinstance(cache, int):
        return None
    if type(module).__name__.startswith("OPT"):  # positions count the unmasked tokens
        mask = first.long()
        return ((torch.cumsum(mask, dim=1) * mask - 1)[:, cache:]) + offset
    length = first.shape[1] if first.dim() > 1 else first.shape[0]
    return torch.arange(cache, cache + length, device=first.device) + offset


def _position_measures(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, state: Any) -> Any:
    first, cache, position_ids = _call_parts(args, kwargs)
    positions = _positions(module, first, cache, position_ids)
    if positions is None or positions.numel() == 0:
        return {}
    return {"position_min": positions.min(), "position_max": positions.max(), "position_start": cache}


def inspect_positions(module: Any, record: LayerRecord) -> Iterator[Check]:
    """num_embeddings, embedding_dim, offset; `embedding_index_range` of the positions read."""
    copy_attrs(record, module, "num_embeddings", "embedding_dim", "offset")
    m = record.measures
    if "position_min" in m:
        check = _index_range(module.num_embeddings, float(m["position_min"]), float(m["position_max"]))
        where = check.message.removeprefix("indices ")
        yield dataclasses.replace(check, message=f"positions (with the offset) {where}")


def reference_positions(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """The table rows at the positions read, recomputed from the recorded inputs."""
    weight = array(m.weight)
    assert weight is not None
    named = {t.path: torch.from_numpy(v) for t, v in zip(r.inputs, inputs, strict=False) if v is not None}
    position_ids = named.get("2", named.get("position_ids"))
    positions = _positions(m, named.get("0"), r.measures.get("position_start", 0), position_ids)
    if positions is None:
        raise Unverifiable("the positions it read could not be recomputed from the recorded inputs")
    rows = embedding(positions.numpy().astype(np.int64), weight)
    shape = r.outputs[0].shape if r.outputs else rows.shape
    if rows.shape != shape and rows.ndim < len(shape):  # the same positions for every sequence of the batch
        rows = np.broadcast_to(rows, shape)
    return Expected(rows, by="embedding")


# -- scaled word embeddings --------------------------------------------------------------


def reference_scaled_embedding(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """A table lookup times `embed_scale`."""
    weight = array(m.weight)
    assert weight is not None
    return Expected(embedding(first_input(inputs).astype(np.int64), weight) * float(m.embed_scale), by="embedding")


# -- GPT-2's Conv1D ----------------------------------------------------------------------


def inspect_conv1d(module: Any, record: LayerRecord) -> None:
    """nx (in features), nf (out features)."""
    record.details.update(in_features=int(module.weight.shape[0]), out_features=int(module.nf))


def expect_conv1d(module: Any, args: tuple[Any, ...]) -> str | None:
    """Conv1D(nx, nf) multiplies the last dim by a (nx, nf) weight."""
    x = first_tensor(args)
    nx = int(module.weight.shape[0])
    if x is not None and x.dim() and x.shape[-1] != nx:
        return f"Conv1D(nx={nx}, nf={module.nf}) got last dim {x.shape[-1]} (input shape {shape_text(x.shape)})"
    return None


def reference_conv1d(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """y = x W + b: a linear map with the weight stored transposed."""
    weight = array(m.weight)
    assert weight is not None
    return Expected(linear(first_input(inputs), weight.T, array(m.bias)), by="linear")


# -- RMSNorm -----------------------------------------------------------------------------


def _eps(module: Any) -> float:
    return float(getattr(module, "variance_epsilon", getattr(module, "eps", 1e-6)))


def _rms_measures(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, state: Any) -> Any:
    """`norm_statistics` of x / sqrt(mean(x^2) + eps) * w, as the layer computes it (float32 statistics)."""
    x = first_tensor(args)
    if x is None or not isinstance(output, torch.Tensor) or output.shape != x.shape or x.numel() == 0:
        return {}
    rows = max(1, 8192 // max(1, x.shape[-1]))
    xf = x.detach().reshape(-1, x.shape[-1])[:rows].to(torch.float32)
    ref = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + _eps(module)) * module.weight.detach().float()
    y = output.detach().reshape(-1, x.shape[-1])[:rows].to(torch.float32)
    stats = f"per position over the last axis ({x.shape[-1]}), checked on {min(rows, xf.shape[0])} positions"
    return {"norm_diff": (y - ref).abs().amax(), "norm_scale": ref.abs().amax(), "norm_n": x.shape[-1],
            "norm_stats": stats, "norm_formula": "x/sqrt(mean(x^2) + eps)*weight"}  # fmt: skip


def inspect_rms(module: Any, record: LayerRecord) -> Iterator[Check]:
    """Size and eps; `norm_statistics` (the tolerance allows the input dtype's rounding)."""
    record.details.update(normalized_shape=tuple(module.weight.shape), eps=_eps(module))
    record.details["training"] = record.training
    m = record.measures
    if "norm_diff" in m:
        diff, scale = float(m["norm_diff"]), float(m["norm_scale"])
        tol = max(machine_eps(record.outputs[0].dtype), machine_eps(record.inputs[0].dtype)) * 64 * (1 + scale)
        message = (f"{record.type_name}: y = {m['norm_formula']}, {m['norm_stats']}: max |y - reference| = "
                   f"{diff:.3g} (tolerance {tol:.2g})")  # fmt: skip
        yield Check("norm_statistics", diff <= tol, 0.0, diff, message)


def reference_rms(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """numpy `rms_norm` over the last axis."""
    weight = array(m.weight)
    return Expected(rms_norm(first_input(inputs), (int(m.weight.shape[-1]),), weight, _eps(m)), by="rms_norm")


# -- activations -------------------------------------------------------------------------

_ACTIVATIONS: dict[str, Any] = {
    "GELUActivation": gelu,
    "NewGELUActivation": lambda x: gelu(x, "tanh"),
    "FastGELUActivation": lambda x: gelu(x, "tanh"),
    "AccurateGELUActivation": lambda x: gelu(x, "tanh"),
    "PytorchGELUTanh": lambda x: gelu(x, "tanh"),
    "GELUTanh": lambda x: gelu(x, "tanh"),
    "QuickGELUActivation": lambda x: x * sigmoid(1.702 * x),
    "SiLUActivation": silu,
    "LinearActivation": lambda x: x,
}


def reference_hf_activation(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    """The activation's formula in numpy (the tanh approximations of GELU as written)."""
    if type(m).__name__ == "GELUActivation" and getattr(m, "act", None) is not None:
        inner = numpy_activation(m.act)  # a torch GELU (erf) or its Python twin
        fn = inner if inner is not None else gelu
    else:
        fn = _ACTIVATIONS[type(m).__name__]
    return Expected(fn(first_input(inputs)), by=type(m).__name__)


# -- ConvNeXt's LayerNorm ----------------------------------------------------------------


def _convnext_measures(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, state: Any) -> Any:
    if getattr(module, "data_format", "channels_last") == "channels_first":
        return channels_last_measures(module, args, kwargs, output, state)
    return norm_measures(module, first_tensor(args), output)


def reference_convnext_norm(m: Any, inputs: tuple[np.ndarray | None, ...], r: LayerRecord) -> Expected:
    if getattr(m, "data_format", "channels_last") == "channels_first":
        return reference_channels_first_norm(m, inputs, r)
    norm = next(f for f in NORM_FAMILIES if f.name == "norm")
    assert norm.reference is not None
    answer: Expected = norm.reference(m, inputs, r)
    return answer


_EMBEDDING = next(f for f in EMBEDDING_FAMILIES if f.name == "embedding")
_COLOR = _EMBEDDING.color
_RMS = (
    *_hf("llama.modeling_llama", "LlamaRMSNorm"), *_hf("mistral.modeling_mistral", "MistralRMSNorm"),
    *_hf("qwen2.modeling_qwen2", "Qwen2RMSNorm"), *_hf("t5.modeling_t5", "T5LayerNorm"),
)  # fmt: skip
FAMILIES = (
    LayerFamily("hf.positional_embedding",
                (*_hf("bart.modeling_bart", "BartLearnedPositionalEmbedding"),
                 *_hf("mbart.modeling_mbart", "MBartLearnedPositionalEmbedding"),
                 *_hf("opt.modeling_opt", "OPTLearnedPositionalEmbedding"),
                 *_hf("whisper.modeling_whisper", "WhisperPositionalEmbedding")),
                inspect=inspect_positions, probe=Probe(_position_measures), reference=reference_positions,
                color=_COLOR),
    dataclasses.replace(_EMBEDDING, name="hf.scaled_embedding",
                        types=(*_hf("bart.modeling_bart", "BartScaledWordEmbedding"),
                               *_hf("mbart.modeling_mbart", "MBartScaledWordEmbedding")),
                        reference=reference_scaled_embedding),
    LayerFamily("hf.conv1d", ("transformers.pytorch_utils:Conv1D", "transformers.modeling_utils:Conv1D"),
                inspect=inspect_conv1d, expect=expect_conv1d, reference=reference_conv1d, color=_COLOR),
    LayerFamily("hf.rms_norm", _RMS, inspect=inspect_rms, probe=Probe(_rms_measures), reference=reference_rms,
                color="#fbeaa5"),
    LayerFamily("hf.activation", tuple(f"transformers.activations:{n}" for n in _ACTIVATIONS),
                reference=reference_hf_activation, color="#fdddc0"),
    LayerFamily("hf.convnext_layer_norm", _hf("convnext.modeling_convnext", "ConvNextLayerNorm"),
                inspect=inspect_norm, probe=Probe(_convnext_measures), reference=reference_convnext_norm,
                color="#fbeaa5"),
)  # fmt: skip
