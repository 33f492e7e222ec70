"""Tutorial section 1: gradients by hand, and Adam by hand, against PyTorch.

The tutorial's model: Linear(2, 2, no bias) -> Sigmoid -> MSE, on x = [1, 2],
y = [4, 1]. The gradient of L = mean((sigmoid(Wx) - y)^2) is
dL/dW[i, j] = (p_i - y_i) * p_i * (1 - p_i) * x_j (the 2 of the square and the
1/2 of the mean cancel). Adam keeps m, v and the step count t from step to
step; the tutorial's hand version re-creates them on every call, which is only
right for the first step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import layerlens as ll


class TutorialModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2, bias=False)
        self.activate = nn.Sigmoid()
        self.loss = nn.MSELoss()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor = self.loss(self.activate(self.linear(x)), y)
        return loss


def hand_gradient(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-(w @ x)))
    return np.outer((p - y) * p * (1 - p), x)


class HandAdam:
    """Adam as the paper writes it, with its state kept across steps."""

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m: np.ndarray | float = 0.0
        self.v: np.ndarray | float = 0.0
        self.t = 0

    def step(self, w: np.ndarray, g: np.ndarray) -> np.ndarray:
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g**2
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        return w - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def tutorial_adam(w: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The tutorial's diy_adam: m, v and t start from zero on every call."""
    return HandAdam().step(w, g)


def main() -> None:
    torch.manual_seed(0)
    model = TutorialModel().double()  # float64 on both sides: any difference is the method's, not rounding
    x, y = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([4.0, 1.0], dtype=torch.float64)
    t = ll.trace(model, x, kwargs={"y": y})
    print(t.table(columns=["layer", "type", "input", "output", "params"]))
    print("verify:", ll.verify(model, x, kwargs={"y": y}).summary())

    w = model.linear.weight.detach().numpy().copy()
    xn, yn = x.numpy(), y.numpy()
    model(x, y).backward()
    autograd = model.linear.weight.grad.numpy()  # type: ignore[union-attr]
    diff = np.abs(hand_gradient(w, xn, yn) - autograd).max()
    print(f"\ngradient by hand vs autograd: max |diff| = {diff:.2e}")

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    hand, reset = HandAdam(), w.copy()
    for step in range(1, 6):
        w, reset = hand.step(w, hand_gradient(w, xn, yn)), tutorial_adam(reset, hand_gradient(reset, xn, yn))
        optimizer.zero_grad()
        model(x, y).backward()
        optimizer.step()
        torch_w = model.linear.weight.detach().numpy()
        print(
            f"Adam step {step}: hand (state kept) vs torch.optim.Adam max |diff| = {np.abs(w - torch_w).max():.2e}; "
            f"tutorial's reset version = {np.abs(reset - torch_w).max():.2e}"
        )


if __name__ == "__main__":
    main()
