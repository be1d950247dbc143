"""Shared optimiser set-up of the task modules."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule

__all__ = ["OPTIMIZERS", "TaskModule"]

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}
FUSED = ("adam", "adamw", "sgd")
"""The optimizers with a fused implementation (``fused=True``, CPU and CUDA)."""


class TaskModule(LightningModule):
    """Base of the transfer-task modules: a ``body`` and a ``head`` and a configurable optimiser.

    The final layer is always the attribute ``head`` so that PAC-Net callbacks, ``LinearProbe``
    and ``LoadSourceWeights(skip=["head"])`` can name it.

    Args:
        optimizer: One of ``adam``, ``adamw``, ``sgd`` (momentum 0.9), ``rmsprop``.
        lr: Learning rate.
        weight_decay: Weight decay of the optimiser.
        fused: Use the optimiser's fused implementation (one kernel per tensor; ``adam``,
            ``adamw``, ``sgd``). Off by default. On CPU it is faster, and under PAC-Net it avoids
            the slow ``sqrt`` of the exactly-zero second moments a pruned model creates (see
            ``docs/pac.md``, Overhead); results differ from the default in the last bits.
    """

    def __init__(
        self,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        fused: bool = False,
    ):
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if fused and optimizer not in FUSED:
            raise ValueError(
                f"fused=True needs an optimizer with a fused implementation {FUSED}, got "
                f"optimizer={optimizer!r}"
            )
        self.optimizer_name = optimizer
        self.fused = bool(fused)
        self.lr = lr
        self.weight_decay = weight_decay

    def configure_optimizers(self):
        kwargs = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.fused:
            kwargs["fused"] = True
        if self.optimizer_name == "sgd":
            kwargs["momentum"] = 0.9
        params = [p for p in self.parameters() if p.requires_grad]
        return OPTIMIZERS[self.optimizer_name](params, **kwargs)
