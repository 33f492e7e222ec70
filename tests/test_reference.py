"""The numpy references against PyTorch, over random layer configurations
(hypothesis): this tests our references and our understanding at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from layerlens import reference as ref

SETTINGS = settings(max_examples=40, deadline=None)
dtypes = st.sampled_from([torch.float32, torch.float64])


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


def _close(actual: np.ndarray, expected: torch.Tensor, dtype: torch.dtype = torch.float64) -> None:
    rtol, atol = (1e-10, 1e-12) if dtype == torch.float64 else (1e-4, 1e-5)
    np.testing.assert_allclose(actual, _np(expected), rtol=rtol, atol=atol)


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


# -- linear, activations, embedding ------------------------------------------------------


@SETTINGS
@given(batch=st.lists(st.integers(1, 4), min_size=0, max_size=2), n_in=st.integers(1, 8), n_out=st.integers(1, 8),
       bias=st.booleans(), dtype=dtypes, seed=st.integers(0, 2**16))  # fmt: skip
def test_linear(batch: list[int], n_in: int, n_out: int, bias: bool, dtype: torch.dtype, seed: int) -> None:
    _seeded(seed)
    layer = nn.Linear(n_in, n_out, bias=bias).to(dtype)
    x = torch.randn(*batch, n_in, dtype=dtype)
    b = _np(layer.bias) if bias else None
    _close(ref.linear(_np(x), _np(layer.weight), b), layer(x), dtype)


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), dim=st.integers(-1, 0), dtype=dtypes,
       seed=st.integers(0, 2**16))  # fmt: skip
def test_activations(shape: list[int], dim: int, dtype: torch.dtype, seed: int) -> None:
    _seeded(seed)
    x = torch.randn(*shape, dtype=dtype) * 10
    _close(ref.sigmoid(_np(x)), torch.sigmoid(x), dtype)
    _close(ref.tanh(_np(x)), torch.tanh(x), dtype)
    _close(ref.relu(_np(x)), torch.relu(x), dtype)
    _close(ref.softmax(_np(x), axis=dim), torch.softmax(x, dim=dim), dtype)


@SETTINGS
@given(n=st.integers(1, 20), dim=st.integers(1, 6), shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       pad=st.booleans(), seed=st.integers(0, 2**16))  # fmt: skip
def test_embedding(n: int, dim: int, shape: list[int], pad: bool, seed: int) -> None:
    _seeded(seed)
    layer = nn.Embedding(n, dim, padding_idx=0 if pad else None)
    idx = torch.randint(0, n, shape)
    _close(ref.embedding(idx.numpy(), _np(layer.weight), layer.padding_idx), layer(idx), torch.float32)
    with pytest.raises(IndexError):
        ref.embedding(np.array([n]), _np(layer.weight))


# -- convolutions and pools -----------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@SETTINGS
@given(
    groups=st.integers(1, 3), per_in=st.integers(1, 2), per_out=st.integers(1, 2), L=st.integers(1, 16),
    k=st.integers(1, 4), s=st.integers(1, 3), p=st.sampled_from([0, 1, 2, "same", "valid"]), d=st.integers(1, 2),
    bias=st.booleans(), mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    dtype=dtypes, batched=st.booleans(), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_conv1d(groups: int, per_in: int, per_out: int, L: int, k: int, s: int, p: object, d: int, bias: bool,
                mode: str, dtype: torch.dtype, batched: bool, seed: int) -> None:  # fmt: skip
    if p == "same":
        s = 1
    pad = 0 if p in ("same", "valid") else int(p)  # type: ignore[call-overload]
    assume(L + 2 * pad >= d * (k - 1) + 1 if p != "same" else True)
    assume(mode != "reflect" or pad < L)
    _seeded(seed)
    conv = nn.Conv1d(groups * per_in, groups * per_out, k, s, p, d, groups, bias, mode).to(dtype)  # type: ignore[arg-type]
    x = torch.randn(2, groups * per_in, L, dtype=dtype) if batched else torch.randn(groups * per_in, L, dtype=dtype)
    try:
        want = conv(x)
    except (RuntimeError, NotImplementedError):
        assume(False)
    b = _np(conv.bias) if bias else None
    got = ref.conv1d(_np(x), _np(conv.weight), b, s, p, d, groups, mode)  # type: ignore[arg-type]
    _close(got, want, dtype)


@SETTINGS
@given(
    groups=st.integers(1, 2), H=st.integers(2, 9), W=st.integers(2, 9), kh=st.integers(1, 3), kw=st.integers(1, 3),
    s=st.tuples(st.integers(1, 2), st.integers(1, 2)), p=st.sampled_from([0, 1, (1, 0), "same", "valid"]),
    d=st.tuples(st.integers(1, 2), st.integers(1, 2)), bias=st.booleans(), dtype=dtypes, seed=st.integers(0, 2**16),
)  # fmt: skip
@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_conv2d(groups: int, H: int, W: int, kh: int, kw: int, s: tuple[int, int], p: object,
                d: tuple[int, int], bias: bool, dtype: torch.dtype, seed: int) -> None:  # fmt: skip
    if p == "same":
        s = (1, 1)
    _seeded(seed)
    conv = nn.Conv2d(2 * groups, 2 * groups, (kh, kw), s, p, d, groups, bias).to(dtype)  # type: ignore[arg-type]
    x = torch.randn(2, 2 * groups, H, W, dtype=dtype)
    try:
        want = conv(x)
    except RuntimeError:
        assume(False)
    b = _np(conv.bias) if bias else None
    _close(ref.conv2d(_np(x), _np(conv.weight), b, s, p, d, groups), want, dtype)  # type: ignore[arg-type]


@SETTINGS
@given(L=st.integers(1, 20), k=st.integers(1, 5), s=st.integers(1, 4), p=st.integers(0, 2), d=st.integers(1, 3),
       ceil=st.booleans(), dtype=dtypes, seed=st.integers(0, 2**16))  # fmt: skip
def test_max_pool1d(L: int, k: int, s: int, p: int, d: int, ceil: bool, dtype: torch.dtype, seed: int) -> None:
    assume(2 * p <= k and L + 2 * p >= d * (k - 1) + 1)
    _seeded(seed)
    x = torch.randn(2, 3, L, dtype=dtype)
    try:
        want = nn.MaxPool1d(k, s, p, d, ceil_mode=ceil)(x)
    except RuntimeError:
        assume(False)
    _close(ref.max_pool1d(_np(x), k, s, p, d, ceil), want, dtype)


@SETTINGS
@given(L=st.integers(1, 20), k=st.integers(1, 5), s=st.integers(1, 4), p=st.integers(0, 2), ceil=st.booleans(),
       include=st.booleans(), dtype=dtypes, seed=st.integers(0, 2**16))  # fmt: skip
def test_avg_pool1d(L: int, k: int, s: int, p: int, ceil: bool, include: bool, dtype: torch.dtype, seed: int) -> None:
    assume(2 * p <= k and L + 2 * p >= k)
    _seeded(seed)
    x = torch.randn(2, 3, L, dtype=dtype)
    try:
        want = nn.AvgPool1d(k, s, p, ceil_mode=ceil, count_include_pad=include)(x)
    except RuntimeError:
        assume(False)
    _close(ref.avg_pool1d(_np(x), k, s, p, ceil, include), want, dtype)


@SETTINGS
@given(H=st.integers(1, 9), W=st.integers(1, 9), k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       s=st.tuples(st.integers(1, 3), st.integers(1, 3)), p=st.tuples(st.integers(0, 1), st.integers(0, 1)),
       ceil=st.booleans(), include=st.booleans(), seed=st.integers(0, 2**16))  # fmt: skip
def test_pools_2d(H: int, W: int, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int], ceil: bool,
                  include: bool, seed: int) -> None:  # fmt: skip
    assume(all(2 * p[i] <= k[i] for i in range(2)) and H + 2 * p[0] >= k[0] and W + 2 * p[1] >= k[1])
    _seeded(seed)
    x = torch.randn(2, 2, H, W, dtype=torch.float64)
    try:
        want_max = nn.MaxPool2d(k, s, p, ceil_mode=ceil)(x)
        want_avg = nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include)(x)
    except RuntimeError:
        assume(False)
    _close(ref.max_pool2d(_np(x), k, s, p, 1, ceil), want_max)
    _close(ref.avg_pool2d(_np(x), k, s, p, ceil, include), want_avg)


# -- attention -------------------------------------------------------------------------------


@SETTINGS
@given(heads=st.integers(1, 3), d=st.integers(1, 4), n=st.integers(1, 3), length=st.integers(1, 5),
       source=st.integers(1, 5), kdim=st.sampled_from([None, 3]), bias=st.booleans(), masked=st.booleans(),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_multi_head_attention(heads: int, d: int, n: int, length: int, source: int, kdim: int | None, bias: bool,
                              masked: bool, seed: int) -> None:  # fmt: skip
    _seeded(seed)
    e = heads * d
    layer = nn.MultiheadAttention(e, heads, bias=bias, kdim=kdim, vdim=kdim, batch_first=True).double()
    q = torch.randn(n, length, e, dtype=torch.float64)
    k = torch.randn(n, source, kdim or e, dtype=torch.float64)
    v = torch.randn(n, source, kdim or e, dtype=torch.float64)
    mask = torch.randn(length, source, dtype=torch.float64) if masked else None
    if mask is not None:
        mask[:, 0] = float("-inf")  # never attend to the first key
        assume(source > 1)
    y, w = layer(q, k, v, attn_mask=mask, average_attn_weights=False)
    if layer._qkv_same_embed_dim:
        wq, wk, wv = _np(layer.in_proj_weight).reshape(3, e, e)
    else:
        wq, wk, wv = _np(layer.q_proj_weight), _np(layer.k_proj_weight), _np(layer.v_proj_weight)
    b = _np(layer.in_proj_bias).reshape(3, e) if bias else (None, None, None)
    ob = _np(layer.out_proj.bias) if bias else None
    got_y, got_w = ref.multi_head_attention(
        _np(q),
        _np(k),
        _np(v),
        heads,
        (wq, wk, wv, _np(layer.out_proj.weight)),
        (b[0], b[1], b[2], ob),
        mask=_np(mask) if mask is not None else None,
    )
    _close(got_y, y)
    _close(got_w, w)


# -- recurrent ------------------------------------------------------------------------------


@SETTINGS
@given(kind=st.sampled_from(["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]), layers=st.integers(1, 3),
       bidirectional=st.booleans(), batch_first=st.booleans(), batched=st.booleans(), given_h0=st.booleans(),
       bias=st.booleans(), proj=st.booleans(), dtype=dtypes, seed=st.integers(0, 2**16))  # fmt: skip
@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_recurrent(kind: str, layers: int, bidirectional: bool, batch_first: bool, batched: bool, given_h0: bool,
                   bias: bool, proj: bool, dtype: torch.dtype, seed: int) -> None:  # fmt: skip
    _seeded(seed)
    hidden, dirs = 5, 2 if bidirectional else 1
    common = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    if kind == "LSTM":
        layer: nn.RNNBase = nn.LSTM(3, hidden, proj_size=2 if proj else 0, **common)  # type: ignore[arg-type]
    elif kind == "GRU":
        layer = nn.GRU(3, hidden, **common)  # type: ignore[arg-type]
    else:
        layer = nn.RNN(3, hidden, nonlinearity="tanh" if kind == "RNN_TANH" else "relu", **common)  # type: ignore[arg-type]
    layer = layer.to(dtype)
    x = torch.randn(*((2, 4) if batched else (4,)), 3, dtype=dtype)
    if batched and not batch_first:
        x = x.transpose(0, 1).contiguous()
    out_width = 2 if kind == "LSTM" and proj else hidden
    state_shape = (layers * dirs, 2, out_width) if batched else (layers * dirs, out_width)
    h0 = torch.randn(*state_shape, dtype=dtype) if given_h0 else None
    c0 = torch.randn(*state_shape[:-1], hidden, dtype=dtype) if given_h0 and kind == "LSTM" else None
    weights = {name: _np(p) for name, p in layer.named_parameters()}
    opts = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    if kind == "LSTM":
        want, (h_n, c_n) = layer(x, (h0, c0)) if given_h0 else layer(x)
        got, (gh, gc) = ref.lstm(_np(x), weights, h0=_np(h0) if h0 is not None else None,
                                 c0=_np(c0) if c0 is not None else None, **opts)  # type: ignore[arg-type]  # fmt: skip
        _close(gc, c_n, dtype)
    else:
        want, h_n = layer(x, h0)
        fn = ref.gru if kind == "GRU" else ref.rnn
        extra = {} if kind == "GRU" else {"nonlinearity": "tanh" if kind == "RNN_TANH" else "relu"}
        got, gh = fn(_np(x), weights, h0=_np(h0) if h0 is not None else None, **opts, **extra)  # type: ignore[operator]
    _close(got, want, dtype)
    _close(gh, h_n, dtype)


# -- normalisation -------------------------------------------------------------------------


@SETTINGS
@given(shape=st.sampled_from([(4, 3), (4, 3, 5), (2, 3, 4, 4)]), momentum=st.sampled_from([0.1, 0.5, None]),
       affine=st.booleans(), training=st.booleans(), tracked=st.integers(0, 3), dtype=dtypes,
       seed=st.integers(0, 2**16))  # fmt: skip
def test_batch_norm(shape: tuple[int, ...], momentum: float | None, affine: bool, training: bool, tracked: int,
                    dtype: torch.dtype, seed: int) -> None:  # fmt: skip
    _seeded(seed)
    layer = (nn.BatchNorm1d if len(shape) < 4 else nn.BatchNorm2d)(3, momentum=momentum, affine=affine).to(dtype)
    with torch.no_grad():
        layer.running_mean.uniform_(-1, 1)  # type: ignore[union-attr]
        layer.running_var.uniform_(0.5, 2)  # type: ignore[union-attr]
        layer.num_batches_tracked.fill_(tracked)  # type: ignore[union-attr]
        if affine:
            layer.weight.uniform_(0.5, 2)
            layer.bias.uniform_(-1, 1)
    layer.train(training)
    x = torch.randn(*shape, dtype=dtype) * 2 + 1
    before = (_np(layer.running_mean), _np(layer.running_var))  # type: ignore[arg-type]
    with torch.no_grad():
        want = layer(x)
    got, new_mean, new_var = ref.batch_norm(
        _np(x), _np(layer.weight) if affine else None, _np(layer.bias) if affine else None, *before,
        training=training, momentum=momentum, eps=layer.eps, num_batches_tracked=tracked,
    )  # fmt: skip
    _close(got, want, dtype)
    _close(new_mean, layer.running_mean, dtype)  # type: ignore[arg-type]
    _close(new_var, layer.running_var, dtype)  # type: ignore[arg-type]


@SETTINGS
@given(n=st.integers(1, 3), c=st.integers(1, 4), rest=st.lists(st.integers(2, 4), min_size=1, max_size=2),
       affine=st.booleans(), dtype=dtypes, seed=st.integers(0, 2**16))  # fmt: skip
def test_layer_instance_group_norm(
    n: int, c: int, rest: list[int], affine: bool, dtype: torch.dtype, seed: int
) -> None:
    _seeded(seed)
    x = torch.randn(n, 2 * c, *rest, dtype=dtype) * 3 + 1
    ln = nn.LayerNorm(x.shape[1:], elementwise_affine=affine).to(dtype)
    gn = nn.GroupNorm(c, 2 * c, affine=affine).to(dtype)
    inorm = (nn.InstanceNorm1d if len(rest) == 1 else nn.InstanceNorm2d)(2 * c, affine=affine).to(dtype)
    with torch.no_grad():
        for p in (*ln.parameters(), *gn.parameters(), *inorm.parameters()):
            p.uniform_(0.5, 2)
        w = lambda m: _np(m.weight) if affine else None  # noqa: E731
        b = lambda m: _np(m.bias) if affine else None  # noqa: E731
        _close(ref.layer_norm(_np(x), tuple(x.shape[1:]), w(ln), b(ln), ln.eps), ln(x), dtype)
        _close(ref.group_norm(_np(x), c, w(gn), b(gn), gn.eps), gn(x), dtype)
        _close(ref.instance_norm(_np(x), w(inorm), b(inorm), inorm.eps), inorm(x), dtype)
        tracked = nn.InstanceNorm1d(2 * c, track_running_stats=True).to(dtype).eval()
        tracked.running_mean.uniform_(-1, 1)  # type: ignore[union-attr]
        if len(rest) == 1:
            got = ref.instance_norm(
                _np(x), None, None, tracked.eps, _np(tracked.running_mean), _np(tracked.running_var)
            )  # type: ignore[arg-type]
            _close(got, tracked(x), dtype)


# -- dropout and losses ------------------------------------------------------------------------


@SETTINGS
@given(p=st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0]), seed=st.integers(0, 2**16))
def test_dropout_from_its_mask(p: float, seed: int) -> None:
    _seeded(seed)
    x = torch.randn(50, dtype=torch.float64)
    y = nn.functional.dropout(x, p, training=True)
    mask = (y != 0).double().numpy()
    _close(ref.dropout(_np(x), mask, p), y)


@SETTINGS
@given(reduction=st.sampled_from(["mean", "sum", "none"]), weighted=st.booleans(), ignore=st.booleans(),
       smoothing=st.sampled_from([0.0, 0.1]), spatial=st.booleans(), seed=st.integers(0, 2**16))  # fmt: skip
def test_losses(reduction: str, weighted: bool, ignore: bool, smoothing: float, spatial: bool, seed: int) -> None:
    _seeded(seed)
    logits = torch.randn(6, 4, *((3,) if spatial else ()), dtype=torch.float64)
    target = torch.randint(0, 4, (6, *((3,) if spatial else ())))
    if ignore:
        target[0] = 2
    weight = torch.rand(4, dtype=torch.float64) + 0.5 if weighted else None
    kwargs = dict(weight=weight, ignore_index=2 if ignore else -100, reduction=reduction, label_smoothing=smoothing)
    want = nn.functional.cross_entropy(logits, target, **kwargs)  # type: ignore[arg-type]
    got = ref.cross_entropy(_np(logits), target.numpy(), _np(weight) if weighted else None,
                            kwargs["ignore_index"], reduction, smoothing)  # type: ignore[arg-type]  # fmt: skip
    _close(got, want)
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    _close(ref.mse_loss(_np(a), _np(b), reduction), nn.functional.mse_loss(a, b, reduction=reduction))


# -- gradients -------------------------------------------------------------------------------


def test_the_tutorials_gradient_by_hand() -> None:
    """The tutorial's model, x = [1, 2], y = [4, 1]: the closed form equals autograd."""
    _seeded(0)
    linear = nn.Linear(2, 2, bias=False).double()
    x, y = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([4.0, 1.0], dtype=torch.float64)
    nn.functional.mse_loss(torch.sigmoid(linear(x)), y).backward()
    _close(ref.tutorial_gradient(_np(linear.weight), _np(x), _np(y)), linear.weight.grad)  # type: ignore[arg-type]


def test_numerical_gradient_agrees_with_autograd() -> None:
    _seeded(1)
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, dtype=torch.float64)
    loss = torch.log1p(torch.exp(w @ x)).sum()
    loss.backward()
    f = lambda a: float(np.log1p(np.exp(a @ _np(x))).sum())  # noqa: E731
    np.testing.assert_allclose(ref.numerical_gradient(f, _np(w)), _np(w.grad), rtol=1e-7, atol=1e-9)  # type: ignore[arg-type]


# -- optimizers ------------------------------------------------------------------------------


def _run_optimizer(torch_opt: type, reference: object, steps: int = 20, **hyper: object) -> list[float]:
    """Max |numpy - torch| per step, on a small regression with fresh gradients each step."""
    _seeded(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    opt = torch_opt(model.parameters(), **hyper)
    params = {n: _np(p) for n, p in model.named_parameters()}
    gaps = []
    for _ in range(steps):
        x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        grads = {n: _np(p.grad) for n, p in model.named_parameters()}  # type: ignore[arg-type]
        for n, p in model.named_parameters():  # the numpy side follows its own trajectory, fed the same
            p.data.copy_(torch.from_numpy(params[n]))  # parameters as torch: compare one step at a time
        opt.step()
        params = reference.step(params, grads)  # type: ignore[attr-defined]
        gaps.append(max(float(np.abs(params[n] - _np(p)).max()) for n, p in model.named_parameters()))
        for n, p in model.named_parameters():
            p.data.copy_(torch.from_numpy(params[n]))
    return gaps


@pytest.mark.parametrize(
    ("torch_opt", "reference", "hyper"),
    [
        (torch.optim.SGD, ref.SGD(lr=0.1), {"lr": 0.1}),
        (torch.optim.SGD, ref.SGD(0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
         {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
        (torch.optim.SGD, ref.SGD(0.05, momentum=0.9, nesterov=True), {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
        (torch.optim.Adam, ref.Adam(lr=0.01), {"lr": 0.01}),
        (torch.optim.Adam, ref.Adam(0.01, (0.8, 0.99), 1e-6, weight_decay=0.1, amsgrad=True),
         {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1, "amsgrad": True}),
        (torch.optim.AdamW, ref.AdamW(lr=0.01, weight_decay=0.05), {"lr": 0.01, "weight_decay": 0.05}),
        (torch.optim.AdamW, ref.AdamW(lr=0.01, amsgrad=True), {"lr": 0.01, "amsgrad": True}),
    ],
)  # fmt: skip
def test_optimizers_agree_over_20_steps(torch_opt: type, reference: object, hyper: dict[str, object]) -> None:
    gaps = _run_optimizer(torch_opt, reference, **hyper)
    assert len(gaps) == 20 and max(gaps) < 1e-12


def test_the_tutorials_resetting_adam_diverges_from_step_2() -> None:
    gaps = _run_optimizer(torch.optim.Adam, ref.ResettingAdam(lr=0.01), lr=0.01)
    assert gaps[0] < 1e-12  # the first step is right
    assert all(g > 1e-6 for g in gaps[1:])  # from the second it is not


@SETTINGS
@given(H=st.integers(1, 12), W=st.integers(1, 12), oh=st.integers(1, 6), ow=st.sampled_from([1, 3, 5, None]),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_adaptive_pools(H: int, W: int, oh: int, ow: int | None, seed: int) -> None:
    _seeded(seed)
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    _close(ref.adaptive_avg_pool2d(_np(x), (oh, ow)), nn.AdaptiveAvgPool2d((oh, ow))(x))
    _close(ref.adaptive_max_pool2d(_np(x), (oh, ow)), nn.AdaptiveMaxPool2d((oh, ow))(x))
    _close(ref.adaptive_avg_pool1d(_np(x[:, :, 0]), oh), nn.AdaptiveAvgPool1d(oh)(x[:, :, 0]))
    _close(ref.adaptive_max_pool1d(_np(x[:, :, 0]), oh), nn.AdaptiveMaxPool1d(oh)(x[:, :, 0]))
