"""metrics subpackage: trajectory and energy errors of rollouts (torchmetrics + functional)."""

from pl_pac_trs.metrics.functional import (
    energy_mse,
    mean_std,
    per_trajectory_energy_mse,
    per_trajectory_mse,
    trajectory_mse,
)
from pl_pac_trs.metrics.rollout import RolloutMetrics
from pl_pac_trs.metrics.trajectory import EnergyMSE, PerTrajectoryMetric, TrajectoryMSE

__all__ = [
    "EnergyMSE",
    "PerTrajectoryMetric",
    "RolloutMetrics",
    "TrajectoryMSE",
    "energy_mse",
    "mean_std",
    "per_trajectory_energy_mse",
    "per_trajectory_mse",
    "trajectory_mse",
]
