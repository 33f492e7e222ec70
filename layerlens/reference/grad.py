"""Gradients by hand: the tutorial's model in closed form, and central
differences for anything else."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..layers.activation import sigmoid


def tutorial_gradient(weight: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dW for the tutorial's Linear(no bias) -> Sigmoid -> MSE, L = mean((p - y)^2), p = sigmoid(W x):

    dL/dW[i, j] = (2 / n) * (p_i - y_i) * p_i * (1 - p_i) * x_j,  n = len(y)

    (the tutorial writes it without 2/n, which is the same for its n = 2).
    """
    p = sigmoid(weight @ x)
    return np.outer(2.0 / y.size * (p - y) * p * (1 - p), x)


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """df/dx[i] ~ (f(x + eps e_i) - f(x - eps e_i)) / (2 eps), in float64: error O(eps^2)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        up = f(x)
        flat[i] = keep - eps
        down = f(x)
        flat[i] = keep
        gflat[i] = (up - down) / (2 * eps)
    return grad
