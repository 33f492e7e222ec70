"""Fault injection: an exception of each kind at every module call of several
models; after each, the model, the process and torch are exactly as before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.modules import module as torch_module

import layerlens as ll
from layerlens.models import abc, gallery


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("even printing this fails")


def _abc() -> tuple[nn.Module, torch.Tensor]:
    texts, _ = abc.generate(8, seed=0)
    return abc.build_model(), abc.encode(texts)


def _transformer() -> tuple[nn.Module, torch.Tensor]:
    return gallery.build_transformer(layers=1, d=16)


MODELS: dict[str, Callable[[], tuple[nn.Module, Any]]] = {
    "abc": _abc,
    "resnet": gallery.build_resnet_like,
    "lstm": gallery.build_lstm_tagger,
    "transformer": _transformer,
    "conv_stack": lambda: gallery.build_conv_stack(blocks=2),
}
FAULTS: dict[str, Callable[[], BaseException]] = {
    "runtime": lambda: RuntimeError("injected"),
    "unprintable": _Unprintable,
    "interrupt": KeyboardInterrupt,
}


def _state(model: nn.Module) -> dict[str, Any]:
    """Everything a trace could change, as comparable values."""
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "flags": [(n, m.training) for n, m in model.named_modules()],
        "tables": [(n, list(m._parameters), list(m._buffers), list(m._modules)) for n, m in model.named_modules()],
        "own": [
            (n, sorted(k for k in vars(m) if k.startswith("_call") or k == "forward")) for n, m in model.named_modules()
        ],
        "rng": torch.get_rng_state(),
        "fastpath": torch.backends.mha.get_fastpath_enabled(),
        "global hooks": [
            len(getattr(torch_module, t))
            for t in dir(torch_module)
            if t.startswith("_global_") and isinstance(getattr(torch_module, t), dict)
        ],
        "hooks": [(n, len(m._forward_pre_hooks), len(m._forward_hooks)) for n, m in model.named_modules()],
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "tensors":
            assert a[key].keys() == b[key].keys()
            for name in a[key]:
                assert torch.equal(a[key][name], b[key][name]), name
        elif key == "rng":
            assert torch.equal(a[key], b[key])
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_fault_at_any_call_leaves_everything_as_before(name: str, fault: str) -> None:
    model, x = MODELS[name]()
    model.train()
    called = {r.name for r in ll.trace(model, x)}  # (MultiheadAttention's out_proj, say, is never called)
    modules = [m for n, m in model.named_modules() if n in called]
    before = _state(model)
    for i, target in enumerate(modules):

        def explode(module: nn.Module, args: Any) -> None:
            raise FAULTS[fault]()

        handle = target.register_forward_pre_hook(explode)
        try:
            with pytest.raises((ll.TraceError, KeyboardInterrupt)) as caught:
                ll.trace(model, x, mode="eval" if i % 2 else None)
        finally:
            handle.remove()
        if isinstance(caught.value, ll.TraceError):
            assert caught.value.trace is not None
            text = str(caught.value)
            assert text and "forward failed" in text
        _same(_state(model), before)
