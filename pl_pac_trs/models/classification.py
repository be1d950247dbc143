"""Image classifiers for the digits transfer task: the shared loss and metrics, and a small CNN
with batch norm (:class:`SmallCNN`; the ResNet-style one is in :mod:`pl_pac_trs.models.resnet`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric
from typing_extensions import override

from pl_pac_trs.models.base import TaskModule

__all__ = ["ClassificationTask", "SmallCNN"]


class ClassificationTask(TaskModule):
    """Cross-entropy classification on top of :class:`~pl_pac_trs.models.base.TaskModule`.

    A subclass builds ``body`` and ``head`` (logits) and calls :meth:`add_classification_metrics`.
    Accuracy is a mean of per-sample correctness (a DDP-synchronised ``MeanMetric``), so the same
    module can be evaluated with a head of another size (the source head inside
    :func:`~pl_pac_trs.pac.source_view`). Logs ``train/loss``, ``{val,test}/loss`` and
    ``{val,test}/acc``.
    """

    progress_metric = "acc"

    def add_classification_metrics(self) -> None:
        """Registers ``acc`` and ``loss`` per evaluation stage."""
        self.add_metrics(acc=MeanMetric, loss=MeanMetric)

    @override
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy of the logits ``output`` against the class indices ``target``."""
        return nn.functional.cross_entropy(output, target)

    @override
    def update_metrics(self, stage: str, output: Tensor, target: Tensor) -> Mapping[str, Metric]:
        acc, loss = self.metrics[f"{stage}_acc"], self.metrics[f"{stage}_loss"]
        acc.update((output.argmax(dim=1) == target).float())
        loss.update(nn.functional.cross_entropy(output, target, reduction="none"))
        return {"acc": acc, "loss": loss}


class SmallCNN(ClassificationTask):
    """``[Conv3x3 -> BatchNorm -> ReLU] * len(channels) -> 2x2 max pool -> flatten -> head``.

    Loss and metrics: :class:`ClassificationTask` (``train/loss``, ``{val,test}/loss``,
    ``{val,test}/acc``).

    Args:
        num_classes: Classes of the head.
        channels: Output channels of the conv blocks.
        in_channels: Image channels.
        image_size: Image height and width.
        optimizer: See :class:`~pl_pac_trs.models.base.TaskModule`.
        lr: Learning rate.
        weight_decay: Weight decay.
        fused: Fused optimiser implementation (see :class:`~pl_pac_trs.models.base.TaskModule`).

    Raises:
        ValueError: for ``num_classes < 2`` (and see :class:`~pl_pac_trs.models.base.TaskModule`).

    Example:
        >>> import torch
        >>> SmallCNN(num_classes=3, channels=(4,))(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 3])
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
        self.add_classification_metrics()
