"""Functional twins of the trajectory metrics: per-trajectory errors and their mean/std.

Convention of the TRS-ODEN reference code: the reported number is the mean over test
trajectories of each trajectory's MSE (over time and state), times ``scale`` (100), with the
(population) standard deviation over trajectories.

>>> import torch
>>> pred = torch.zeros(2, 3, 2)  # 2 trajectories, 3 steps, (q, p)
>>> target = torch.tensor([[[0.1, 0.0]] * 3, [[0.3, 0.0]] * 3])
>>> per_trajectory_mse(pred, target)  # each over time and state
tensor([0.0050, 0.0450])
>>> per_trajectory_mse(pred, target, indices=[1])  # p alone
tensor([0., 0.])
>>> mean, std = trajectory_mse(pred, target)  # x100, mean and std over trajectories
>>> round(mean.item(), 4), round(std.item(), 4)
(2.5, 2.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "energy_mse",
    "mean_std",
    "per_trajectory_energy_mse",
    "per_trajectory_mse",
    "trajectory_mse",
]


def _check(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() < 2:
        raise ValueError(
            f"pred and target must have the same shape (N, S, D) or (N, S), got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )


def per_trajectory_mse(
    pred: Tensor, target: Tensor, indices: Sequence[int] | None = None
) -> Tensor:
    """MSE of each trajectory over time and (selected) state coordinates.

    Args:
        pred: predicted trajectories ``(N, S, D)``.
        target: true trajectories ``(N, S, D)``.
        indices: state coordinates to include (e.g. one body's ``[q1, p1]``); ``None``: all.

    Returns:
        ``(N,)`` per-trajectory MSE.
    """
    _check(pred, target)
    if indices is not None:
        idx = torch.as_tensor(list(indices), device=pred.device, dtype=torch.long)
        pred, target = pred.index_select(-1, idx), target.index_select(-1, idx)
    return (pred - target).pow(2).flatten(1).mean(dim=1)


def per_trajectory_energy_mse(
    pred: Tensor, target: Tensor, energy: Callable[[Tensor], Tensor]
) -> Tensor:
    """MSE of each trajectory's energy over time, ``(N,)``; ``energy`` maps ``(..., D)->(...)``."""
    _check(pred, target)
    return (energy(pred) - energy(target)).pow(2).flatten(1).mean(dim=1)


def mean_std(values: Tensor, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """``(mean, population std)`` of ``values * scale``."""
    values = values * scale
    return values.mean(), values.std(correction=0)


def trajectory_mse(
    pred: Tensor, target: Tensor, indices: Sequence[int] | None = None, scale: float = 100.0
) -> tuple[Tensor, Tensor]:
    """Mean and std over trajectories of the per-trajectory MSE, times ``scale``."""
    return mean_std(per_trajectory_mse(pred, target, indices), scale)


def energy_mse(
    pred: Tensor, target: Tensor, energy: Callable[[Tensor], Tensor], scale: float = 100.0
) -> tuple[Tensor, Tensor]:
    """Mean and std over trajectories of the per-trajectory energy MSE, times ``scale``."""
    return mean_std(per_trajectory_energy_mse(pred, target, energy), scale)
