"""MLP regressor for the Friedman #1 transfer task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics import MeanSquaredError

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
    """

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
        self.val_mse = MeanSquaredError()
        self.test_mse = MeanSquaredError()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _eval(self, batch, metric: MeanSquaredError, stage: str) -> None:
        x, y = batch
        metric.update(self(x), y)
        self.log(f"{stage}/mse", metric, on_epoch=True, prog_bar=stage == "val")

    def validation_step(self, batch, batch_idx):
        self._eval(batch, self.val_mse, "val")

    def test_step(self, batch, batch_idx):
        self._eval(batch, self.test_mse, "test")
