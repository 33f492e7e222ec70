"""Pure output-size formulas for convolutions and pools, with readable working.

Each `*_length` function returns the number PyTorch computes; each `*_working`
function returns the same computation as text with the numbers filled in, for
check messages and error hints.
"""

from __future__ import annotations

from collections.abc import Sequence

Padding = int | str

CONV_FORMULA = "floor((L_in + 2*padding - dilation*(kernel_size-1) - 1)/stride + 1)"
CONV_T_FORMULA = "(L_in-1)*stride - 2*padding + dilation*(kernel_size-1) + output_padding + 1"
POOL_FORMULA = "floor((L_in + 2*padding - dilation*(kernel_size-1) - 1)/stride + 1)"
POOL_CEIL_FORMULA = "ceil((L_in + 2*padding - dilation*(kernel_size-1) - 1)/stride + 1)"


def conv_output_length(L_in: int, kernel_size: int, stride: int = 1, padding: Padding = 0, dilation: int = 1) -> int:
    """Output length of a convolution along one dimension.

    `L_out = floor((L_in + 2*padding - dilation*(kernel_size-1) - 1)/stride + 1)`;
    `padding="same"` keeps `L_in` (PyTorch allows it only with stride 1) and
    `"valid"` means no padding. The result may be < 1, which PyTorch rejects.
    """
    _require_positive(kernel_size=kernel_size, stride=stride, dilation=dilation)
    if padding == "same":
        return L_in
    pad = _numeric_padding(padding)
    return (L_in + 2 * pad - dilation * (kernel_size - 1) - 1) // stride + 1


def conv_working(L_in: int, kernel_size: int, stride: int, padding: Padding, dilation: int) -> str:
    """`conv_output_length`'s computation with the numbers filled in."""
    out = conv_output_length(L_in, kernel_size, stride, padding, dilation)
    if padding == "same":
        return f"padding='same' keeps L_in = {L_in}"
    pad = _numeric_padding(padding)
    return f"floor(({L_in} + 2*{pad} - {dilation}*({kernel_size}-1) - 1)/{stride} + 1) = {out}"


def conv_transpose_output_length(
    L_in: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    dilation: int = 1,
) -> int:
    """Output length of a transposed convolution along one dimension.

    `L_out = (L_in-1)*stride - 2*padding + dilation*(kernel_size-1) + output_padding + 1`.
    """
    _require_positive(kernel_size=kernel_size, stride=stride, dilation=dilation)
    return (L_in - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1


def conv_transpose_working(
    L_in: int, kernel_size: int, stride: int, padding: int, output_padding: int, dilation: int
) -> str:
    """`conv_transpose_output_length`'s computation with the numbers filled in."""
    out = conv_transpose_output_length(L_in, kernel_size, stride, padding, output_padding, dilation)
    return f"({L_in}-1)*{stride} - 2*{padding} + {dilation}*({kernel_size}-1) + {output_padding} + 1 = {out}"


def pool_output_length(
    L_in: int,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length of a max or average pool along one dimension.

    `floor((L_in + 2*padding - dilation*(kernel_size-1) - 1)/stride + 1)`, with
    `ceil` instead of `floor` when `ceil_mode=True`, in which case a last window
    that would start in the right padding is dropped (as PyTorch does).
    `stride=None` means `stride=kernel_size`, PyTorch's default.
    """
    stride = kernel_size if stride is None else stride
    _require_positive(kernel_size=kernel_size, stride=stride, dilation=dilation)
    span = L_in + 2 * padding - dilation * (kernel_size - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= L_in + padding:
        out -= 1
    return out


def pool_working(L_in: int, kernel_size: int, stride: int | None, padding: int, dilation: int, ceil_mode: bool) -> str:
    """`pool_output_length`'s computation with the numbers filled in."""
    s = kernel_size if stride is None else stride
    out = pool_output_length(L_in, kernel_size, s, padding, dilation, ceil_mode)
    rounding = "ceil" if ceil_mode else "floor"
    text = f"{rounding}(({L_in} + 2*{padding} - {dilation}*({kernel_size}-1) - 1)/{s} + 1)"
    if ceil_mode:
        plain = (L_in + 2 * padding - dilation * (kernel_size - 1) - 1 + s - 1) // s + 1
        if plain != out:
            text += f" = {plain}, minus a last window starting in the padding"
    return f"{text} = {out}"


def per_dim(value: int | str | Sequence[int] | None, n: int) -> tuple[int | str | None, ...]:
    """Expand a layer argument given as one value or one per dimension to `n` values."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == 1:
            return tuple(value) * n
        if len(value) != n:
            raise ValueError(f"expected 1 or {n} values, got {tuple(value)}")
        return tuple(value)
    return (value,) * n


def _numeric_padding(padding: Padding) -> int:
    if padding == "valid":
        return 0
    if isinstance(padding, str):
        raise ValueError(f"padding must be an int, 'same' or 'valid', got {padding!r}")
    return padding


def _require_positive(**values: int) -> None:
    for name, v in values.items():
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
