"""Reversing operators ``R``: involutions of the state space under which the dynamics is
time-reversal symmetric (``R o phi_t = phi_{-t} o R``): sign flips, optionally with swapped
coordinates."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["Reversal"]


class Reversal(nn.Module):
    """A signed permutation ``(R x)_i = s_i x_{pi(i)}`` that is an involution (``R o R = I``).

    Without ``permutation`` it is diagonal, ``R x = s * x``:
    ``Reversal.momentum_flip(state_dim, position_dim)`` is the mechanical default
    ``(q, p) -> (q, -p)``; ``Reversal.negate(state_dim)`` is ``-I`` (the strange attractor of
    exp VI). A permutation swaps coordinates, e.g. ``Reversal([1, 1], permutation=[1, 0])`` is
    ``(u, v) -> (v, u)`` (the Lotka-Volterra model in log coordinates). ``R o R = I`` holds
    exactly when ``pi`` is its own inverse and ``s_i s_{pi(i)} = 1``, which the constructor checks.

    >>> import torch
    >>> R = Reversal.momentum_flip(state_dim=2, position_dim=1)
    >>> R(torch.tensor([[0.5, 2.0]]))
    tensor([[ 0.5000, -2.0000]])
    >>> torch.equal(R(R(torch.tensor([[0.5, 2.0]]))), torch.tensor([[0.5, 2.0]]))
    True

    Args:
        signs: one sign (``1`` or ``-1``) per state coordinate.
        permutation: ``pi`` as the list ``[pi(0), ..., pi(D - 1)]``; ``None``: identity.

    Example:
        >>> R = Reversal([1, 1], permutation=[1, 0])
        >>> R(torch.tensor([[1.0, 2.0]]))
        tensor([[2., 1.]])
    """

    def __init__(self, signs: Sequence[float], permutation: Sequence[int] | None = None) -> None:
        super().__init__()
        values = [float(s) for s in signs]
        if not values:
            raise ValueError("Reversal: signs must not be empty")
        bad = [s for s in values if s not in (1.0, -1.0)]
        if bad:
            raise ValueError(
                f"Reversal: every sign must be 1 or -1 (R must be an involution), got {values}"
            )
        n = len(values)
        perm = list(range(n)) if permutation is None else [int(i) for i in permutation]
        if sorted(perm) != list(range(n)):
            raise ValueError(
                f"Reversal: permutation must hold each of 0..{n - 1} once, got {list(permutation)}"
            )
        if any(perm[perm[i]] != i or values[i] != values[perm[i]] for i in range(n)):
            raise ValueError(
                f"Reversal: permutation {perm} with signs {values} is not an involution (each "
                "swapped pair must swap back and have equal signs)"
            )
        self.register_buffer("signs", torch.tensor(values), persistent=False)
        self.register_buffer("permutation", torch.tensor(perm), persistent=False)
        self.permuted = perm != list(range(n))

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

    def arguments(self) -> dict[str, list]:
        """The constructor's arguments (``Reversal(**R.arguments())`` rebuilds ``R``)."""
        return {"signs": self.signs.tolist(), "permutation": self.permutation.tolist()}

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
        if self.permuted:
            x = x.index_select(-1, self.permutation)
        return x * self.signs.to(dtype=x.dtype)

    def extra_repr(self) -> str:
        text = f"signs={self.signs.tolist()}"
        return text + (f", permutation={self.permutation.tolist()}" if self.permuted else "")
