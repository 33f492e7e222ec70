"""`trace()`: hooks in, one forward, hooks out, state restored, records built.

The order matters and is the whole design: validate everything before
touching the model; snapshot its state; run the forward with the recorder
installed (and the families' trace contexts entered); remove the recorder;
move captured statistics to the host in one go; run the inspectors while the
model is still in the mode it ran in; then restore the state, whatever
happened.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from typing_extensions import Unpack

from ._version import __version__
from .data_flow import Flow, OpCapture
from .errors import LayerlensWarning, TraceError
from .failure import describe_inputs, expected_by, failure_message, input_hint, size_culprit
from .flop_count import FlopCount, per_call
from .in_trace import running_trace
from .inputs import keyword_batch, on_device, positional_inputs, positional_names
from .layers.registry import REGISTRY
from .model_index import ModelIndex
from .model_plan import plan, strangers_called
from .model_state import Restored, StateGuard
from .options import TraceKeywords, TraceOptions
from .quiet_gc import quiet_collector
from .record_builder import build_records, describe
from .recorder import Recorder
from .tensor_capture import Capture
from .trace_object import Trace, TraceMeta


def trace(
    model: nn.Module,
    x: Any = None,
    *,
    input_data: Any = None,
    kwargs: Mapping[str, Any] | None = None,
    options: TraceOptions | None = None,
    **keywords: Unpack[TraceKeywords],
) -> Trace:
    """Run one forward pass of `model` and record every module call.

    `x` (or `input_data=`, torchinfo's name for it) is a tensor or a tuple of
    positional inputs; `kwargs` are keyword inputs for `model.forward` (a dict as
    `x` whose keys all name forward's parameters, a tokenizer's output, is read
    as keyword inputs too, as torchinfo reads it). Instead
    of `x`, `input_size=` (a shape or list of shapes) and `dtypes=` make random
    inputs on the model's device (or on `device=`, where given inputs are moved).
    The other keywords are those of `TraceOptions` (or pass `options=`):
    `values="stats"|"full"|None`, `mode="train"|"eval"`, `grad=`, `flops=`,
    `depth=`, `max_bytes=`, `inspectors=`, `snapshot_params=`, `seed=`, `ops=`.
    The model's parameters, buffers, train/eval flags, RNG states and hooks are
    as before afterwards; parameters edited in place by the forward are only
    restored with `snapshot_params=True` (otherwise reported as a warning).
    Raises `TraceError` if the forward raises.
    """
    _check_model(model)
    opts = TraceOptions.merge(options, **keywords)
    if input_data is not None:
        if x is not None:
            raise TypeError("trace() takes x or input_data=, not both (input_data is another name for x)")
        x = input_data
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise TypeError(f"kwargs must be a dict of keyword inputs for forward, got {type(kwargs).__name__}")
    return _trace(model, x, dict(kwargs or {}), opts)


# One trace at a time in a process: a trace changes process-wide state for its
# duration (the RNG streams, PyTorch's fused fast-path switch), which two
# concurrent traces would restore over each other. Re-entrant, so a forward
# may trace something itself.
_ONE_AT_A_TIME = threading.RLock()


def _trace(model: nn.Module, x: Any, root_kwargs: dict[str, Any], opts: TraceOptions) -> Trace:
    """`trace` once its arguments are checked."""
    model, notes = _unwrapped(model)
    original = model
    model, index, lazy = _traceable(model)
    notes += lazy
    if x is None and opts.input_size is None and _has_no_forward(model):
        notes.append(f"{type(model).__name__} has no forward of its own: nothing ran; its parameters are counted")
        _emit(notes)
        return Trace([], _meta(model, index, opts), notes)
    batch = keyword_batch(model, x)
    if batch is not None:  # a tokenizer's output: keyword inputs
        x, root_kwargs = None, _merged(batch, root_kwargs)
    args = positional_inputs(x, opts.input_size, opts.dtypes, model, opts.seed, opts.device, root_kwargs)
    if opts.device is not None:
        args, root_kwargs = on_device((args, root_kwargs), opts.device)
    with _ONE_AT_A_TIME, quiet_collector() as settle:
        REGISTRY.resolve_pending()
        capture = Capture(opts.values, opts.max_bytes, batch=True)
        flow = Flow() if opts.ops else None
        slots, strangers = plan(index)
        recorder = Recorder(slots, capture, probes=opts.values is not None, flow=flow)
        guard = StateGuard(index.named, opts.snapshot_params)
        counter = FlopCount(recorder.open_calls) if opts.flops else None
        failure: BaseException | None = None
        settle()  # the plan, hooks and snapshot are old objects to the collector from here on
        try:
            if opts.mode is not None:  # the flags themselves: a train() override's side effects would stay
                for _, m in index.named:
                    m.training = opts.mode == "train"
            with _family_contexts(index):
                failure = _run(model, args, root_kwargs, recorder, opts.grad, counter)
            if flow is not None:
                flow.release()
            capture.finalize()
            records, broken = build_records(recorder, capture, index, opts.inspectors)
            if counter is not None:
                for record, n in zip(records, per_call(counter.own, recorder.parents), strict=True):
                    record.flops = n
        finally:
            recorder.remove()
            restored = guard.restore()
    notes += strangers_called(strangers, recorder) + recorder.warnings + capture.warnings + broken
    notes += counter.notes() if counter is not None else []
    notes += _restore_notes(restored, model is original)
    result = Trace(
        records,
        _meta(model, index, opts),
        notes,
        ops=flow.ops if flow is not None else (),  # made when first read
        edges=flow.edges if flow is not None else (),
    )
    result.depth = opts.depth
    if failure is not None:
        if not isinstance(failure, Exception):  # KeyboardInterrupt, SystemExit: the model is restored, go on
            raise failure
        described = describe_inputs(args, root_kwargs)
        raise _trace_error(result, recorder, failure, input_hint(args, root_kwargs), described) from failure
    _emit(notes)
    return result


def _merged(batch: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A dict given as `x` and the `kwargs=` beside it, as one set of keyword inputs."""
    both = sorted(batch.keys() & kwargs.keys())
    if both:
        raise TypeError(f"trace() was given {', '.join(both)} twice: in the dict of inputs and in kwargs=")
    return {**batch, **kwargs}


def _restore_notes(restored: Restored, own_model: bool) -> list[str]:
    """What the restore could not make exactly as before, said plainly."""
    if not own_model:  # a copy was traced (lazy modules): the model itself was never touched
        return []
    notes = [f"could not restore the model exactly: {p}" for p in restored.problems]
    if restored.edited_params:
        notes.append(
            f"the forward edited parameters in place ({', '.join(restored.edited_params)}); they could not be "
            "restored: trace with snapshot_params=True to have them restored"
        )
    return notes


def _has_no_forward(model: nn.Module) -> bool:
    """A container such as an `nn.ModuleList`, or a module holding only parameters."""
    return getattr(type(model), "forward", None) is nn.Module.forward


def _unwrapped(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """A `torch.compile`d model is traced through the module it wraps, eagerly:
    dynamo never sees layerlens, and the compiled model is left as it was."""
    original = getattr(model, "_orig_mod", None)
    if type(model).__name__ == "OptimizedModule" and isinstance(original, nn.Module):
        note = (
            f"a torch.compile'd {type(original).__name__}: traced through its original module, eagerly "
            "(the compiled code was not run; its numbers can differ from the eager ones in the last bits)"
        )
        inner, more = _unwrapped(original)
        return inner, [note, *more]
    return model, []


@contextlib.contextmanager
def _family_contexts(index: ModelIndex) -> Any:
    """Enter each `during_trace` context of the families in the model, once each."""
    with contextlib.ExitStack() as stack:
        entered = set()
        for cls in {type(m) for _, m in index.named}:
            enter = REGISTRY.coverage(cls).hook("during_trace")
            if enter is not None and enter not in entered:
                entered.add(enter)
                stack.enter_context(enter())
        yield


def _check_model(model: Any) -> None:
    if isinstance(model, nn.Module):
        return
    hint = ""
    if isinstance(model, torch.Tensor):
        hint = " (a tensor: did you pass model(x) instead of model?)"
    elif isinstance(model, type) and issubclass(model, nn.Module):
        hint = f" (the class {model.__name__}: pass an instance, e.g. {model.__name__}(...))"
    raise TypeError(f"trace() expects an nn.Module as its first argument, got {type(model).__name__}{hint}")


def _traceable(model: nn.Module) -> tuple[nn.Module, ModelIndex, list[str]]:
    """The model to run and its index. Lazy modules initialise themselves in
    their first forward, which would change the model: such a model is copied."""
    index = ModelIndex(model)
    lazy = [n for n, m in index.named if _uninitialized(m)]
    if not lazy:
        index.param_counts(model)  # counted now, as the model is before the forward (which may add modules)
        return model, index, []
    note = (
        f"uninitialized lazy modules ({', '.join(n or '(root)' for n in lazy)}) would be initialised by "
        "a forward pass: a copy of the model was traced, and the model itself is unchanged"
    )
    copied = copy.deepcopy(model, _fresh_uninitialized(index))
    return copied, ModelIndex(copied), [note]


def _fresh_uninitialized(index: ModelIndex) -> dict[int, Any]:
    """A deepcopy memo giving each uninitialized parameter or buffer a new one of its
    kind (they refuse to be copied: `LazyBatchNorm`'s running statistics)."""
    lazy = (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer)
    memo: dict[int, Any] = {}
    for _, m in index.named:
        for t in (*m._parameters.values(), *m._buffers.values()):
            if isinstance(t, lazy):
                make: Any = type(t)
                memo[id(t)] = make(requires_grad=t.requires_grad, device=t.device, dtype=t.dtype)
    return memo


def _uninitialized(module: nn.Module) -> bool:
    lazy: Any = module
    return isinstance(module, nn.modules.lazy.LazyModuleMixin) and bool(lazy.has_uninitialized_params())


def _run(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    recorder: Recorder,
    grad: bool,
    counter: FlopCount | None = None,
) -> BaseException | None:
    """One forward with the recorder installed; returns what it raised (a
    KeyboardInterrupt included: the caller restores the model, then re-raises)."""
    if recorder.flow is not None:  # before install: the wrappers put it on the stack while modules' code runs
        recorder.mode = OpCapture(recorder.on_op)
    recorder.install()
    counting = counter if counter is not None else contextlib.nullcontext()
    try:
        with torch.enable_grad() if grad else torch.no_grad(), running_trace(), counting:
            try:
                model(*args, **kwargs)
            finally:
                recorder.close()  # takes the op-capture mode off the stack, whatever happened
    except BaseException as exc:
        return exc
    finally:
        recorder.remove()
    return None


def _meta(model: nn.Module, index: ModelIndex, opts: TraceOptions) -> TraceMeta:
    total, trainable = index.param_counts(model)
    return TraceMeta(
        model_type=type(model).__name__,
        total_params=total,
        trainable_params=trainable,
        param_bytes=sum(p.numel() * p.element_size() for p in index.unique_params),
        buffer_bytes=sum(
            b.numel() * b.element_size() for _, m in index.named for b in m._buffers.values() if b is not None
        ),
        values=opts.values,
        mode=opts.mode,
        grad=opts.grad,
        torch_version=torch.__version__,
        layerlens_version=__version__,
        input_names=positional_names(model),
    )


def _trace_error(
    partial: Trace, recorder: Recorder, error: Exception, hint: str | None, inputs: str | None = None
) -> TraceError:
    """Find the innermost call that raised this error and explain it."""
    k = _failing_call(recorder, error)
    if k is None:
        partial.error = f"forward failed before any module ran: {describe(error)}"
        if hint:
            partial.error += f"\n  hint: {hint}"
        return TraceError(partial.error, partial, None)
    record = partial.records[k]
    expected = expected_by(recorder.slots[recorder.mods[k]].module, recorder.failed_args.get(k, ()))
    if expected:
        record.details["expected"] = expected
    after = recorder.after.get(k)
    last = partial.records[after] if after is not None else None
    culprit = size_culprit(partial.records, k, error)
    if culprit is not None:
        record.details["culprit"] = culprit.name
    partial.error = failure_message(record, error, expected, last, hint, culprit, inputs)
    return TraceError(partial.error, partial, record)


def _failing_call(recorder: Recorder, error: BaseException) -> int | None:
    """The first (innermost) failed call whose exception is, or led to, `error`."""
    chain: list[BaseException] = []
    e: BaseException | None = error
    while e is not None and len(chain) < 16:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for k in recorder.failed:
        if any(recorder.errors[k] is c for c in chain):
            return k
    return recorder.failed[-1] if recorder.failed else None


def _emit(notes: list[str]) -> None:
    for note in notes:
        warnings.warn(note, LayerlensWarning, stacklevel=3)
