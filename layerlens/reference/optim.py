"""Optimizers as stateful numpy references: each keeps its state (momentum
buffers, m, v, the step count t) across steps, as PyTorch's do.

`step(params, grads)` takes and returns dicts name -> array; the state lives in
the optimizer, per parameter name.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

Arrays = Mapping[str, np.ndarray]


class SGD:
    """g = grad + weight_decay * p
    buf = g (first step), else momentum * buf + (1 - dampening) * g
    g = g + momentum * buf (nesterov) or buf (momentum > 0)
    p = p - lr * g
    """

    def __init__(
        self,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.buffers: dict[str, np.ndarray] = {}

    def step(self, params: Arrays, grads: Arrays) -> dict[str, np.ndarray]:
        out = {}
        for name, p in params.items():
            g = grads[name] + self.weight_decay * p if self.weight_decay else grads[name]
            if self.momentum:
                buf = self.buffers.get(name)
                buf = g.copy() if buf is None else self.momentum * buf + (1 - self.dampening) * g
                self.buffers[name] = buf
                g = g + self.momentum * buf if self.nesterov else buf
            out[name] = p - self.lr * g
        return out


class Adam:
    """t = t + 1;  g = grad (+ weight_decay * p: L2 in the gradient)
    m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g^2
    m_hat = m / (1 - b1^t);  v_hat = v / (1 - b2^t)  (amsgrad: v_hat from max over time of v)
    p = p - lr * m_hat / (sqrt(v_hat) + eps)
    """

    decoupled = False

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.weight_decay, self.amsgrad = weight_decay, amsgrad
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.v_max: dict[str, np.ndarray] = {}
        self.t: dict[str, int] = {}

    def step(self, params: Arrays, grads: Arrays) -> dict[str, np.ndarray]:
        return {name: self._update(name, p, grads[name]) for name, p in params.items()}

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        if self.weight_decay and self.decoupled:
            p = p * (1 - self.lr * self.weight_decay)
        elif self.weight_decay:
            g = g + self.weight_decay * p
        t = self.t[name] = self.t.get(name, 0) + 1
        m = self.m[name] = self.b1 * self.m.get(name, np.zeros_like(p)) + (1 - self.b1) * g
        v = self.v[name] = self.b2 * self.v.get(name, np.zeros_like(p)) + (1 - self.b2) * g * g
        if self.amsgrad:
            v = self.v_max[name] = np.maximum(self.v_max.get(name, np.zeros_like(p)), v)
        m_hat = m / (1 - self.b1**t)
        v_hat = v / (1 - self.b2**t)
        return p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay: p = p * (1 - lr * weight_decay) before the
    Adam step, instead of adding weight_decay * p to the gradient."""

    decoupled = True

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay, amsgrad)


class ResettingAdam(Adam):
    """The tutorial's hand-written Adam: m, v and t start from zero on every call.
    Right for the first step only; from the second it drifts from Adam (every
    update becomes about lr * sign(grad))."""

    def step(self, params: Arrays, grads: Arrays) -> dict[str, np.ndarray]:
        self.m.clear()
        self.v.clear()
        self.v_max.clear()
        self.t.clear()
        return super().step(params, grads)
