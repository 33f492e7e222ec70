"""A layer's key facts in a few characters (`k=3 s=2 p=1`, `hidden=20 layers=2
batch_first`, `p=0.5`), for table cells and diagram labels.

One table of abbreviations serves every family: inspectors only fill
`record.details`, and defaults (stride 1, padding 0, ...) are left out.
"""

from __future__ import annotations

from typing import Any

from ..records import LayerRecord

# (details key, label, value that is not worth showing)
_FACTS: tuple[tuple[str, str, Any], ...] = (
    ("in_features", "in", None),
    ("out_features", "out", None),
    ("in_channels", "in", None),
    ("out_channels", "out", None),
    ("num_embeddings", "num", None),
    ("embedding_dim", "dim", None),
    ("padding_idx", "pad_idx", None),
    ("kernel_size", "k", None),
    ("stride", "s", 1),
    ("padding", "p", 0),
    ("dilation", "d", 1),
    ("groups", "g", 1),
    ("output_padding", "op", 0),
    ("ceil_mode", "ceil", False),
    ("output_size", "out", None),
    ("input_size", "in", None),
    ("hidden_size", "hidden", None),
    ("proj_size", "proj", None),
    ("num_layers", "layers", 1),
    ("bidirectional", "bidirectional", False),
    ("batch_first", "batch_first", False),
    ("nonlinearity", "", "tanh"),
    ("num_features", "C", None),
    ("normalized_shape", "shape", None),
    ("num_groups", "groups", None),
    ("eps", "eps", 1e-5),
    ("momentum", "momentum", 0.1),
    ("embed_dim", "embed", None),
    ("num_heads", "heads", None),
    ("d_model", "d", None),
    ("nhead", "heads", None),
    ("dim_feedforward", "ff", None),
    ("norm_first", "norm_first", False),
    ("p", "p", None),
    ("config", "", ""),
)
_LABELS = {key for key, _, _ in _FACTS}

# Details kept for tables' other columns, JSON and checks, but too minor for a label.
_QUIET = frozenset(
    {
        "mode", "bias", "training", "inplace", "dropout", "padding_mode", "return_indices",
        "count_include_pad", "divisor_override", "max_norm", "scale_grad_by_freq", "sparse", "affine",
        "elementwise_affine", "track_running_stats", "seq_len", "batch", "head_dim", "kdim", "vdim",
        "add_zero_attn", "packed", "expected", "num_channels", "norm_type", "observed_drop_fraction",
        "output_size_given",
    }
)  # fmt: skip


def key_facts(record: LayerRecord) -> str:
    """The record's notable details, space-separated: the known ones abbreviated
    and without their defaults, then any others (from custom inspectors) as they are."""
    parts = []
    details = record.details
    for key, label, default in _FACTS:
        if key not in details:
            continue
        value = details[key]
        if value is None or value == default or _all_equal(value, default):
            continue
        parts.append(_fact(label, value))
    for key, value in details.items():
        if key not in _LABELS and key not in _QUIET:
            parts.append(_fact(key, value))
    return " ".join(parts)


def _fact(label: str, value: Any) -> str:
    if value is True:
        return label
    text = _value(value)
    return f"{label}={text}" if label else text


def _value(value: Any) -> str:
    if isinstance(value, tuple):
        if value and all(v == value[0] for v in value):
            return _value(value[0])
        return "x".join(_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _all_equal(value: Any, default: Any) -> bool:
    return isinstance(value, tuple) and bool(value) and all(v == default for v in value)
