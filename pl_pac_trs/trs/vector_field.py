"""``VectorField``: the contract between a vector field and the integrators.

Any module (or function) ``field(t, x) -> dx/dt`` with ``x`` of shape ``(B, D)`` and ``t`` a
scalar or ``(B,)`` can be integrated: the schemes of :mod:`pl_pac_trs.trs.integrators` call it
and nothing else. A field that derives from :class:`VectorField` may in addition offer what an
integrator can use to compute the same rollout faster; every such offer is optional, and its
default here says "not available":

* :attr:`state_dim` / :attr:`position_dim`: checked against the data before training
  (:class:`~pl_pac_trs.trs.TRSODEN`); ``position_dim`` also splits ``[q, p]`` states.
* :meth:`separable_parts`: for an autonomous field whose ``dq/dt`` depends on ``p`` only and
  ``dp/dt`` on ``q`` only (a separable Hamiltonian), the two halves ``velocity(p)`` and
  ``force(q)``; :class:`~pl_pac_trs.trs.Leapfrog` then takes two half evaluations per step
  instead of three full ones (the same scheme, the last kick's force reused).
* :meth:`fused_rollout`: the whole rollout of a scheme (``"leapfrog"``, ``"rk4"``) computed by
  the field itself, e.g. as one autograd node with a hand-written backward
  (:class:`~pl_pac_trs.trs.ODENField`, :mod:`pl_pac_trs.trs.fused`). It must equal the
  integrator's own step loop on this field up to floating-point rounding, values and gradients
  (``tests/trs/test_tanh_mlp.py`` checks the shipped ones for every scheme they implement).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["VectorField"]


class VectorField(nn.Module):
    """Base class of fields ``f(t, x)`` that offer integrators optional fast paths (see the
    module docstring); a subclass implements :meth:`forward` and overrides what it offers.

    Example:
        >>> import torch
        >>> from pl_pac_trs.trs import Leapfrog
        >>> class Harmonic(VectorField):
        ...     position_dim = 1
        ...     def forward(self, t, x):
        ...         return torch.cat([x[:, 1:], -x[:, :1]], dim=1)
        ...     def separable_parts(self, position_dim):
        ...         return (lambda p: p, lambda q: -q) if position_dim == 1 else None
        >>> Leapfrog()(Harmonic(), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.1]])).shape
        torch.Size([1, 1, 2])
    """

    #: The state dimension ``D`` the field takes, or ``None`` (not declared).
    state_dim: int | None = None
    #: The number of position coordinates of ``[q, p]`` states, or ``None``.
    position_dim: int | None = None

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        """``dx/dt`` at time ``t`` for states ``x`` ``(B, D)``."""
        raise NotImplementedError

    def separable_parts(
        self, position_dim: int
    ) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]] | None:
        """``(velocity, force)`` with ``dq/dt = velocity(p)`` and ``dp/dt = force(q)`` for states
        split after ``position_dim`` coordinates, when the field is autonomous and separable
        there; ``None`` (the default): not separable."""
        return None

    def fused_rollout(
        self, scheme: str, x0: Tensor, t: Tensor, position_dim: int | None = None
    ) -> Tensor | None:
        """The rollout ``(B, S, D)`` of ``scheme`` (an integrator's ``name``) from ``x0``
        ``(B, D)`` along ``t`` ``(B, S + 1)`` (``t`` needs no gradient), computed by the field;
        ``position_dim`` is the leapfrog's split. ``None`` (the default): the integrator's own
        step loop runs."""
        return None
