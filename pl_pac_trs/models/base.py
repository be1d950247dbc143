"""The shape every transfer-task module shares: ``head(body(x))``, one loss, evaluation metrics
and a configurable optimiser. A task writes only its network, its loss and its metric updates."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import Metric
from typing_extensions import override

__all__ = ["FUSED", "OPTIMIZERS", "TaskModule"]

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}
FUSED = ("adam", "adamw", "sgd")
"""The optimizers with a fused implementation (``fused=True``, CPU and CUDA)."""

_STAGES = ("val", "test")


class TaskModule(LightningModule):
    """Base of the transfer-task modules: a ``body``, a ``head`` and a configurable optimiser.

    The final layer is always the attribute ``head`` so that PAC-Net callbacks, ``LinearProbe``
    and ``LoadSourceWeights(skip=["head"])`` can name it. A subclass builds ``body`` and
    ``head``, registers its metrics with :meth:`add_metrics`, and implements :meth:`loss` and
    :meth:`update_metrics`; this base trains (logging ``train/loss``) and evaluates (logging
    ``{val,test}/<metric>`` per epoch, :attr:`progress_metric` in the progress bar).

    Args:
        optimizer: One of ``adam``, ``adamw``, ``sgd`` (momentum 0.9), ``rmsprop``.
        lr: Learning rate.
        weight_decay: Weight decay of the optimiser.
        fused: Use the optimiser's fused implementation (one kernel per tensor; ``adam``,
            ``adamw``, ``sgd``). Off by default. On CPU it is faster, and under PAC-Net it avoids
            the slow ``sqrt`` of the exactly-zero second moments a pruned model creates (see
            ``docs/pac.md``, Overhead); results differ from the default in the last bits.

    Raises:
        ValueError: for an unknown optimizer, ``lr <= 0``, ``weight_decay < 0`` or ``fused``
            with an optimizer that has no fused implementation.

    Example:
        >>> from torchmetrics import MeanMetric
        >>> class Linear(TaskModule):
        ...     def __init__(self):
        ...         super().__init__(optimizer="sgd", lr=0.1)
        ...         self.body, self.head = nn.Identity(), nn.Linear(2, 1)
        ...         self.add_metrics(err=MeanMetric)
        ...     def loss(self, output, target):
        ...         return (output - target).abs().mean()
        ...     def update_metrics(self, stage, output, target):
        ...         err = self.metrics[f"{stage}_err"]
        ...         err.update((output - target).abs())
        ...         return {"err": err}
        >>> model = Linear()
        >>> type(model.configure_optimizers()).__name__, sorted(model.metrics)
        ('SGD', ['test_err', 'val_err'])
    """

    #: The validation metric shown in the progress bar.
    progress_metric: ClassVar[str] = ""

    def __init__(
        self,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        fused: bool = False,
    ) -> None:
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

    def add_metrics(self, **factories: Callable[[], Metric]) -> None:
        """Register one metric per evaluation stage and name, as ``metrics["{stage}_{name}"]``.

        Args:
            **factories: metric constructors by name (e.g. ``mse=MeanSquaredError``).
        """
        self.metrics = nn.ModuleDict(
            {f"{stage}_{name}": make() for stage in _STAGES for name, make in factories.items()}
        )

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """The training loss of a batch (abstract)."""
        raise NotImplementedError

    def update_metrics(self, stage: str, output: Tensor, target: Tensor) -> Mapping[str, Metric]:
        """Update the metrics of ``stage`` (``"val"`` or ``"test"``) with a batch (abstract).

        Returns:
            The updated metrics by name, logged as ``{stage}/{name}``.
        """
        raise NotImplementedError

    @override
    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    @override
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    @override
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    @override
    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        for name, metric in self.update_metrics(stage, self(x), y).items():
            show = stage == "val" and name == self.progress_metric
            self.log(f"{stage}/{name}", metric, on_epoch=True, prog_bar=show)

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a checkpoint of a LoRA fit holds peft's parameter names: put the adapters in first,
        # so that ``load_from_checkpoint`` loads it (peft is only needed for such checkpoints)
        from pl_pac_trs.pac.lora import restore_adapters

        restore_adapters(self, checkpoint)

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        kwargs: dict[str, Any] = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.fused:
            kwargs["fused"] = True
        if self.optimizer_name == "sgd":
            kwargs["momentum"] = 0.9
        params = [p for p in self.parameters() if p.requires_grad]
        return OPTIMIZERS[self.optimizer_name](params, **kwargs)
