"""MLP regressor for the Friedman #1 transfer task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn
from torchmetrics import MeanSquaredError, Metric
from typing_extensions import override

from pl_pac_trs.models.base import TaskModule

__all__ = ["MLPRegressor"]


class MLPRegressor(TaskModule):
    """``in -> [Linear -> ReLU] * len(hidden) -> head`` regression MLP trained with MSE.

    Logs ``train/loss``, ``val/mse`` and ``test/mse``.

    Args:
        in_features: Input size (10 for Friedman #1).
        hidden: Hidden widths.
        out_features: Output size.
        optimizer: See :class:`~pl_pac_trs.models.base.TaskModule`.
        lr: Learning rate.
        weight_decay: Weight decay.
        fused: Fused optimiser implementation (see :class:`~pl_pac_trs.models.base.TaskModule`).

    Raises:
        ValueError: for an empty ``hidden`` or a width below 1 (and see
            :class:`~pl_pac_trs.models.base.TaskModule`).

    Example:
        >>> import torch
        >>> MLPRegressor(hidden=(8,))(torch.zeros(5, 10)).shape
        torch.Size([5, 1])
    """

    progress_metric = "mse"

    def __init__(
        self,
        in_features: int = 10,
        hidden: Sequence[int] = (64, 64),
        out_features: int = 1,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        fused: bool = False,
    ) -> None:
        super().__init__(optimizer, lr, weight_decay, fused)
        if not hidden or any(h <= 0 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of positive widths, got {hidden}")
        self.save_hyperparameters()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_features)
        self.add_metrics(mse=MeanSquaredError)

    @override
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean squared error."""
        return nn.functional.mse_loss(output, target)

    @override
    def update_metrics(self, stage: str, output: Tensor, target: Tensor) -> Mapping[str, Metric]:
        mse = self.metrics[f"{stage}_mse"]
        mse.update(output, target)
        return {"mse": mse}
