"""Flatten the arguments and results of a module call into tensor leaves.

Tuples, lists, namedtuples, dicts and dataclasses are walked in order; a
`PackedSequence` contributes its `data`, `batch_sizes` and (when set) its
`sorted_indices` and `unsorted_indices`; anything else that
is not a tensor is noted by its type name instead of being walked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch.nn.utils.rnn import PackedSequence

_MAX_DEPTH = 32


def flatten(
    obj: Any,
    tensors: list[tuple[str, torch.Tensor]],
    others: list[tuple[str, str]],
    path: str = "",
    depth: int = 0,
) -> None:
    """Append `(path, tensor)` leaves of `obj` to `tensors` and `(path, type)` of
    other non-None leaves to `others`, in order."""
    if isinstance(obj, torch.Tensor):
        tensors.append((path, obj))
    elif obj is None:
        return
    elif depth >= _MAX_DEPTH:
        others.append((path, type(obj).__name__))
    elif isinstance(obj, PackedSequence):
        tensors.append((_join(path, "data"), obj.data))
        tensors.append((_join(path, "batch_sizes"), obj.batch_sizes))
        for key in ("sorted_indices", "unsorted_indices"):
            index = getattr(obj, key)
            if index is not None:
                tensors.append((_join(path, key), index))
    elif isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple: name the fields
        for key, item in zip(obj._fields, obj, strict=False):
            flatten(item, tensors, others, _join(path, key), depth + 1)
    elif isinstance(obj, (tuple, list)):
        for i, item in enumerate(obj):
            flatten(item, tensors, others, _join(path, str(i)), depth + 1)
    elif isinstance(obj, Mapping):
        for key, item in obj.items():
            flatten(item, tensors, others, _join(path, str(key)), depth + 1)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            flatten(getattr(obj, f.name), tensors, others, _join(path, f.name), depth + 1)
    else:
        others.append((path, type(obj).__name__))


def contains_tensor(obj: Any, depth: int = 0) -> bool:
    """Whether `obj` is a tensor or a container holding at least one tensor."""
    tensors: list[tuple[str, torch.Tensor]] = []
    flatten(obj, tensors, [], "", depth)
    return bool(tensors)


def _join(path: str, key: str) -> str:
    return key if not path else f"{path}.{key}"
