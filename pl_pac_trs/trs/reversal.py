"""Reversing operators ``R``: involutions of the state space under which the dynamics is
time-reversal symmetric (``R o phi_t = phi_{-t} o R``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["Reversal"]


class Reversal(nn.Module):
    """A diagonal involution ``R x = s * x`` with a sign ``s_i = +-1`` per coordinate.

    ``Reversal.momentum_flip(state_dim, position_dim)`` is the mechanical default
    ``(q, p) -> (q, -p)``; ``Reversal.negate(state_dim)`` is ``-I`` (the strange attractor of
    exp VI). Since every ``s_i`` is ``+-1``, ``R o R = I`` exactly.

    >>> import torch
    >>> R = Reversal.momentum_flip(state_dim=2, position_dim=1)
    >>> R(torch.tensor([[0.5, 2.0]]))
    tensor([[ 0.5000, -2.0000]])
    >>> torch.equal(R(R(torch.tensor([[0.5, 2.0]]))), torch.tensor([[0.5, 2.0]]))
    True

    Args:
        signs: one sign (``1`` or ``-1``) per state coordinate.
    """

    def __init__(self, signs: Sequence[float]) -> None:
        super().__init__()
        values = [float(s) for s in signs]
        if not values:
            raise ValueError("Reversal: signs must not be empty")
        bad = [s for s in values if s not in (1.0, -1.0)]
        if bad:
            raise ValueError(
                f"Reversal: every sign must be 1 or -1 (R must be an involution), got {values}"
            )
        self.register_buffer("signs", torch.tensor(values), persistent=False)

    @classmethod
    def momentum_flip(cls, state_dim: int, position_dim: int) -> Reversal:
        """``(q, p) -> (q, -p)`` for states ``[q_1..q_n, p_1..p_m]`` with ``n = position_dim``."""
        if not 0 < position_dim < state_dim:
            raise ValueError(
                f"Reversal.momentum_flip: position_dim must be in [1, state_dim - 1], got "
                f"position_dim={position_dim}, state_dim={state_dim}"
            )
        return cls([1.0] * position_dim + [-1.0] * (state_dim - position_dim))

    @classmethod
    def negate(cls, state_dim: int) -> Reversal:
        """``x -> -x``."""
        return cls([-1.0] * state_dim)

    @property
    def state_dim(self) -> int:
        """Length of the sign vector."""
        return int(self.signs.numel())

    def check_state_dim(self, state_dim: int, what: str = "the data") -> None:
        """Raise a clear error when ``state_dim`` differs from the sign vector's length."""
        if int(state_dim) != self.state_dim:
            raise ValueError(
                f"reversal has {self.state_dim} signs {self.signs.tolist()} but {what} has "
                f"state dimension {state_dim}"
            )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.signs.to(dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"signs={self.signs.tolist()}"
