"""Set-up checks of a TRS model against its data, before any optimizer step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from pl_pac_trs.trs.integrators import Integrator, Leapfrog
from pl_pac_trs.trs.reversal import Reversal

__all__ = ["check_model", "rollout_mode"]


@contextlib.contextmanager
def rollout_mode() -> Iterator[None]:
    """No gradients, but outside inference mode, so Hamiltonian fields can use autograd."""
    with torch.inference_mode(False), torch.no_grad():
        yield


def check_model(
    vector_field: nn.Module,
    integrator: Integrator,
    reversal: Reversal | None,
    state_dim: int,
    position_dim: int | None,
    needs_reversal: bool,
    device: torch.device | str = "cpu",
) -> Reversal | None:
    """Check the field, ``R`` and the integrator against the data's state dimension.

    Builds the default ``R = (q, p) -> (q, -p)`` from ``position_dim`` when ``reversal`` is
    ``None``, and fills in a :class:`~pl_pac_trs.trs.Leapfrog`'s unset ``position_dim``.

    Args:
        vector_field: the field ``f(t, x)``.
        integrator: the integrator (a leapfrog's split is checked and may be filled in).
        reversal: the given ``R``, or ``None``.
        state_dim: the data's state dimension ``D``.
        position_dim: the resolved number of position coordinates, or ``None``.
        needs_reversal: whether the loss needs ``R`` (``trs_weight > 0``).
        device: where a built ``R`` and the probe state go.

    Returns:
        ``R`` (the given one, a built one, or ``None`` when neither is possible nor needed).

    Raises:
        ValueError: the field's ``state_dim``, ``R``'s length or a leapfrog split disagrees
            with the data, the field does not map ``(B, D)`` to ``(B, D)``, or ``R`` is needed
            and cannot be built.

    Example:
        >>> from pl_pac_trs.trs import ODENField
        >>> check_model(ODENField(2, (4,)), Leapfrog(), None, 2, 1, needs_reversal=True)
        Reversal(signs=[1.0, -1.0])
    """
    field_dim = getattr(vector_field, "state_dim", None)
    if field_dim is not None and int(field_dim) != state_dim:
        raise ValueError(
            f"TRSODEN: vector_field has state_dim={field_dim} but the data has state "
            f"dimension {state_dim}"
        )
    if reversal is None and position_dim is not None:
        reversal = Reversal.momentum_flip(state_dim, position_dim).to(device)
    if reversal is not None:
        reversal.check_state_dim(state_dim, "the data")
    elif needs_reversal:
        raise ValueError(
            "TRSODEN: trs_weight > 0 needs a reversing operator: pass reversal=Reversal([...]) "
            "or use a datamodule with position_dim (the default R is (q, p) -> (q, -p))"
        )
    if isinstance(integrator, Leapfrog):
        if integrator.position_dim is None and position_dim is not None:
            integrator.position_dim = position_dim
        split = integrator.split(state_dim)
        field_pd = getattr(vector_field, "position_dim", None)
        if field_pd is not None and field_pd != split:
            raise ValueError(
                f"TRSODEN: the field's position_dim={field_pd} differs from the leapfrog's {split}"
            )
    probe = torch.zeros(2, state_dim, device=device)
    try:
        with rollout_mode():
            out = vector_field(torch.zeros((), device=device), probe)
    except Exception as err:
        raise ValueError(
            f"TRSODEN: vector_field does not accept states of dimension {state_dim}: {err}"
        ) from err
    if tuple(out.shape) != (2, state_dim):
        raise ValueError(
            f"TRSODEN: vector_field maps (2, {state_dim}) states to shape {tuple(out.shape)}, "
            f"expected (2, {state_dim})"
        )
    return reversal
