"""Small analytic vector fields shared by the TRS tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class HarmonicField(nn.Module):
    """``f(q, p) = (p, -q)``: reversible under ``(q, p) -> (q, -p)``."""

    state_dim = 2

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return torch.stack([x[:, 1], -x[:, 0]], dim=1)


class DampedField(nn.Module):
    """``f(q, p) = (p, -q - gamma p)``: damped, not time-reversal symmetric."""

    state_dim = 2

    def __init__(self, gamma: float = 0.5) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return torch.stack([x[:, 1], -x[:, 0] - self.gamma * x[:, 1]], dim=1)


class CosineField(nn.Module):
    """``dx/dt = cos(t)`` for every coordinate (non-autonomous; ``x(t) = x0 + sin t - sin t0``)."""

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1)
        return torch.cos(t).expand_as(x)
