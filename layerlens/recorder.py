"""The hot path: a pair of global module hooks that record every call of the
traced model's modules, and nothing else.

PyTorch's global forward hooks (`register_module_forward_pre_hook` /
`register_module_forward_hook`) fire for every module in the process; a
precomputed `id(module)` map filters them to the traced model, so other models
running meanwhile are untouched, and installing them costs two dict entries
instead of two hooks per module. The post hook is registered with
`always_call=True`, so a module that raises is still seen, and `with_kwargs`,
so keyword arguments to submodules are recorded.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.utils.hooks import RemovableHandle

from .data_flow import Flow
from .flatten import flatten
from .layers.registry import REGISTRY, Probe
from .records import NodeRef, TensorInfo
from .tensor_capture import Capture

_PATHS = tuple(str(i) for i in range(16))  # "0", "1", ...: paths of positional tensors


class ModuleInfo:
    """What is known about one module of the traced model before it runs."""

    __slots__ = ("depth", "leaf", "name", "probe", "registered")

    def __init__(self, name: str, depth: int, probe: Probe | None, leaf: bool, registered: bool = True) -> None:
        self.name = name
        self.depth = depth
        self.probe = probe
        self.leaf = leaf  # no submodules: its own torch calls are its business, not data flow
        self.registered = registered


class Call:
    """One module call while it is being recorded."""

    __slots__ = (
        "after",
        "args",
        "call_index",
        "error",
        "index",
        "info",
        "inner",
        "inputs",
        "measures",
        "module",
        "other_inputs",
        "other_outputs",
        "outputs",
        "parent",
        "paused",
        "probe_state",
        "training",
    )  # fmt: skip

    def __init__(self, module: nn.Module, info: ModuleInfo, call_index: int, index: int, parent: int | None) -> None:
        self.module = module
        self.index = index
        self.parent = parent
        self.info = info
        self.call_index = call_index
        self.training = module.training
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.other_inputs: list[tuple[str, str]] = []
        self.other_outputs: list[tuple[str, str]] = []
        self.error: BaseException | None = None
        self.measures: dict[str, Any] = {}
        self.probe_state: Any = None
        self.args: tuple[Any, ...] | None = None
        self.after: int | None = None  # for a failed call: the last call completed before it
        self.inner = False  # a module call or functional op ran inside this one
        self.paused: Any = None  # the op-capture mode, taken off the stack while this leaf runs


class Recorder:
    """Records the calls of one model's modules between `install` and `remove`."""

    def __init__(
        self,
        root: nn.Module,
        named: list[tuple[str, nn.Module]],
        capture: Capture,
        root_kwargs: dict[str, Any],
        probes: bool,
        flow: Flow | None = None,
    ) -> None:
        self.root = root
        self.flow = flow
        self.mode: Any = None  # the OpCapture mode, when ops are caught
        self.capture = capture
        self.calls: list[Call] = []
        self.failed: list[Call] = []
        self.warnings: list[str] = []
        self._root_kwargs = root_kwargs
        self._probes = probes
        self._stack: list[Call] = []
        self._last_done: int | None = None
        self._counts: dict[int, int] = {}
        self._known = self._index(named, probes)
        self._unregistered: dict[int, ModuleInfo] = {}
        self._thread = threading.get_ident()
        self._handles: list[RemovableHandle] = []

    @staticmethod
    def _index(named: list[tuple[str, nn.Module]], probes: bool) -> dict[int, ModuleInfo]:
        return {
            id(m): ModuleInfo(name, name.count(".") + 1 if name else 0, _probe(m) if probes else None, not m._modules)
            for name, m in named
        }

    def install(self) -> None:
        """Register the global hook pair."""
        self._handles = [
            torch_module.register_module_forward_pre_hook(self._pre),
            torch_module.register_module_forward_hook(self._post, with_kwargs=True, always_call=True),
        ]

    def close(self) -> None:
        """End the forward: close calls left open (their post-hooks never ran,
        e.g. after a KeyboardInterrupt), putting back a paused op-capture mode."""
        if self._stack:
            self._pop(self._stack[0].module)

    def remove(self) -> None:
        """Remove the global hook pair; safe to call more than once."""
        for h in self._handles:
            h.remove()
        self._handles = []

    # -- hooks ------------------------------------------------------------------

    def _pre(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        info = self._known.get(id(module))
        if info is None and not self._stack:
            return None
        if threading.get_ident() != self._thread:
            return None
        try:
            if self.flow is None:
                self._enter(module, info or self._stranger(module), args)
            else:
                with torch._C.DisableTorchFunction():  # our own torch calls are not the model's ops
                    self._enter(module, info or self._stranger(module), args)
        except Exception as exc:  # a recording bug must never break the user's forward
            self._warn(f"recording the inputs of {type(module).__name__} failed: {exc!r}")
        return None

    def _post(self, module: nn.Module, args: tuple[Any, ...], *rest: Any) -> None:
        if not self._stack or threading.get_ident() != self._thread:
            return None
        call = self._pop(module)
        if call is None:
            return None
        try:
            if len(rest) == 2:  # normal return: (kwargs, output)
                if self.flow is None:
                    self._leave(call, args, rest[0], rest[1])
                else:
                    with torch._C.DisableTorchFunction():
                        self._leave(call, args, rest[0], rest[1])
                self._last_done = call.index
            else:  # the forward raised: PyTorch passes (output,) and we are inside its except
                call.error = sys.exc_info()[1]
                call.after = self._last_done
                self.failed.append(call)
        except Exception as exc:
            self._warn(f"recording the outputs of {call.info.name or 'the model'} failed: {exc!r}")
        return None

    def on_op(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        """A torch function ran (from `OpCapture`): record it when the model's own
        code between modules ran it."""
        if self.flow is None or not self._stack or threading.get_ident() != self._thread:
            return
        call = self._stack[-1]
        if call.info.leaf:
            return
        try:
            with torch._C.DisableTorchFunction():
                if self.flow.op(func, args, kwargs, out, call.index):
                    call.inner = True
        except Exception as exc:
            self._warn(f"recording the operation {getattr(func, '__name__', func)} failed: {exc!r}")

    # -- recording --------------------------------------------------------------

    def _enter(self, module: nn.Module, info: ModuleInfo, args: tuple[Any, ...]) -> None:
        key = id(module)
        index = self._counts.get(key, 0)
        self._counts[key] = index + 1
        parent = self._stack[-1] if self._stack else None
        call = Call(module, info, index, len(self.calls), parent.index if parent else None)
        call.args = args
        self.calls.append(call)
        self._stack.append(call)
        tensors = self._capture(args, call.inputs, call.other_inputs, info.name)
        if parent is None:  # the model's own keywords are known up front
            tensors += self._capture(self._root_kwargs, call.inputs, call.other_inputs, info.name)
        if self.flow is not None:
            if parent is None:
                for path, t in tensors:
                    self.flow.produced([(path, t)], NodeRef("input", path), only_new=True)
            else:
                parent.inner = True
            self.flow.consumed(tensors, NodeRef.call(call.index))
        if info.probe is not None and info.probe.before is not None:
            call.probe_state = info.probe.before(module, args)
        if info.leaf and self.mode is not None:
            call.paused = _pause(self.mode)

    def _leave(self, call: Call, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        name = call.info.name
        outermost = not self._stack  # the model's call: its keywords are recorded already
        if kwargs and not outermost:
            keywords = self._capture(kwargs, call.inputs, call.other_inputs, name)
            if self.flow is not None:
                self.flow.consumed(keywords, NodeRef.call(call.index))
        outs = self._capture(output, call.outputs, call.other_outputs, name)
        if self.flow is not None:
            self.flow.produced(outs, NodeRef.call(call.index), only_new=call.inner)
            if outermost:
                for path, t in outs:
                    self.flow.consumed([(path, t)], NodeRef("output", path))
        call.args = None
        probe = call.info.probe
        if probe is not None and not (call.outputs and call.outputs[0].device == "meta"):  # meta: no values
            try:
                found = probe.after(call.module, args, output, call.probe_state)
            except Exception as exc:
                self._warn(f"{name}: measuring {type(call.module).__name__} for its checks failed: {exc!r}")
                return
            finally:
                call.probe_state = None
            for key, value in found.items():
                call.measures[key] = self.capture.defer(value) if isinstance(value, torch.Tensor) else value

    def _capture(
        self, obj: Any, into: list[TensorInfo], others: list[tuple[str, str]], name: str
    ) -> list[tuple[str, torch.Tensor]]:
        """Flatten `obj`, record its tensors into `into` and other leaves into
        `others`; returns the tensors with their paths."""
        tensors: list[tuple[str, torch.Tensor]] = []
        if isinstance(obj, torch.Tensor):  # the common cases first, without the general walk
            tensors.append(("", obj))
        elif type(obj) is tuple and len(obj) <= len(_PATHS) and all(isinstance(a, torch.Tensor) for a in obj):
            tensors.extend(zip(_PATHS, obj, strict=False))
        else:
            flatten(obj, tensors, others)
        tensor = self.capture.tensor
        for p, t in tensors:
            into.append(tensor(p, t, name))
        return tensors

    def _pop(self, module: nn.Module) -> Call | None:
        """Close the innermost open call of `module` (and any left open inside it)."""
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i].module is module:
                call = self._stack[i]
                for closing in reversed(self._stack[i:]):
                    if closing.paused is not None:
                        torch._C._push_on_torch_function_stack(closing.paused)
                        closing.paused = None
                del self._stack[i:]
                return call
        return None

    def _stranger(self, module: nn.Module) -> ModuleInfo:
        """A module called inside the forward that is not registered in the model."""
        info = self._unregistered.get(id(module))
        if info is None:
            parent = self._stack[-1].info
            kind = type(module).__name__
            prefix = f"{parent.name}." if parent.name else ""
            same = sum(1 for i in self._unregistered.values() if i.name.startswith(f"{prefix}<{kind}"))
            name = f"{prefix}<{kind}>" if not same else f"{prefix}<{kind}:{same}>"
            probe = _probe(module) if self._probes else None
            info = ModuleInfo(name, parent.depth + 1, probe, not module._modules, registered=False)
            self._unregistered[id(module)] = info
            self._warn(
                f"{name}: a {kind} was called inside {parent.name or 'the model'} but is not registered "
                "as a submodule (kept in a plain list or dict, or created in forward?): its parameters "
                "are invisible to model.parameters(), optimizers and state_dict"
            )
        return info

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)


def _probe(module: nn.Module) -> Probe | None:
    probe: Probe | None = REGISTRY.coverage(type(module)).hook("probe")
    return probe


def _pause(mode: Any) -> Any:
    """Take the op-capture mode off the torch-function stack while a leaf module
    runs, so the leaf's own torch calls (an `F.linear`, ...) cost nothing to
    catch; only when it is on top (a user's mode above it stays untouched)."""
    depth = torch._C._len_torch_function_stack()
    if depth and torch._C._get_function_stack_at(depth - 1) is mode:
        return torch._C._pop_torch_function_stack()
    return None
