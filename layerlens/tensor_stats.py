"""Per-tensor statistics with few passes over the data.

On the CPU, reading a result costs no device synchronisation, so statistics
are computed at once, from four cheap passes (min and max, sum, 2-norm, zero
count) instead of the slow single-pass `std_mean` kernel, with numpy below
`NUMPY_MAX` elements and NaN/Inf counted only when the extremes or sums say
there are any. On other devices everything stays on
the device (min/max/mean/std and the counts), to be moved to the host in one
transfer at the end of the trace.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .records import TensorStats

# Above this |mean|/std ratio the sum-of-squares variance loses too many digits
# in float32; `torch.std` (two-pass, exact) is used instead.
_CANCELLATION_RATIO = 10.0


def summarisable(t: torch.Tensor) -> torch.Tensor | None:
    """`t` detached, as a real floating tensor, or None where stats do not apply
    (empty, complex, sparse, meta, quantized, nested)."""
    if t.layout != torch.strided or t.is_meta or t.is_quantized or t.is_nested:
        return None
    if t.numel() == 0 or t.is_complex():
        return None
    x = t.detach()
    return x if x.is_floating_point() else x.to(torch.float64)


# Up to this many elements numpy's reductions beat torch's: about 1 us of call
# overhead each against 4-5 us, so 23 us instead of 43 for 65,536 floats here;
# above it torch's threads win, from three threads on (on one thread numpy's
# passes take 0.8 ms for 2^21 floats against torch's 1.3, 6.5 against 22 for 2^23).
NUMPY_MAX = 2**19
_NUMPY_FLOATS = (torch.float32, torch.float64)


def cpu_stats(x: torch.Tensor, sample: int | None = None) -> TensorStats:
    """Statistics of a CPU tensor from `summarisable`, computed now.

    With `sample`, a tensor with more elements than that gets its min, max and
    NaN/Inf counts exactly, and its mean, std and zero fraction from an evenly
    strided sample of about `sample` elements (a quarter of the passes over
    the data: for monitoring, where the exact extremes and NaNs matter most).
    """
    n = x.numel()
    if x.dtype in _NUMPY_FLOATS and not x.is_neg():
        found = array_stats(x.numpy(), sample)
        if found is not None:
            return found
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    try:
        mn, mx = torch.aminmax(x)
    except RuntimeError:  # dtypes without min/max kernels (float8, ...)
        return cpu_stats(x.to(torch.float32))
    total = x.sum(dtype=acc)
    norm = torch.linalg.vector_norm(x, dtype=acc)
    lo, hi, s, q = torch.stack((mn.to(acc), mx.to(acc), total, norm)).tolist()
    # no zero can lie outside [min, max]; and bool().sum() beats count_nonzero's CPU kernel
    count_dtype = torch.int32 if n < 2**31 else torch.int64
    nonzero = n if lo > 0 or hi < 0 else int(x.bool().sum(dtype=count_dtype))
    mean = s / n
    nan = inf = 0
    if not (math.isfinite(s) and math.isfinite(q)):
        nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
    return TensorStats(lo, hi, mean, _std(n, mean, q, lambda: float(x.std())), nan, inf, 1.0 - nonzero / n)


def array_stats(a: np.ndarray, sample: int | None = None) -> TensorStats | None:
    """`cpu_stats` of a CPU tensor's numpy view, where numpy is the faster
    (None above `NUMPY_MAX` elements with more than two threads: torch's then)."""
    if sample is not None and a.size > sample:
        return _sampled_stats(a, sample)
    if a.size <= NUMPY_MAX or torch.get_num_threads() <= 2:
        return _numpy_stats(a)
    return None


def _sampled_stats(a: np.ndarray, sample: int) -> TensorStats:
    a = a.reshape(-1)
    lo, hi = float(np.minimum.reduce(a)), float(np.maximum.reduce(a))  # NaN and Inf show here, exactly
    part = _numpy_stats(a[:: max(1, a.size // sample)])
    nan = inf = 0
    if not (math.isfinite(lo) and math.isfinite(hi)):
        nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    return TensorStats(lo, hi, part.mean, part.std, nan, inf, part.zero_fraction)


def _numpy_stats(a: np.ndarray) -> TensorStats:
    """The same statistics with numpy (NaN/Inf propagate, silently)."""
    with np.errstate(all="ignore"):
        return _numpy_stats_of(a)


def _numpy_stats_of(a: np.ndarray) -> TensorStats:
    """Four passes: min, max, and the sum and sum of squares as BLAS dot products
    (a sum at the speed of memory), plus a zero count only where 0 lies in [min, max]."""
    flat = a.reshape(-1)
    n = flat.size
    lo, hi = float(np.minimum.reduce(flat)), float(np.maximum.reduce(flat))
    finite = math.isfinite(lo) and math.isfinite(hi)
    s = float(np.dot(flat, ones(n, flat.dtype)))
    if finite and not math.isfinite(s):  # float32 sums of huge finite values overflow
        s = float(flat.sum(dtype=np.float64))
    q = math.sqrt(float(np.dot(flat, flat)))
    nonzero = n if lo > 0 or hi < 0 else n - int(np.count_nonzero(flat == 0))
    nan = inf = 0
    if not finite:
        nan, inf = int(np.isnan(flat).sum()), int(np.isinf(flat).sum())
    mean = s / n
    std = _std(n, mean, q, lambda: float(np.std(flat.astype(np.float64), ddof=1)))
    return TensorStats(lo, hi, mean, std, nan, inf, 1.0 - nonzero / n)


_ONES: dict[np.dtype[Any], np.ndarray] = {}


def ones(n: int, dtype: np.dtype[Any]) -> np.ndarray:
    """A vector of n ones, a view of one cached array per dtype (grown as needed)."""
    cached = _ONES.get(dtype)
    if cached is None or cached.size < n:
        cached = _ONES[dtype] = np.ones(max(n, 4096), dtype)
    return cached[:n]


def _std(n: int, mean: float, q: float, exact: Callable[[], float]) -> float:
    """The sample std from the mean and the 2-norm `q`; `exact()` (a two-pass std)
    where the sum of squares overflowed or would cancel too many digits."""
    if n == 1:
        return 0.0
    var = (q * q - n * mean * mean) / (n - 1) if math.isfinite(q) and math.isfinite(mean) else math.nan
    if not math.isfinite(var) or var <= 0 or mean * mean > _CANCELLATION_RATIO**2 * var:
        return exact()
    return math.sqrt(var)


class StatsBatch:
    """Statistics of many small float32 CPU tensors in a few numpy calls.

    Per tensor, numpy's five reductions cost ~1 us of call overhead each, far
    more than the work on a few thousand elements. `add` copies the values into
    one staging buffer (so a later in-place edit cannot change them), and every
    `CAPACITY` elements, or at `flush`, segmented reductions (`reduceat`, in
    float64) give all of them at once; each handle's `stats` is set then. The
    buffer (from `FIRST` elements, doubling up to `CAPACITY`) is the memory this
    costs, whatever the model's size. Each handle also gets `squares`, the sum of
    its squares.
    """

    CAPACITY = 2**20
    FIRST = 2**14  # the first buffer's size: 64 KiB from the heap, where 4 MiB would be fresh pages to fault in
    LARGEST = 8192  # tensors up to this many elements are batched
    FEW = 32  # up to this many staged tensors, their results are made one by one (see `_each`)

    def __init__(self) -> None:
        self._buf = np.empty(0, np.float32)
        self._used = 0
        self._starts: list[int] = []
        self._handles: list[Any] = []

    def add(self, a: np.ndarray, handle: Any) -> None:
        """Stage the float32 values `a` (any shape); `handle.stats` is set at the next flush."""
        n = a.size
        if self._used + n > self._buf.size:
            if self._buf.size < self.CAPACITY:  # grows, keeping what is staged: one flush per trace, not per doubling
                size = min(self.CAPACITY, max(self.FIRST, 2 * self._buf.size, self._used + n))
                grown = np.empty(size, np.float32)
                grown[: self._used] = self._buf[: self._used]
                self._buf = grown
            if self._used + n > self._buf.size:
                self.flush()
        self._buf[self._used : self._used + n] = a.reshape(-1)
        self._starts.append(self._used)
        self._used += n
        self._handles.append(handle)

    def finite(self) -> bool:
        """Whether everything staged since the last flush is free of NaN/Inf: one sum
        (a float32 overflow reads as not finite, which only costs a `flush`)."""
        with np.errstate(all="ignore"):
            return math.isfinite(float(np.add.reduce(self._buf[: self._used])))

    def flush(self) -> None:
        """Compute the statistics of everything staged, and empty the buffer. The
        std follows `_std` in float64 arrays, so the Python loop only makes the
        results; a tensor with NaN/Inf or a std `_std` would recompute goes
        through `_stats`, as one alone would."""
        if not self._starts:
            return
        data = self._buf[: self._used]
        starts = np.asarray(self._starts)
        with np.errstate(all="ignore"):
            lo = np.minimum.reduceat(data, starts)
            hi = np.maximum.reduceat(data, starts)
            wide = data.astype(np.float64)  # one widening pass for both sums, not one per reduction
            sums = np.add.reduceat(wide, starts)
            squares = np.add.reduceat(np.multiply(wide, wide, out=wide), starts)
            zeros = np.add.reduceat((data == 0).view(np.uint8), starts, dtype=np.int32)  # <= CAPACITY: no overflow
            if len(self._starts) <= self.FEW:
                self._each(data, lo.tolist(), hi.tolist(), sums.tolist(), squares.tolist(), zeros.tolist())
                return
            n = np.diff(np.append(starts, self._used))
            mean = sums / n
            q = np.sqrt(squares)
            var = (q * q - n * mean * mean) / np.maximum(n - 1, 1)
            plain = np.isfinite(lo) & np.isfinite(hi)
            plain &= (n == 1) | (np.isfinite(var) & (var > 0) & ~(mean * mean > _CANCELLATION_RATIO**2 * var))
            std = np.where(n == 1, 0.0, np.sqrt(var))
            fraction = zeros / n
            columns = zip(lo.tolist(), hi.tolist(), mean.tolist(), std.tolist(), fraction.tolist(), strict=True)
            for j, (handle, ok, sq, row) in enumerate(
                zip(self._handles, plain.tolist(), squares.tolist(), columns, strict=True)
            ):
                if ok:
                    handle.stats = TensorStats(row[0], row[1], row[2], row[3], 0, 0, row[4])
                else:
                    a = data[starts[j] : starts[j] + n[j]]
                    handle.stats = self._stats(a, row[0], row[1], float(sums[j]), sq, int(zeros[j]))
                handle.squares = sq
        self._emptied()

    def _each(self, data: np.ndarray, *columns: list[Any]) -> None:
        """`flush`'s results one handle at a time, from the segments' reductions:
        for a few tensors, cheaper than the two dozen array calls that vectorise it."""
        ends = [*self._starts[1:], self._used]
        for handle, start, end, lo, hi, s, sq, zeros in zip(self._handles, self._starts, ends, *columns, strict=True):
            handle.stats = self._stats(data[start:end], lo, hi, s, sq, zeros)
            handle.squares = sq
        self._emptied()

    def _emptied(self) -> None:
        self._used = 0
        self._starts, self._handles = [], []

    @staticmethod
    def _stats(a: np.ndarray, lo: float, hi: float, s: float, sq: float, zeros: int) -> TensorStats:
        """One tensor's TensorStats from its segment's reductions (the rules of
        `_numpy_stats_of`; called under `np.errstate(all="ignore")`)."""
        n = a.size
        nan = inf = 0
        if not (math.isfinite(lo) and math.isfinite(hi)):
            nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        mean = s / n
        q = math.sqrt(sq) if sq >= 0 else math.nan
        std = _std(n, mean, q, lambda: float(np.std(a.astype(np.float64), ddof=1)))
        return TensorStats(lo, hi, mean, std, nan, inf, zeros / n)


def device_reductions(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """On-device `[min, max, mean, std]` and `[nonzero, nan, inf]` of a tensor from
    `summarisable`; nothing is read, so nothing waits."""
    try:
        mn, mx = torch.aminmax(x)
    except RuntimeError:
        return device_reductions(x.to(torch.float32))
    if x.numel() > 1:
        std, mean = torch.std_mean(x)
    else:
        mean = x.reshape(())
        std = torch.zeros_like(mean)
    counts = torch.stack((torch.count_nonzero(x), torch.isnan(x).sum(), torch.isinf(x).sum()))
    return torch.stack((mn, mx, mean, std)), counts


def host_stats(vec: list[float], counts: list[float], numel: int) -> TensorStats:
    """TensorStats from the host copies of `device_reductions`' results."""
    mn, mx, mean, std = vec
    nonzero, nan, inf = counts
    return TensorStats(mn, mx, mean, std, int(nan), int(inf), 1.0 - nonzero / numel)


# -- sampling helpers for measures of large tensors (watch, health checks) ----------

# Large outputs are measured on an evenly strided sample of about this many elements.
SAMPLE = 4096


def as_numpy(t: torch.Tensor) -> np.ndarray | None:
    """A numpy view of a CPU float tensor (numpy's reductions cost a quarter of
    torch's per call there); None elsewhere."""
    plain = type(t) is torch.Tensor or type(t) is torch.nn.Parameter  # not a subclass (a DTensor has no numpy)
    dense = t.layout is torch.strided and not (t.is_neg() or t.is_nested)
    if plain and t.is_cpu and t.dtype in _NUMPY_FLOATS and dense:
        return t.detach().numpy()
    return None


def strided(t: torch.Tensor, n: int = SAMPLE) -> torch.Tensor:
    """About `n` evenly spaced elements of `t` (all of them when it is small)."""
    flat = t.reshape(-1)
    return flat if flat.numel() <= n else flat[:: flat.numel() // n]


def strided_np(a: np.ndarray, n: int = SAMPLE) -> np.ndarray:
    """`strided` for a numpy array."""
    flat = a.reshape(-1)
    return flat if flat.size <= n else flat[:: flat.size // n]
