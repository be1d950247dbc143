"""The time-reversal symmetric loss ``L = L_ODE + trs_weight * L_TRS`` and its batched rollout.

Forward rollout ``X`` from ``x0`` along ``t``; backward rollout ``Xr`` from ``R x0`` along ``-t``
(steps ``-dt``; time-augmented fields are evaluated at ``-t``). ``L_ODE = mean (y - X)^2`` and
``L_TRS = mean (R X - Xr)^2`` over batch, steps and state dimensions; with ``time_weighted``, each
step's TRS error is weighted by ``t_k / max t`` (absolute times, max over the batch).

:func:`paired_rollout` computes both rollouts in ONE integrator call over the doubled batch
``[x0, R x0]`` with grids ``[t, -t]``, which halves the Python/kernel-launch overhead of the
integrator loop; ``batched=False`` gives the two-call reference computation.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from pl_pac_trs.trs.integrators import Integrator
from pl_pac_trs.trs.reversal import Reversal

__all__ = ["TRSLoss", "paired_rollout", "trs_loss", "trs_terms"]


class TRSLoss(NamedTuple):
    """The loss ``total = ode + trs_weight * trs`` and its parts (``trs`` is ``None`` when it
    was not computed)."""

    total: Tensor
    ode: Tensor
    trs: Tensor | None


def paired_rollout(
    field: nn.Module,
    integrator: Integrator,
    x0: Tensor,
    t: Tensor,
    reversal: Reversal,
    batched: bool = True,
) -> tuple[Tensor, Tensor]:
    """Forward rollout from ``x0`` along ``t`` and backward rollout from ``R x0`` along ``-t``.

    Args:
        field: vector field ``f(t, x)``.
        integrator: the integrator.
        x0: start states ``(B, D)``.
        t: time grids ``(B, S + 1)``.
        reversal: the reversing operator ``R``.
        batched: one integrator call over the doubled batch (default) or two calls.

    Returns:
        ``(X, Xr)``, each ``(B, S, D)``.
    """
    rx0 = reversal(x0)
    if not batched:
        return integrator(field, x0, t), integrator(field, rx0, -t)
    both = integrator(field, torch.cat([x0, rx0], dim=0), torch.cat([t, -t], dim=0))
    return both[: x0.shape[0]], both[x0.shape[0] :]


def trs_terms(
    pred: Tensor,
    pred_reversed: Tensor,
    reversal: Reversal,
    t: Tensor | None = None,
    time_weighted: bool = False,
) -> Tensor:
    """``L_TRS = mean (R X - Xr)^2``, optionally weighted per step by ``t_k / max t``.

    Args:
        pred: forward rollout ``X`` ``(B, S, D)``.
        pred_reversed: backward rollout ``Xr`` ``(B, S, D)``.
        reversal: ``R``.
        t: time grids ``(B, S + 1)`` (needed when ``time_weighted``).
        time_weighted: weight step ``k`` by ``t_k / max(t)`` (``t_k`` absolute; max over batch).
    """
    err = (reversal(pred) - pred_reversed).pow(2)
    if time_weighted:
        if t is None:
            raise ValueError("trs_terms: time_weighted=True needs the time grids t")
        tk = t[:, 1:].to(err.dtype)
        weight = tk / tk.max()
        err = err * weight.unsqueeze(-1)
    return err.mean()


def trs_loss(
    field: nn.Module,
    integrator: Integrator,
    x0: Tensor,
    t: Tensor,
    y: Tensor,
    reversal: Reversal | None,
    trs_weight: float = 0.0,
    time_weighted: bool = False,
    batched: bool = True,
    compute_trs: bool | None = None,
) -> TRSLoss:
    """``L = L_ODE + trs_weight * L_TRS`` for one batch of windows.

    Args:
        field: vector field ``f(t, x)``.
        integrator: the integrator.
        x0: start states ``(B, D)``.
        t: absolute time grids ``(B, S + 1)``.
        y: observed states at ``t[:, 1:]``, ``(B, S, D)``.
        reversal: ``R`` (may be ``None`` when the TRS term is not computed).
        trs_weight: weight of ``L_TRS``; ``0`` gives the ODEN/HODEN loss.
        time_weighted: weight TRS errors by ``t_k / max t``.
        batched: one integrator call for both rollouts (default) or two.
        compute_trs: compute ``L_TRS`` even when ``trs_weight == 0`` (for logging); default:
            ``trs_weight != 0``.

    Returns:
        :class:`TRSLoss` ``(total, ode, trs)``.

    Raises:
        ValueError: the TRS term is to be computed without a reversal.

    Example:
        >>> from pl_pac_trs.trs import Leapfrog, ODENField, Reversal
        >>> x0, t, y = torch.zeros(4, 2), torch.linspace(0, 1, 6).expand(4, 6), torch.zeros(4, 5, 2)
        >>> R = Reversal.momentum_flip(2, 1)
        >>> out = trs_loss(ODENField(2, (8,)), Leapfrog(), x0, t, y, R, trs_weight=10.0)
        >>> bool(out.total == out.ode + 10.0 * out.trs)
        True
    """
    if compute_trs is None:
        compute_trs = trs_weight != 0
    if compute_trs:
        if reversal is None:
            raise ValueError("trs_loss: the TRS term needs a reversal operator R")
        pred, pred_reversed = paired_rollout(field, integrator, x0, t, reversal, batched=batched)
        trs = trs_terms(pred, pred_reversed, reversal, t, time_weighted)
    else:
        pred, trs = integrator(field, x0, t), None
    ode = (pred - y).pow(2).mean()
    total = ode + trs_weight * trs if (trs is not None and trs_weight != 0) else ode
    return TRSLoss(total, ode, trs)
