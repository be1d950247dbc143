"""Integrators by name: ``make_integrator("leapfrog" | "rk4" | "euler" | "torchdiffeq:<m>")``."""

from __future__ import annotations

from typing import Any

from pl_pac_trs.trs.integrators import RK4, Euler, Integrator, Leapfrog
from pl_pac_trs.trs.torchdiffeq_integrator import TorchDiffEq

__all__ = ["make_integrator"]

_NAMES = {"leapfrog": Leapfrog, "rk4": RK4, "euler": Euler}


def make_integrator(spec: str | Integrator, **options: Any) -> Integrator:
    """An integrator from a name or an instance (returned as is).

    Args:
        spec: ``"leapfrog"``, ``"rk4"``, ``"euler"``, ``"torchdiffeq"`` (dopri5) or
            ``"torchdiffeq:<method>"`` (e.g. ``"torchdiffeq:rk4"``), or an :class:`Integrator`.
        **options: keyword arguments of the integrator's class (e.g. ``adjoint=True``).

    Raises:
        ValueError: unknown name.
    """
    if isinstance(spec, Integrator):
        if options:
            raise ValueError(f"integrator options {sorted(options)} given with an instance")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"integrator must be a name or an Integrator, got {type(spec).__name__}")
    name = spec.strip().lower()
    if name in _NAMES:
        return _NAMES[name](**options)
    if name == "torchdiffeq" or name.startswith("torchdiffeq:"):
        method = name.partition(":")[2] or "dopri5"
        return TorchDiffEq(method=method, **options)
    raise ValueError(
        f"unknown integrator {spec!r}: expected one of {sorted(_NAMES)} or 'torchdiffeq:<method>'"
    )
