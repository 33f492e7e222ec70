"""The hot path: record every call of the traced model's modules, and nothing else.

Each module of the model gets, for the trace only, a `_call_impl` of its own
in its instance `__dict__` (what `nn.Module.__call__` calls): a small wrapper
that records the call around the module's real one, its own hooks included.
Nothing global changes: PyTorch's global hook tables stay empty (so other
models, other threads and compiled code are untouched, and every module keeps
its no-hook fast path), `forward` stays as it is, and removing the wrappers
restores each `__dict__` exactly. A wrapper records only on the tracing thread
and passes any other call straight through.

Per call the wrapper appends to flat lists: the module's slot, the parent
call, the training flag, and per tensor one tuple (path, shape, dtype, device,
requires_grad, statistics handle); no tensor is kept alive. Everything else
(records, names, checks) is built after the forward, in `tracing`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .data_flow import Flow, may_hold_tensors
from .flatten import flatten
from .layers.registry import REGISTRY, Coverage, Probe
from .records import NodeRef
from .tensor_capture import Capture

_PATHS = tuple(str(i) for i in range(16))  # "0", "1", ...: paths of positional tensors
_NOTHING: tuple[tuple[Any, ...], ...] = ()  # outputs of a call that has not returned
_ABSENT = object()  # no `_call_impl` of its own in the module's __dict__
_PUSHED = object()  # a call that put the op-capture mode on the stack
Tensors = list[tuple[str, torch.Tensor]]


class Slot:
    """What is known about one module of the traced model before it runs."""

    __slots__ = ("cover", "depth", "leaf", "module", "name", "probe", "registered", "runs_code")

    def __init__(self, module: nn.Module, name: str, depth: int, leaf: bool, registered: bool = True) -> None:
        self.module = module
        self.name = name
        self.depth = depth
        self.leaf = leaf  # no submodules (or opaque): its own torch calls are its business, not data flow
        self.registered = registered
        # its own forward runs between its submodules' calls (not a leaf, not a Sequential's chaining)
        self.runs_code = not leaf and getattr(type(module), "forward", None) is not nn.Sequential.forward
        self.probe: Probe | None = None
        self.cover: Coverage | None = None  # the family judging it, decided when the trace runs


class Recorder:
    """Records the calls of one model's modules between `install` and `remove`."""

    def __init__(self, slots: list[Slot], capture: Capture, probes: bool, flow: Flow | None = None) -> None:
        self.slots = slots
        self.capture = capture
        self.flow = flow
        self.mode: Any = None  # the OpCapture mode, when ops are caught
        self.warnings: list[str] = []
        # one entry per call, in call-start order
        self.mods: list[int] = []
        self.parents: list[int] = []
        self.training: list[bool] = []
        # per call a tuple of `Capture.take` entries: tuples of plain values, which the
        # garbage collector stops tracking, so a long trace does not slow its collections
        self.inputs: list[tuple[tuple[Any, ...], ...]] = []
        self.outputs: list[tuple[tuple[Any, ...], ...]] = []
        # sparse, by call index
        self.others: dict[int, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {}
        self.errors: dict[int, BaseException] = {}
        self.after: dict[int, int] = {}  # failed call -> the last call completed before it
        self.measures: dict[int, dict[str, Any]] = {}
        self.failed: list[int] = []
        self.failed_args: dict[int, tuple[Any, ...]] = {}
        self.live = False
        self._stack: list[int] = []
        self._inner: set[int] = set()  # calls with a module call or op inside
        self._states: dict[int, Any] = {}  # probe `before` results, by call
        self._paused: dict[int, Any] = {}  # calls that took the op-capture mode off the stack, or _PUSHED it
        self._on = False  # whether the op-capture mode is on the torch-function stack
        self._last_done = -1
        self._thread = threading.get_ident()
        self._installed: list[tuple[dict[str, Any], Any, Any]] = []  # (__dict__, _call_impl, _compiled_call_impl)
        coverage = REGISTRY.coverage
        for slot in slots:
            slot.cover = cover = coverage(type(slot.module))
            if probes:
                slot.probe = cover.hook("probe")

    @property
    def open_calls(self) -> list[int]:
        """The calls running now, innermost last (a live view, for `FlopCount`)."""
        return self._stack

    # -- installing -------------------------------------------------------------

    def install(self) -> None:
        """Give every module its recording `_call_impl` (compiled modules run eagerly)."""
        self.live = True
        make = self._factory()
        installed = self._installed
        for i, slot in enumerate(self.slots):
            m = slot.module
            d = m.__dict__
            saved = d.get("_call_impl", _ABSENT)
            compiled = d.get("_compiled_call_impl")
            installed.append((d, saved, compiled))
            d["_call_impl"] = make(i, slot, _eager_call(m))
            if compiled is not None:  # `module.compile()`: run the module itself, eagerly
                d["_compiled_call_impl"] = None

    def remove(self) -> None:
        """Put every module's `__dict__` back as it was; safe to call more than once."""
        self.live = False
        for d, saved, compiled in reversed(self._installed):
            if saved is _ABSENT:
                d.pop("_call_impl", None)
            else:
                d["_call_impl"] = saved
            if compiled is not None:
                d["_compiled_call_impl"] = compiled
        self._installed = []

    def close(self) -> None:
        """End the forward: close calls left open (after a KeyboardInterrupt, say),
        putting back a paused op-capture mode."""
        if self._stack:
            self._pop_to(self._stack[0])

    def _factory(self) -> Callable[[int, Slot, Callable[..., Any]], Callable[..., Any]]:
        """What makes the recording `_call_impl` of one slot: the bookkeeping inline,
        the rest (probes, paused op capture, failures) only where needed. The
        shared state sits in this scope, so making one costs little per module."""
        mods, parents, training, inputs, outputs = self.mods, self.parents, self.training, self.inputs, self.outputs
        stack, grab, leave, fail, before = self._stack, self._grab, self._leave, self._fail, self._before
        thread, get_ident = self._thread, threading.get_ident
        pausing = self.mode is not None
        rec = self

        def make(i: int, slot: Slot, call: Callable[..., Any]) -> Callable[..., Any]:
            module, name = slot.module, slot.name
            special = slot.probe is not None or pausing

            def recording_call(*args: Any, **kwargs: Any) -> Any:
                if not rec.live or get_ident() != thread:
                    return call(*args, **kwargs)
                k = len(mods)
                mods.append(i)
                parents.append(stack[-1] if stack else -1)
                training.append(module.training)
                stack.append(k)
                inputs.append(grab(k, name, args, kwargs))
                outputs.append(_NOTHING)
                if special:
                    before(k, slot, args, kwargs)
                try:
                    out = call(*args, **kwargs)
                except BaseException as exc:
                    fail(k, exc, args)
                    raise
                leave(k, slot, args, kwargs, out)
                return out

            return recording_call

        return make

    # -- recording ----------------------------------------------------------------

    def _grab(self, k: int, where: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], ...]:
        """The input entries of call `k`; a recording bug never breaks the forward."""
        try:
            if self.flow is None:
                if not kwargs and len(args) == 1 and isinstance(args[0], torch.Tensor):
                    return (self.capture.take("0", args[0], where),)
                ins = self._capture(args, k, 0)
                if kwargs:
                    ins += self._capture(kwargs, k, 0)
                return tuple(ins)
            if not self._on:
                return self._grab_flow(k, where, args, kwargs)
            with torch._C.DisableTorchFunction():  # our own torch calls are not the model's ops
                return self._grab_flow(k, where, args, kwargs)
        except Exception as exc:
            self._warn(f"recording the inputs of {type(self.slots[self.mods[k]].module).__name__} failed: {exc!r}")
            return ()

    def _grab_flow(
        self, k: int, where: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], ...]:
        """Inputs with their producers: one link per tensor that came from a known node."""
        flow = self.flow
        assert flow is not None
        parent = self.parents[k]
        if parent >= 0:
            self._inner.add(parent)
            if not kwargs and len(args) == 1 and isinstance(args[0], torch.Tensor):  # the common case
                t = args[0]
                entry = self.capture.take("0", t, where)
                flow.consume(t, k, entry[1], entry[2])
                return (entry,)
        tensors: Tensors = []
        ins = self._capture(args, k, 0, tensors)
        if kwargs:
            ins += self._capture(kwargs, k, 0, tensors)
        if parent < 0:
            for path, t in tensors:
                flow.claim(t, NodeRef("input", path), only_new=True)
        for (_, t), entry in zip(tensors, ins, strict=True):
            flow.consume(t, k, entry[1], entry[2])
        return tuple(ins)

    def _before(self, k: int, slot: Slot, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """The probe's `before`; and the op-capture mode on the torch-function stack
        exactly while a module's own code runs (off in leaves and Sequentials,
        so their torch calls cost nothing to catch)."""
        probe = slot.probe
        if probe is not None and probe.before is not None:
            self.live = False  # the probe's own module calls and torch calls are not the model's
            try:
                with torch._C.DisableTorchFunction():
                    self._states[k] = probe.before(slot.module, args, kwargs)
            except Exception as exc:
                self._warn(f"{slot.name}: measuring {type(slot.module).__name__} for its checks failed: {exc!r}")
            finally:
                self.live = True
        mode = self.mode
        if mode is None:
            return
        if slot.runs_code:  # the module's own code runs torch functions between modules: catch them
            if not self._on:
                torch._C._push_on_torch_function_stack(mode)
                self._on = True
                self._paused[k] = _PUSHED
        elif self._on:  # a leaf's torch calls (an `F.linear`) and a Sequential's chaining are not ops
            paused = _pause(mode)
            if paused is not None:
                self._on = False
                self._paused[k] = paused

    def _leave(self, k: int, slot: Slot, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        stack = self._stack
        if stack and stack[-1] == k and not self._paused:
            stack.pop()
        else:
            self._pop_to(k)
        try:
            flow = self.flow
            if flow is None:
                if isinstance(output, torch.Tensor):
                    self.outputs[k] = (self.capture.take("", output, slot.name),)
                else:
                    self.outputs[k] = tuple(self._capture(output, k, 1))
            elif self._on:
                with torch._C.DisableTorchFunction():  # our own torch calls are not the model's ops
                    self._leave_flow(k, slot, output)
            else:
                self._leave_flow(k, slot, output)
            if slot.probe is not None:
                self._measure(k, slot, args, kwargs, output)
        except Exception as exc:
            self._warn(f"recording the outputs of {slot.name or 'the model'} failed: {exc!r}")
        self._last_done = k

    def _leave_flow(self, k: int, slot: Slot, output: Any) -> None:
        """Outputs with this call as their producer (a call with calls or ops inside
        claims only new tensors); the root's are the model's outputs."""
        flow = self.flow
        assert flow is not None
        if isinstance(output, torch.Tensor) and self._stack:  # the common case
            self.outputs[k] = (self.capture.take("", output, slot.name),)
            flow.claim(output, k, k in self._inner)
            return
        tensors: Tensors = []
        outs = self.outputs[k] = tuple(self._capture(output, k, 1, tensors))
        only_new = k in self._inner
        for _, t in tensors:
            flow.claim(t, k, only_new)
        if not self._stack:
            for (path, t), entry in zip(tensors, outs, strict=True):
                flow.consume(t, NodeRef("output", path), entry[1], entry[2])

    def _measure(self, k: int, slot: Slot, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        """The family's probe on the live tensors; the module calls it makes are not recorded."""
        outs = self.outputs[k]
        if outs and outs[0][3].type == "meta":  # meta tensors have no values
            return
        assert slot.probe is not None
        self.live = False
        try:
            with torch._C.DisableTorchFunction():
                found = slot.probe.after(slot.module, args, kwargs, output, self._states.pop(k, None))
                defer = self.capture.defer
                self.measures[k] = {key: defer(v) if isinstance(v, torch.Tensor) else v for key, v in found.items()}
        except Exception as exc:
            self._warn(f"{slot.name}: measuring {type(slot.module).__name__} for its checks failed: {exc!r}")
        finally:
            self.live = True

    def _fail(self, k: int, exc: BaseException, args: tuple[Any, ...]) -> None:
        """The call raised: remember where (with its inputs, to say what the layer
        expected of them), and close it and any call left open inside it."""
        self._pop_to(k)
        self.errors[k] = exc
        self.failed_args[k] = args
        if self._last_done >= 0:
            self.after[k] = self._last_done
        self.failed.append(k)
        self._states.pop(k, None)

    def _pop_to(self, k: int) -> None:
        """Close call `k` and any call still open inside it."""
        stack = self._stack
        while stack:
            top = stack.pop()
            switched = self._paused.pop(top, None)
            if switched is _PUSHED:
                if _pause(self.mode) is not None:
                    self._on = False
            elif switched is not None:
                torch._C._push_on_torch_function_stack(switched)
                self._on = True
            if top == k:
                return

    def _capture(self, obj: Any, k: int, side: int, tensors: Tensors | None = None) -> list[tuple[Any, ...]]:
        """One entry per tensor of `obj` (see `Capture.take`), its other leaves
        noted by type; the tensors with their paths go to `tensors` when given."""
        take = self.capture.take
        if isinstance(obj, torch.Tensor):  # the common cases first, without the general walk
            if tensors is not None:
                tensors.append(("", obj))
            return [take("", obj, self.slots[self.mods[k]].name)]
        found: Tensors = [] if tensors is None else tensors
        start = len(found)
        if type(obj) is tuple and len(obj) <= 16 and all(isinstance(a, torch.Tensor) for a in obj):
            found.extend(zip(_PATHS, obj, strict=False))
        else:
            others: list[tuple[str, str]] = []
            flatten(obj, found, others)
            if others:
                self.others.setdefault(k, ([], []))[side].extend(others)
        where = self.slots[self.mods[k]].name
        return [take(path, t, where) for path, t in found[start:]]

    # -- ops between modules ------------------------------------------------------

    def on_op(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        """A torch function ran (from `OpCapture`): record it when the model's own
        code between modules ran it."""
        if not may_hold_tensors(out):  # before the thread check and the guard: a third of the calls stop here
            return
        if self.flow is None or not self._stack or not self.live or threading.get_ident() != self._thread:
            return
        k = self._stack[-1]
        if self.slots[self.mods[k]].leaf:
            return
        try:
            with torch._C.DisableTorchFunction():
                if self.flow.op(func, args, kwargs, out, k):
                    self._inner.add(k)
        except Exception as exc:
            self._warn(f"recording the operation {getattr(func, '__name__', func)} failed: {exc!r}")

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)


def _eager_call(module: nn.Module) -> Callable[..., Any]:
    """What runs `module` eagerly: its own `_call_impl` (hooks, then forward), or
    for a `torch.compile` wrapper the original module itself (never dynamo)."""
    if type(module).__name__ == "OptimizedModule":
        original = module.__dict__["_modules"].get("_orig_mod")
        if isinstance(original, nn.Module):
            return original.__call__
    return module._call_impl


def _pause(mode: Any) -> Any:
    """Take the op-capture mode off the torch-function stack while a leaf module
    runs, so the leaf's own torch calls (an `F.linear`, ...) cost nothing to
    catch; only when it is on top (a user's mode above it stays untouched)."""
    depth = torch._C._len_torch_function_stack()
    if depth and torch._C._get_function_stack_at(depth - 1) is mode:
        return torch._C._pop_torch_function_stack()
    return None
