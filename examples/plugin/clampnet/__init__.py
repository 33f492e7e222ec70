"""clampnet: a layer library of one layer, `Clamp`, that keeps values in a band."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Clamp"]


class Clamp(nn.Module):
    """y = min(max(x, low), high), elementwise."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        if low > high:
            raise ValueError(f"Clamp needs low <= high, got {low} > {high}")
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(self.low, self.high)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"
