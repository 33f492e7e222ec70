"""Data flow: which node produced each tensor and which nodes used it.

Producers and consumers are the model's inputs and outputs, module calls, and
functional operations run in the model's own code between modules, which a
`TorchFunctionMode` catches while the trace runs (and only then: nothing stays
installed). Operations inside leaf modules (the `F.linear` of an `nn.Linear`)
are not recorded: the module is the node. Tensors are tracked by identity,
through weak references, so the trace keeps none alive.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from .flatten import flatten
from .records import Edge, NodeRef, OpRecord, TensorInfo
from .tensor_capture import dtype_name, plain_shape

Tensors = list[tuple[str, torch.Tensor]]

_SYMBOLS = {
    "add": "+", "__add__": "+", "__radd__": "+", "__iadd__": "+=", "add_": "+=",
    "sub": "-", "__sub__": "-", "__rsub__": "-", "__isub__": "-=", "sub_": "-=",
    "mul": "×", "__mul__": "×", "__rmul__": "×", "__imul__": "×=", "mul_": "×=",
    "div": "÷", "__truediv__": "÷", "__rtruediv__": "÷", "__itruediv__": "÷=", "div_": "÷=",
    "matmul": "@", "__matmul__": "@", "__rmatmul__": "@", "neg": "-x", "__neg__": "-x",
    "pow": "**", "__pow__": "**", "__rpow__": "**",
}  # fmt: skip


Node = int | NodeRef  # a module call by its index, an op as ~index, or a model input or output


class Flow:
    """Producer map and links for one trace: the hot path stores plain tuples,
    `edges` turns them into `Edge`s once the trace is read."""

    def __init__(self) -> None:
        self._ops: list[tuple[Any, ...]] = []  # (name, label, parent, inputs, outputs), tensors as plain tuples
        # (consumer, producer, id of the tensor, shape, dtype), in the order they happened
        self.links: list[tuple[Node, Node, int, Any, torch.dtype]] = []
        self._producer: dict[int, tuple[Any, Node]] = {}

    def claim(self, t: torch.Tensor, node: Node, only_new: bool = False) -> None:
        """Mark `node` as the producer of `t` (`only_new`: unless one is known)."""
        if only_new:
            entry = self._producer.get(id(t))
            if entry is not None and entry[0]() is t:
                return
        self._producer[id(t)] = (weakref.ref(t), node)

    def source(self, t: torch.Tensor) -> Node | None:
        """The node that produced `t`, if the trace saw it."""
        entry = self._producer.get(id(t))
        return entry[1] if entry is not None and entry[0]() is t else None

    def consume(self, t: torch.Tensor, node: Node, shape: Any, dtype: torch.dtype) -> None:
        """A link from the producer of `t` (of this shape and dtype) to `node`."""
        entry = self._producer.get(id(t))
        if entry is not None and entry[0]() is t:
            self.links.append((node, entry[1], id(t), shape, dtype))

    def op(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, parent: int
    ) -> bool:
        """Record a functional operation; False when it produced no new tensor."""
        outs: Tensors = []
        if isinstance(out, torch.Tensor):
            outs.append(("", out))
        elif may_hold_tensors(out):
            flatten(out, outs, [])
        if not outs:
            return False
        ins = _inputs(args, kwargs)
        name = _op_name(func)
        if not _mutates(name) and _all_inputs(outs, ins):
            return False  # returned an input unchanged (x.contiguous() on a contiguous x, ...)
        node = ~len(self._ops)  # op j as the negative int ~j: a NodeRef only when edges are made
        for _, t in ins:
            self.consume(t, node, t.shape, t.dtype)
        for _, t in outs:
            self.claim(t, node)
        label = _label(name, args) if name == "__getitem__" else _SYMBOLS.get(name, name)
        self._ops.append((name, label, parent, _metas(ins), _metas(outs)))
        return True

    def ops(self) -> list[OpRecord]:
        """The operations as `OpRecord`s (made when the trace is first read)."""
        return [
            OpRecord(i, name, label, parent, _infos(ins), _infos(outs))
            for i, (name, label, parent, ins, outs) in enumerate(self._ops)
        ]

    def release(self) -> None:
        """Forget every tensor (the links keep only shapes)."""
        self._producer.clear()

    def edges(self) -> list[Edge]:
        """One edge per tensor per producer and consumer, in the order of use."""
        edges: list[Edge] = []
        seen: set[tuple[Node, Node, int]] = set()
        for dst, src, tid, shape, dtype in self.links:
            if src == dst or (src, dst, tid) in seen:
                continue
            seen.add((src, dst, tid))
            edges.append(Edge(_ref(src), _ref(dst), plain_shape(shape), dtype_name(dtype)))
        return edges


def may_hold_tensors(out: Any) -> bool:
    """Whether an op's result can be or hold a tensor (`x.size()`, `x.dim()`,
    `x.dtype`, `x.shape` cannot: no op for the data flow)."""
    return isinstance(out, _RESULTS) and type(out) is not torch.Size


_RESULTS = (torch.Tensor, tuple, list, dict)


def _inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensors:
    """The tensors of an op's arguments with their paths ("0.1" for the second
    positional argument, "1.dim" for a keyword), walking only containers."""
    ins: Tensors = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            ins.append((_ARG_PATHS[i] if i < len(_ARG_PATHS) else f"0.{i}", a))
        elif a is not None and not isinstance(a, _ATOMS):
            flatten(a, ins, [], f"0.{i}", 2)
    for key, v in kwargs.items():  # `dim=-1`, `dtype=...`: most keywords are atoms, not walked
        if isinstance(v, torch.Tensor):
            ins.append((f"1.{key}", v))
        elif v is not None and not isinstance(v, _ATOMS):
            flatten(v, ins, [], f"1.{key}", 2)
    return ins


_ARG_PATHS = tuple(f"0.{i}" for i in range(8))
_ATOMS = (int, float, bool, str, slice, torch.dtype, torch.device, torch.memory_format, type(Ellipsis))


def _ref(node: Node) -> NodeRef:
    """Call k is the int k, op j the int ~j (negative); inputs and outputs are NodeRefs."""
    if isinstance(node, int):
        return NodeRef.call(node) if node >= 0 else NodeRef.op(~node)
    return node


def _all_inputs(outs: Tensors, ins: Tensors) -> bool:
    """Whether every output is one of the inputs (the op made nothing new)."""
    if len(outs) == 1:
        out = outs[0][1]
        return any(t is out for _, t in ins)
    given = {id(t) for _, t in ins}
    return all(id(t) in given for _, t in outs)


def _op_name(func: Any) -> str:
    """`_name`, remembered per function (a bounded cache; unhashable callables are named each time)."""
    try:
        name = _NAMES.get(func)
    except TypeError:
        return _name(func)
    if name is None:
        name = _name(func)
        if len(_NAMES) < 4096:
            _NAMES[func] = name
    return name


_NAMES: dict[Any, str] = {}


class OpCapture(TorchFunctionMode):
    """Hands every torch function call to `on_op` after running it."""

    def __init__(self, on_op: Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any], Any], None]) -> None:
        super().__init__()
        self._on_op = on_op

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._on_op(func, args, kwargs, out)
        return out


def _name(func: Callable[..., Any]) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "__get__":  # a property such as Tensor.T or Tensor.mT
        owner = getattr(func, "__self__", None)
        name = getattr(owner, "__name__", name)
    return str(name)


def _mutates(name: str) -> bool:
    return (name.endswith("_") and not name.endswith("__")) or name.startswith("__i")


def _label(name: str, args: tuple[Any, ...]) -> str:
    if name == "__getitem__" and len(args) > 1:
        return _index_text(args[1])
    return _SYMBOLS.get(name, name)


def _index_text(index: Any) -> str:
    parts = index if isinstance(index, tuple) else (index,)
    return "[" + ", ".join(_index_part(p) for p in parts) + "]"


def _index_part(p: Any) -> str:
    if isinstance(p, slice):
        start = "" if p.start is None else str(p.start)
        stop = "" if p.stop is None else str(p.stop)
        return f"{start}:{stop}" if p.step is None else f"{start}:{stop}:{p.step}"
    if p is Ellipsis:
        return "..."
    if isinstance(p, torch.Tensor):
        return "mask" if p.dtype == torch.bool else "index"
    return repr(p)


def _metas(tensors: Tensors) -> list[tuple[str, Any, torch.dtype, torch.device]]:
    return [(path, t.shape, t.dtype, t.device) for path, t in tensors]


def _infos(metas: list[tuple[str, Any, torch.dtype, torch.device]]) -> tuple[TensorInfo, ...]:
    return tuple(
        TensorInfo(path, plain_shape(shape), dtype_name(dtype), str(device)) for path, shape, dtype, device in metas
    )
