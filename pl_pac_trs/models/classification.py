"""Small CNN with batch norm for the digits transfer task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics import MeanMetric

from pl_pac_trs.models.base import TaskModule

__all__ = ["SmallCNN"]


class SmallCNN(TaskModule):
    """``[Conv3x3 -> BatchNorm -> ReLU] * len(channels) -> 2x2 max pool -> flatten -> head``.

    Accuracy is a mean of per-sample correctness (a DDP-synchronised ``MeanMetric``), so the same
    module can be evaluated with a head of another size (the source head inside
    :func:`~pl_pac_trs.pac.source_view`). Logs ``train/loss``, ``{val,test}/loss`` and
    ``{val,test}/acc``.

    Args:
        num_classes: Classes of the head.
        channels: Output channels of the conv blocks.
        in_channels: Image channels.
        image_size: Image height and width.
        optimizer: See :class:`~pl_pac_trs.models.base.TaskModule`.
        lr: Learning rate.
        weight_decay: Weight decay.
        fused: Fused optimiser implementation (see :class:`~pl_pac_trs.models.base.TaskModule`).
    """

    def __init__(
        self,
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32),
        in_channels: int = 1,
        image_size: int = 8,
        optimizer: str = "adam",
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        fused: bool = False,
    ) -> None:
        super().__init__(optimizer, lr, weight_decay, fused)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.save_hyperparameters()
        layers: list[nn.Module] = []
        c = in_channels
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        layers += [nn.MaxPool2d(2), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c * (image_size // 2) ** 2, num_classes)
        self.metrics = nn.ModuleDict(
            {f"{s}_{m}": MeanMetric() for s in ("val", "test") for m in ("acc", "loss")}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _eval(self, batch, stage: str) -> None:
        x, y = batch
        logits = self(x)
        acc, loss = self.metrics[f"{stage}_acc"], self.metrics[f"{stage}_loss"]
        acc.update((logits.argmax(dim=1) == y).float())
        loss.update(nn.functional.cross_entropy(logits, y, reduction="none"))
        self.log(f"{stage}/acc", acc, on_epoch=True, prog_bar=stage == "val")
        self.log(f"{stage}/loss", loss, on_epoch=True)

    def validation_step(self, batch, batch_idx):
        self._eval(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval(batch, "test")
