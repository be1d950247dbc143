"""``RolloutMetrics``: the test metrics of trajectory rollouts, computed as one dict to log."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn

from pl_pac_trs.metrics.trajectory import EnergyMSE, PerTrajectoryMetric, TrajectoryMSE

__all__ = ["RolloutMetrics"]


class RolloutMetrics(nn.Module):
    """Trajectory MSE, energy MSE (when the energy is known) and one MSE per body, each with
    its (population) standard deviation over trajectories, times ``scale``.

    :meth:`compute` returns exactly what is logged, so a module logs it in one ``log_dict``.
    Each entry is a DDP-correct :class:`~pl_pac_trs.metrics.PerTrajectoryMetric`.

    Args:
        energy: maps states ``(..., D)`` to energies ``(...)``; ``None``: no energy metric.
        bodies: coordinate groups reported separately (name -> coordinates), or ``None``.
        prefix: prepended to every key.
        scale: value multiplier (the reference reports MSE x 10^2: 100).

    Example:
        >>> import torch
        >>> metrics = RolloutMetrics(energy=lambda x: x.pow(2).sum(-1), bodies={"q": [0]})
        >>> metrics.update(torch.zeros(2, 3, 2), torch.ones(2, 3, 2))
        >>> {k: float(v) for k, v in metrics.compute().items()}  # doctest: +NORMALIZE_WHITESPACE
        {'test/traj_mse': 100.0, 'test/traj_mse_std': 0.0, 'test/energy_mse': 400.0,
         'test/energy_mse_std': 0.0, 'test/q_mse': 100.0, 'test/q_mse_std': 0.0}
    """

    def __init__(
        self,
        energy: Callable[[Tensor], Tensor] | None = None,
        bodies: Mapping[str, Sequence[int]] | None = None,
        prefix: str = "test/",
        scale: float = 100.0,
    ) -> None:
        super().__init__()
        metrics: dict[str, PerTrajectoryMetric] = {"traj_mse": TrajectoryMSE(scale=scale)}
        if energy is not None:
            metrics["energy_mse"] = EnergyMSE(energy, scale=scale)
        for name, indices in (bodies or {}).items():
            metrics[f"{name}_mse"] = TrajectoryMSE(indices=indices, scale=scale)
        self.metrics = nn.ModuleDict(metrics)
        self.prefix = prefix

    def update(self, pred: Tensor, target: Tensor, index: Tensor | None = None) -> None:
        """Add trajectories ``(N, S, D)`` (see :meth:`PerTrajectoryMetric.update`)."""
        for metric in self.metrics.values():
            metric.update(pred, target, index)

    def compute(self) -> dict[str, Tensor]:
        """``{prefix + name: mean, prefix + name + "_std": std}`` over all processes."""
        out: dict[str, Tensor] = {}
        for name, metric in self.metrics.items():
            key = self.prefix + name
            out[key], out[f"{key}_std"] = metric.compute_mean_std()
        return out

    def reset(self) -> None:
        """Forget every trajectory seen."""
        for metric in self.metrics.values():
            metric.reset()
