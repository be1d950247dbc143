"""torchmetrics ``Metric``\\ s for trajectory rollouts, DDP-correct.

Each metric keeps one value per test trajectory together with the trajectory's dataset index
(both ``"cat"`` states, gathered across processes). Under DDP, Lightning's distributed sampler
pads the test set by repeating trajectories so that every rank gets the same number; the
repeats carry the index of the original and are counted once, so the mean and the (population)
standard deviation over the test trajectories come out exactly as on one process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

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
        self.add_state("traj_values", default=[], dist_reduce_fx="cat")
        self.add_state("traj_index", default=[], dist_reduce_fx="cat")

    def per_trajectory(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, pred: Tensor, target: Tensor, index: Tensor | None = None) -> None:
        """Add trajectories ``pred``/``target`` of shape ``(N, S, D)``.

        Args:
            pred: predicted trajectories.
            target: true trajectories.
            index: ``(N,)`` dataset indices of the trajectories; a trajectory seen again with
                the same index (the padding of a distributed sampler) is counted once. ``None``:
                every trajectory counts.
        """
        values = self.per_trajectory(pred.detach(), target.detach()).double() * self.scale
        if index is None:
            index = torch.full((values.numel(),), -1, dtype=torch.long, device=values.device)
        elif index.shape != values.shape:
            raise ValueError(
                f"{type(self).__name__}: index must have shape {tuple(values.shape)} (one per "
                f"trajectory), got {tuple(index.shape)}"
            )
        self.traj_values.append(values)
        self.traj_index.append(index.to(device=values.device, dtype=torch.long))

    def _mean_std(self) -> tuple[Tensor, Tensor]:
        nan = torch.tensor(float("nan"), device=self.device)
        if isinstance(self.traj_values, list) and not self.traj_values:
            return nan, nan
        values, indices = dim_zero_cat(self.traj_values), dim_zero_cat(self.traj_index)
        keep = indices < 0
        indexed = torch.nonzero(~keep).squeeze(1)
        if indexed.numel():  # an indexed trajectory counts once, however often it was seen
            keep[indexed[_first_occurrence(indices[indexed])]] = True
        values = values[keep]
        if values.numel() == 0:
            return nan, nan
        return values.mean().float(), values.std(correction=0).float()

    def compute_mean_std(self) -> tuple[Tensor, Tensor]:
        """``(mean, population std)`` over all trajectories seen by all processes."""
        with self.sync_context():
            return self._mean_std()

    def compute(self) -> Tensor:
        """Mean over all trajectories seen by all processes."""
        return self._mean_std()[0]


def _first_occurrence(index: Tensor) -> Tensor:
    """The position of the first occurrence of each distinct value of ``index``."""
    unique, inverse = torch.unique(index, return_inverse=True)
    positions = torch.arange(index.numel(), device=index.device)
    first = torch.full_like(unique, index.numel())
    return first.scatter_reduce_(0, inverse, positions, reduce="amin")


class TrajectoryMSE(PerTrajectoryMetric):
    """Trajectory MSE (x ``scale``): mean over trajectories of each one's MSE over time/state.

    Args:
        indices: coordinates to include (per-body MSE, e.g. ``[0, 2]`` for ``(q1, p1)``).
        scale: value multiplier (reference: 100).

    Batches accumulate; with ``index`` a trajectory seen twice (a distributed sampler's padding)
    counts once:

    >>> import torch
    >>> metric = TrajectoryMSE()
    >>> target = torch.tensor([[[0.1, 0.0]] * 3, [[0.3, 0.0]] * 3])
    >>> metric.update(torch.zeros(2, 3, 2), target, index=torch.tensor([0, 1]))
    >>> metric.update(torch.zeros(1, 3, 2), target[:1], index=torch.tensor([0]))  # a repeat
    >>> round(metric.compute().item(), 4)
    2.5
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

    >>> import torch
    >>> metric = EnergyMSE(energy=lambda x: 0.5 * x.pow(2).sum(-1))
    >>> metric.update(torch.zeros(1, 2, 2), torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    >>> metric.compute()  # both steps: energy 0.5 against 0, squared, x100
    tensor(25.)
    """

    def __init__(self, energy: Callable[[Tensor], Tensor], scale: float = 100.0, **kwargs):
        super().__init__(scale=scale, **kwargs)
        if not callable(energy):
            raise TypeError(f"EnergyMSE: energy must be callable, got {type(energy).__name__}")
        self.energy = energy

    def per_trajectory(self, pred: Tensor, target: Tensor) -> Tensor:
        return per_trajectory_energy_mse(pred, target, self.energy)
