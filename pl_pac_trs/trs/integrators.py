"""Integrators behind one small interface: ``integrator(field, x0, t) -> states``.

``x0`` has shape ``(B, D)`` and ``t`` shape ``(B, S + 1)``: a per-sample time grid (possibly
non-uniform, possibly decreasing: backward rollouts use negated times). The result has shape
``(B, S, D)``: the states at ``t[:, 1:]``, one integrator step per data interval.

:class:`FixedGridIntegrator` owns the loop over the data intervals (as torchdiffeq's
``FixedGridODESolver``); each scheme writes only its :meth:`~FixedGridIntegrator.step`:

* :class:`Leapfrog` -- kick-drift-kick for ``[q, p]`` states (symplectic, time-reversible);
* :class:`RK4` -- classical fourth-order Runge-Kutta;
* :class:`Euler` -- explicit Euler (a cheap baseline);
* :class:`~pl_pac_trs.trs.TorchDiffEq` -- any ``torchdiffeq`` method per interval, optionally
  with adjoint (:mod:`pl_pac_trs.trs.torchdiffeq_integrator`).

:func:`~pl_pac_trs.trs.make_integrator` (:mod:`pl_pac_trs.trs.integrator_names`) builds one from
a name (``"leapfrog"``, ``"rk4"``, ``"euler"``, or ``"torchdiffeq:<method>"``).

The arithmetic of each scheme is written once, as a function of a field evaluation
(:func:`leapfrog_step`, :func:`rk4_step`); the fused kernels of :mod:`pl_pac_trs.trs.fused`
run the same functions on their own evaluations. What a field may offer an integrator beyond
``field(t, x)`` is declared by :class:`~pl_pac_trs.trs.VectorField`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from operator import itemgetter
from typing import TypeVar

import torch
from torch import Tensor, nn

from pl_pac_trs.trs.vector_field import VectorField

__all__ = [
    "RK4",
    "Euler",
    "FixedGridIntegrator",
    "Integrator",
    "Leapfrog",
    "leapfrog_step",
    "rk4_step",
]

#: A field evaluation ``evaluate(t, x) -> dx/dt`` (``t`` a ``(B,)`` tensor, ``x`` ``(B, D)``).
Evaluate = Callable[[Tensor, Tensor], Tensor]


def leapfrog_step(
    evaluate: Evaluate,
    n: int,
    state: tuple[Tensor, Tensor, Tensor],
    t0: Tensor,
    t1: Tensor,
    h: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """One kick-drift-kick step of size ``h`` ``(B, 1)`` from ``t0`` to ``t1`` ``(B,)`` on
    ``state = (q, p, [q, p])`` (``n`` positions; the joined state carried along, so no step
    re-slices it): ``p' = p + h/2 f_p(t0, q, p)``, ``q'' = q + h f_q(t0 + h/2, q, p')``,
    ``p'' = p' + h/2 f_p(t1, q'', p')``. Returns ``(q'', p'', [q'', p''])``."""
    q, p, x = state
    hh = 0.5 * h
    p = p + hh * evaluate(t0, x)[:, n:]
    q = q + h * evaluate(t0 + hh[:, 0], torch.cat([q, p], dim=1))[:, :n]
    p = p + hh * evaluate(t1, torch.cat([q, p], dim=1))[:, n:]
    return q, p, torch.cat([q, p], dim=1)


def rk4_step(evaluate: Evaluate, x: Tensor, t0: Tensor, t1: Tensor, h: Tensor) -> Tensor:
    """One classical Runge-Kutta step of size ``h`` ``(B, 1)`` from ``x`` at ``t0`` to ``t1``
    (``(B,)`` each): ``x + h/6 (k1 + 2 (k2 + k3) + k4)``."""
    hh = 0.5 * h
    tm = t0 + hh[:, 0]
    k1 = evaluate(t0, x)
    k2 = evaluate(tm, x + hh * k1)
    k3 = evaluate(tm, x + hh * k2)
    k4 = evaluate(t1, x + h * k3)
    return x + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)


def _check_inputs(x0: Tensor, t: Tensor) -> None:
    if x0.dim() != 2:
        raise ValueError(f"x0 must have shape (B, D), got {tuple(x0.shape)}")
    if t.dim() != 2 or t.shape[0] != x0.shape[0] or t.shape[1] < 2:
        raise ValueError(
            f"t must have shape (B, S + 1) with B = {x0.shape[0]} and S >= 1, got {tuple(t.shape)}"
        )


class Integrator:
    """Base class: integrate ``dx/dt = field(t, x)`` along per-sample time grids."""

    name = "integrator"

    def __call__(self, field: nn.Module, x0: Tensor, t: Tensor) -> Tensor:
        """Roll out ``field`` from ``x0`` (``(B, D)``) along ``t`` (``(B, S + 1)``).

        Returns:
            States at ``t[:, 1:]``, shape ``(B, S, D)``.
        """
        _check_inputs(x0, t)
        t = t.to(dtype=x0.dtype)
        return self.rollout(field, x0, t)

    def rollout(self, field: nn.Module, x0: Tensor, t: Tensor) -> Tensor:
        """The rollout proper, on checked inputs (``t`` in ``x0``'s dtype)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


State = TypeVar("State")


def march(
    step: Callable[[State, Tensor, Tensor, Tensor], State],
    state: State,
    t: Tensor,
    output: Callable[[State], Tensor] | None = None,
) -> Tensor:
    """The loop of every one-step-per-interval scheme: ``state = step(state, t_k, t_{k+1}, h_k)``
    for each interval of ``t`` ``(B, S + 1)``, with ``h_k`` the ``(B, 1)`` column of steps.

    Args:
        step: advances ``state`` over one interval.
        state: the start state (a tensor ``(B, D)``, or anything ``output`` maps to one).
        t: time grids ``(B, S + 1)``.
        output: the ``(B, D)`` state to record after each step; ``None``: ``state`` itself.

    Returns:
        The recorded states ``(B, S, D)``.
    """
    dt = t.diff(dim=1)
    out = []
    for k in range(dt.shape[1]):
        state = step(state, t[:, k], t[:, k + 1], dt[:, k : k + 1])
        out.append(state if output is None else output(state))
    return torch.stack(out, dim=1)


class FixedGridIntegrator(Integrator):
    """Base of the schemes taking one step per data interval: it owns the loop, a subclass
    writes only :meth:`step`.

    Example:
        >>> class Midpoint(FixedGridIntegrator):
        ...     def step(self, field, x, t0, t1, h):
        ...         return x + h * field(t0 + 0.5 * h[:, 0], x + 0.5 * h * field(t0, x))
        >>> decay = lambda t, x: -x
        >>> x = Midpoint()(decay, torch.ones(1, 1), torch.tensor([[0.0, 0.5, 1.0]]))
        >>> x.shape, round(float(x[0, -1, 0]), 4)  # exp(-1) = 0.3679
        (torch.Size([1, 2, 1]), 0.3906)
    """

    def rollout(self, field: nn.Module, x0: Tensor, t: Tensor) -> Tensor:
        return march(partial(self.step, field), x0, t)

    def step(self, field: nn.Module, x: Tensor, t0: Tensor, t1: Tensor, h: Tensor) -> Tensor:
        """One step from ``x`` ``(B, D)`` at ``t0`` ``(B,)`` to ``t1`` ``(B,)``, ``h = t1 - t0``
        as a ``(B, 1)`` column; returns the state at ``t1``."""
        raise NotImplementedError


class Leapfrog(FixedGridIntegrator):
    """Kick-drift-kick leapfrog for states ``x = [q, p]``.

    One step of size ``h``: ``p' = p + h/2 f_p(t, q, p)``, ``q'' = q + h f_q(t + h/2, q, p')``,
    ``p'' = p' + h/2 f_p(t + h, q'', p')``. The field is evaluated on the full state and only
    the relevant half of its output is used, so any field (ODEN, HODEN, user) works. The scheme
    is exactly time-reversible: a step of ``-h`` from ``(q'', -p'')`` returns to ``(q, -p)``
    for fields with that symmetry. A :class:`~pl_pac_trs.trs.VectorField` may offer separable
    parts (:class:`~pl_pac_trs.trs.HODENField`: two half-field evaluations per step instead of
    three full ones) or a fused rollout (:class:`~pl_pac_trs.trs.ODENField`).

    Args:
        position_dim: number of position coordinates ``q``; ``None``: half the state
            (:class:`~pl_pac_trs.trs.TRSODEN` fills it in from the data).
    """

    name = "leapfrog"

    def __init__(self, position_dim: int | None = None) -> None:
        if position_dim is not None and int(position_dim) < 1:
            raise ValueError(f"Leapfrog: position_dim must be >= 1, got {position_dim!r}")
        self.position_dim = None if position_dim is None else int(position_dim)

    def split(self, state_dim: int) -> int:
        """The number of position coordinates of states of dimension ``state_dim``.

        Raises:
            ValueError: ``position_dim`` is unset and ``state_dim`` odd, or it leaves no
                momentum coordinate.
        """
        n = self.position_dim
        if n is None:
            if state_dim % 2:
                raise ValueError(
                    f"Leapfrog needs [q, p] states: the state dimension {state_dim} is odd and "
                    "position_dim was not given"
                )
            n = state_dim // 2
        if not 0 < n < state_dim:
            raise ValueError(
                f"Leapfrog: position_dim={n} does not split a state of dim {state_dim}"
            )
        return n

    def rollout(self, field: nn.Module, x0: Tensor, t: Tensor) -> Tensor:
        n = self.split(x0.shape[1])
        if isinstance(field, VectorField):
            parts = field.separable_parts(n)
            if parts is not None:
                # the closing kick's force is the next step's opening force: carry it along
                velocity, force = parts
                start = (x0[:, :n], x0[:, n:], force(x0[:, :n]))
                step = partial(self._separable_step, velocity, force)
                return march(step, start, t, _joined)
            if not t.requires_grad:  # fused rollouts treat the grid as constant
                out = field.fused_rollout(self.name, x0, t, n)
                if out is not None:
                    return out
        # (q, p, [q, p]) carried along: no step re-slices the joined state (in the backward too)
        return march(partial(leapfrog_step, field, n), (x0[:, :n], x0[:, n:], x0), t, itemgetter(2))

    def step(self, field: nn.Module, x: Tensor, t0: Tensor, t1: Tensor, h: Tensor) -> Tensor:
        n = self.split(x.shape[1])
        return leapfrog_step(field, n, (x[:, :n], x[:, n:], x), t0, t1, h)[2]

    @staticmethod
    def _separable_step(
        velocity: Callable[[Tensor], Tensor],
        force: Callable[[Tensor], Tensor],
        state: tuple[Tensor, Tensor, Tensor],
        t0: Tensor,
        t1: Tensor,
        h: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:func:`leapfrog_step` for a separable autonomous field on ``(q, p, force(q))``: the
        same kicks and drift with ``f_q = velocity(p)``, ``f_p = force(q)``, the closing kick's
        force carried to the next step's opening kick (two half-field evaluations)."""
        q, p, f = state
        hh = 0.5 * h
        p = p + hh * f
        q = q + h * velocity(p)
        f = force(q)
        return q, p + hh * f, f

    def __repr__(self) -> str:
        return f"Leapfrog(position_dim={self.position_dim})"


class RK4(FixedGridIntegrator):
    """Classical fourth-order Runge-Kutta, one step per data interval.

    A :class:`~pl_pac_trs.trs.VectorField` may offer a fused rollout
    (:class:`~pl_pac_trs.trs.ODENField`: one autograd node)."""

    name = "rk4"

    def rollout(self, field: nn.Module, x0: Tensor, t: Tensor) -> Tensor:
        if isinstance(field, VectorField) and not t.requires_grad:
            out = field.fused_rollout(self.name, x0, t)
            if out is not None:
                return out
        return super().rollout(field, x0, t)

    def step(self, field: nn.Module, x: Tensor, t0: Tensor, t1: Tensor, h: Tensor) -> Tensor:
        return rk4_step(field, x, t0, t1, h)


class Euler(FixedGridIntegrator):
    """Explicit Euler, one step per data interval (first order; for comparisons)."""

    name = "euler"

    def step(self, field: nn.Module, x: Tensor, t0: Tensor, t1: Tensor, h: Tensor) -> Tensor:
        return x + h * field(t0, x)


def _joined(state: tuple[Tensor, ...]) -> Tensor:
    return torch.cat(state[:2], dim=1)
