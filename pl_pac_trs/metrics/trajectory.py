"""torchmetrics ``Metric``\\ s for trajectory rollouts, DDP-correct by summed states.

Each metric accumulates, over trajectories, the sum of per-trajectory errors, the sum of their
squares and the count (all reduced with ``"sum"`` across processes), so the mean and the
(population) standard deviation over ALL test trajectories of all ranks come out exactly as on
one process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from pl_pac_trs.metrics.functional import per_trajectory_energy_mse, per_trajectory_mse

__all__ = ["EnergyMSE", "PerTrajectoryMetric", "TrajectoryMSE"]


class PerTrajectoryMetric(Metric):
    """Base: mean and std over trajectories of a per-trajectory error, times ``scale``.

    ``compute()`` returns the mean; :meth:`compute_mean_std` returns ``(mean, std)``.

    Args:
        scale: multiply the values (the reference reports MSE x 10^2, ``scale=100``).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, scale: float = 100.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.add_state(
            "total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state(
            "total_sq", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def per_trajectory(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add trajectories ``pred``/``target`` of shape ``(N, S, D)``."""
        values = self.per_trajectory(pred.detach(), target.detach()).double() * self.scale
        self.total += values.sum()
        self.total_sq += values.pow(2).sum()
        self.count += values.numel()

    def _mean_std(self) -> tuple[Tensor, Tensor]:
        if self.count == 0:
            nan = torch.tensor(float("nan"), device=self.total.device)
            return nan, nan
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean**2).clamp_min(0.0)
        return mean.float(), var.sqrt().float()

    def compute_mean_std(self) -> tuple[Tensor, Tensor]:
        """``(mean, population std)`` over all trajectories seen by all processes."""
        with self.sync_context():
            return self._mean_std()

    def compute(self) -> Tensor:
        """Mean over all trajectories seen by all processes."""
        return self._mean_std()[0]


class TrajectoryMSE(PerTrajectoryMetric):
    """Trajectory MSE (x ``scale``): mean over trajectories of each one's MSE over time/state.

    Args:
        indices: coordinates to include (per-body MSE, e.g. ``[0, 2]`` for ``(q1, p1)``).
        scale: value multiplier (reference: 100).
    """

    def __init__(self, indices: Sequence[int] | None = None, scale: float = 100.0, **kwargs):
        super().__init__(scale=scale, **kwargs)
        self.indices = None if indices is None else [int(i) for i in indices]

    def per_trajectory(self, pred: Tensor, target: Tensor) -> Tensor:
        return per_trajectory_mse(pred, target, self.indices)


class EnergyMSE(PerTrajectoryMetric):
    """Energy MSE (x ``scale``): mean over trajectories of each one's energy MSE over time.

    Args:
        energy: maps states ``(..., D)`` to energies ``(...)``.
        scale: value multiplier (reference: 100).
    """

    def __init__(self, energy: Callable[[Tensor], Tensor], scale: float = 100.0, **kwargs):
        super().__init__(scale=scale, **kwargs)
        if not callable(energy):
            raise TypeError(f"EnergyMSE: energy must be callable, got {type(energy).__name__}")
        self.energy = energy

    def per_trajectory(self, pred: Tensor, target: Tensor) -> Tensor:
        return per_trajectory_energy_mse(pred, target, self.energy)
