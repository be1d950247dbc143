"""The base of the PAC-Net transfer datamodules: a source or target task as tensor datasets.

A subclass validates and stores its own arguments and fills ``self.sets`` (``"train"``,
``"val"``, ``"test"``) in :meth:`~lightning.pytorch.LightningDataModule.setup`; this base checks
the task and batch size and serves the loaders: training batches shuffled per epoch by
:class:`~pl_pac_trs.data.sampling.EpochSeededSampler`, evaluation in batches of
:attr:`TransferDataModule.eval_batch_size`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from pl_pac_trs.data.sampling import EpochSeededSampler

__all__ = ["TASKS", "TransferDataModule"]

TASKS = ("source", "target")


class TransferDataModule(LightningDataModule):
    """Source or target task of a transfer problem, split into train/val/test datasets.

    Args:
        task: ``"source"`` or ``"target"``.
        batch_size: Training batch size (capped at the training-set size).

    Raises:
        ValueError: for another ``task`` or a ``batch_size`` below 1.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> class Ramp(TransferDataModule):
        ...     def setup(self, stage=None):
        ...         x = torch.arange(10.0)[:, None]
        ...         self.sets = {k: TensorDataset(x, 2 * x) for k in ("train", "val", "test")}
        >>> dm = Ramp("target", batch_size=64)
        >>> dm.setup()
        >>> next(iter(dm.train_dataloader()))[0].shape  # the batch is capped at the 10 items
        torch.Size([10, 1])
    """

    #: Batch size of the validation and test loaders.
    eval_batch_size: ClassVar[int] = 512

    def __init__(self, task: Literal["source", "target"] = "source", batch_size: int = 64) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be 'source' or 'target', got {task!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.task = task
        self.batch_size = batch_size
        self.sets: dict[str, Dataset] = {}

    @override
    def train_dataloader(self) -> DataLoader:
        data = self.sets["train"]
        batch_size = min(self.batch_size, len(data))
        return DataLoader(data, batch_size=batch_size, sampler=EpochSeededSampler(data))

    @override
    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.sets["val"], batch_size=self.eval_batch_size)

    @override
    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.sets["test"], batch_size=self.eval_batch_size)
