"""Any ``torchdiffeq`` solver as a :class:`~pl_pac_trs.trs.FixedGridIntegrator` step (one
``odeint`` call per data interval, per-sample and reversed grids mapped onto ``[0, 1]``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from pl_pac_trs.trs.integrators import FixedGridIntegrator

__all__ = ["TorchDiffEq"]


class _IntervalField(nn.Module):
    """``d x / d s = dt * f(t0 + s dt, x)`` on ``s in [0, 1]``: one data interval per sample.

    One instance per interval, never mutated: ``odeint_adjoint`` keeps the function and calls it
    again in the backward pass, which must see this interval's ``t0``/``dt`` (``(B,)`` each).
    """

    def __init__(self, field: nn.Module, t0: Tensor, dt: Tensor) -> None:
        super().__init__()
        self.field = field
        self.t0 = t0
        self.dt = dt

    def forward(self, s: Tensor, x: Tensor) -> Tensor:
        return self.dt[:, None] * self.field(self.t0 + s * self.dt, x)


def _check_method(method: str) -> None:
    """Raises ``ValueError`` if torchdiffeq does not know ``method``: torchdiffeq's public
    ``odeint`` is asked on a one-step problem (it names the methods it knows when it refuses)."""
    import torchdiffeq

    if not isinstance(method, str) or not method:
        raise ValueError(f"TorchDiffEq: method must be a torchdiffeq method name, got {method!r}")
    try:
        torchdiffeq.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1e-3]), method=method)
    except ValueError as err:
        if "Invalid method" in str(err):
            raise ValueError(f"TorchDiffEq: unknown torchdiffeq method {method!r}: {err}") from None
    except Exception:  # a known method that needs options this probe does not give
        pass


class TorchDiffEq(FixedGridIntegrator):
    """Any ``torchdiffeq`` solver, applied per data interval.

    torchdiffeq integrates all samples on one shared time grid; to allow per-sample (and
    backward) grids, each interval ``[t_k, t_{k+1}]`` of every sample is mapped to ``s in [0, 1]``
    (``t = t_k + s dt_k``, ``dx/ds = dt_k f(t, x)``), which is exact, and solved by one
    ``odeint`` call per interval. Fixed-grid methods (``rk4``, ``euler``, ``midpoint``...) take one
    step per interval unless ``options={"step_size": ...}`` says otherwise.

    Args:
        method: torchdiffeq method name (``"dopri5"``, ``"rk4"``, ``"bosh3"``...).
        adjoint: use ``odeint_adjoint`` (memory-light gradients; the field must be a Module).
        rtol: relative tolerance (adaptive methods).
        atol: absolute tolerance (adaptive methods).
        options: extra solver options passed to torchdiffeq.
    """

    name = "torchdiffeq"

    def __init__(
        self,
        method: str = "dopri5",
        adjoint: bool = False,
        rtol: float = 1e-7,
        atol: float = 1e-9,
        options: dict[str, Any] | None = None,
    ) -> None:
        _check_method(method)
        self.method = method
        self.adjoint = bool(adjoint)
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.options = dict(options or {})

    def step(self, field: nn.Module, x: Tensor, t0: Tensor, t1: Tensor, h: Tensor) -> Tensor:
        import torchdiffeq

        grid = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
        kwargs: dict[str, Any] = {"method": self.method, "rtol": self.rtol, "atol": self.atol}
        if self.options:
            kwargs["options"] = self.options
        # a fresh wrapper per interval: odeint_adjoint re-evaluates it in the backward pass
        dt = h[:, 0]
        wrapped = _IntervalField(field, t0, dt)
        if not self.adjoint:
            return torchdiffeq.odeint(wrapped, x, grid, **kwargs)[-1]
        # the interval's times count as parameters too, so that gradients with respect to t
        # reach the grid as with odeint (torchdiffeq drops those not requiring grad)
        params = (*field.parameters(), t0, dt)
        return torchdiffeq.odeint_adjoint(wrapped, x, grid, adjoint_params=params, **kwargs)[-1]

    def __repr__(self) -> str:
        return f"TorchDiffEq(method={self.method!r}, adjoint={self.adjoint})"
