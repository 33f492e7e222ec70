"""A loss given the wrong kind of input, read from the gradient it sends back to
the model's output (on the first sampled steps).

A loss's gradient with respect to its input is exact arithmetic, whatever made
the input: cross-entropy sends (softmax(z) - target) / n back to z,
binary cross-entropy with logits (sigmoid(z) - target) / n, negative
log-likelihood -target / n. So when the output `z` and its gradient `g` fit
one of these identities to float32 rounding, we know the loss, and can say
that its input was the wrong kind:

- cross-entropy fed probabilities (a softmax or sigmoid before
  `nn.CrossEntropyLoss`, which applies log_softmax itself): the gradients are
  squashed and the model learns slowly or not at all;
- `BCEWithLogitsLoss` fed probabilities (a sigmoid before it);
- `nn.NLLLoss` fed logits or probabilities instead of log-probabilities: the
  loss has no lower bound and the logits run off.

The identities hold for hard labels (class indices, 0/1 targets), mean or sum
reduction, and cross-entropy's label smoothing; other targets and weights fit
none, and say nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

LOOKS = 3  # sampled steps judged (the mistake is in the code: it shows on the first)
MAX_ELEMENTS = 2**20  # outputs larger than this are not looked at (a language model's logits)
_FIT = 1e-4  # largest misfit of an identity, relative to the values it fits (float32 gradients: ~1e-7)


def judge(z: torch.Tensor, g: torch.Tensor, squashed: bool) -> str | None:
    """What is wrong with the loss's input `z` (the model's output), given its gradient
    `g`; None when nothing is, or when the numbers cannot tell. `squashed`: a sigmoid
    or softmax made `z` (logits that happen to lie in [0, 1] are still logits)."""
    if z.shape != g.shape or z.ndim < 1 or z.numel() < 4:
        return None
    z, g = z.detach().to(torch.float64), g.detach().to(torch.float64)
    dims = [-1] if z.ndim < 3 else [-1, 1]
    probabilities = bool(z.min() >= 0) and bool(z.max() <= 1)
    for dim in dims if z.ndim >= 2 else []:
        if z.shape[dim] < 2:  # one "class": a binary loss's logit, not a distribution
            continue
        if probabilities and (squashed or _on_simplex(z, dim)) and _cross_entropy(z, g, dim):
            return CE_ON_PROBABILITIES
        if _nll(g, dim) and not bool((torch.logsumexp(z, dim).abs() < 1e-3).all()):
            return NLL_ON_LOGITS
    if probabilities and squashed and _bce_with_logits(z, g):
        return BCE_ON_PROBABILITIES
    return None


# autograd's nodes, by their names in lower case: the ops that squash (torch.sigmoid, torch.softmax, whichever
# module or function called them), and those that only reshape or copy what they are given
_SQUASHING = ("sigmoidbackward", "softmaxbackward")
_VIEWS = ("view", "reshape", "unsafe", "permute", "transpose", "squeeze", "unsqueeze", "clone", "contiguous",
          "alias", "select", "slice", "split", "unbind", "tocopy")  # fmt: skip


def squashed(z: torch.Tensor) -> bool:
    """Whether the op that made `z` (past reshapes and copies) is a sigmoid or softmax."""
    node = z.grad_fn
    for _ in range(8):
        if node is None:
            return False
        name = type(node).__name__.lower()
        if name.startswith(_SQUASHING):
            return True
        if not name.startswith(_VIEWS) or not node.next_functions:
            return False
        node = node.next_functions[0][0]
    return False


def _on_simplex(z: torch.Tensor, dim: int) -> bool:
    return bool(((z.sum(dim) - 1).abs() < 1e-4).all())


def _cross_entropy(z: torch.Tensor, g: torch.Tensor, dim: int) -> bool:
    """g = (softmax(z) - target) / n: each row of g sums to 0, and over the other
    classes softmax(z) = n g + smoothing / classes, one line for every row; and not
    as well a line in z itself, which a squared error on the probabilities (a Brier
    score) gives, and which softmax over two near-even classes cannot be told from."""
    rows = g.abs().sum(dim)
    if not bool((g.sum(dim).abs() <= 1e-5 * rows + 1e-30).all()):
        return False
    s = torch.softmax(z, dim)
    others = g > 0
    return _told_apart(_misfit(g[others], s[others], through_origin=False),
                       _misfit(g[others], z[others], through_origin=False))  # fmt: skip


def _bce_with_logits(z: torch.Tensor, g: torch.Tensor) -> bool:
    """g = (sigmoid(z) - y) / n with y in {0, 1}: y = 1 exactly where g < 0 (and not
    as well g = (z - y) / n, a squared error on the probabilities)."""
    target = (g < 0).to(z.dtype)
    flat = g.reshape(-1)
    return _told_apart(_misfit(flat, (torch.sigmoid(z) - target).reshape(-1), through_origin=True),
                       _misfit(flat, (z - target).reshape(-1), through_origin=True))  # fmt: skip


def _nll(g: torch.Tensor, dim: int) -> bool:
    """g = -target / n: in each row at most one non-zero entry, negative."""
    nonzero = (g != 0).sum(dim)
    return bool((nonzero <= 1).all()) and bool((nonzero == 1).any()) and bool((g <= 0).all())


def _told_apart(fit: float, rival: float) -> bool:
    """The identity holds to rounding, and the rival loss's identity clearly does not."""
    return fit <= _FIT and rival > 30 * _FIT


def _misfit(x: torch.Tensor, y: torch.Tensor, through_origin: bool) -> float:
    """How far y is from a line y = a x (+ b) with a > 0, relative to |y|; infinite where
    the points do not spread enough to tell a line from a curve, or a <= 0."""
    if x.numel() < 4 or float(y.max() - y.min()) < 1e-3 * float(y.abs().max()):
        return math.inf  # (nearly) one value: every curve fits it
    if through_origin:
        a, b = float((x * y).sum() / (x * x).sum()), 0.0
    else:
        xm, ym = x.mean(), y.mean()
        a = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
        b = float(ym - a * xm)
    if not a > 0:
        return math.inf
    return float((y - (a * x + b)).abs().max()) / float(y.abs().max())


class LossProbe:
    """The gradient hook on the model's output for one sampled step: judges the
    loss's input once the backward sends the gradient (never changes it)."""

    def __init__(self, z: torch.Tensor, report: Callable[[str], None]) -> None:
        self.squashed = squashed(z)
        self.z: torch.Tensor | None = z.detach()
        self.report = report

    def __call__(self, grad: torch.Tensor) -> None:
        z, self.z = self.z, None
        if z is None:
            return
        with torch.no_grad():
            found = judge(z, grad, self.squashed)
        if found is not None:
            self.report(found)


def watchable(y: torch.Tensor) -> bool:
    """An output worth looking at: floating, in the graph, not too large."""
    return y.is_floating_point() and y.requires_grad and 4 <= y.numel() <= MAX_ELEMENTS


CE_ON_PROBABILITIES = (
    "the model's output is probabilities (all in [0, 1]), and the loss is cross-entropy, which applies "
    "log_softmax itself: the probabilities are squashed a second time and the gradients shrink, so the model "
    "learns slowly or not at all. Return the logits (drop the softmax/sigmoid) for nn.CrossEntropyLoss"
)
BCE_ON_PROBABILITIES = (
    "the model's output is probabilities (all in [0, 1]), and the loss is binary cross-entropy with logits, "
    "which applies a sigmoid itself: sigmoid is applied twice and every output reads as 0.5 to 0.73. Return "
    "the logits (drop the sigmoid), or use nn.BCELoss on the probabilities"
)
NLL_ON_LOGITS = (
    "the loss is negative log-likelihood (nn.NLLLoss), which expects log-probabilities, but the model's "
    "output is not log_softmax of anything (its rows' logsumexp is not 0): the loss has no lower bound and "
    "the target logits grow without end. Apply log_softmax first, or use nn.CrossEntropyLoss on the logits"
)
