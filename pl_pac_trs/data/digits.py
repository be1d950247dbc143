"""Image-classification transfer on scikit-learn's bundled 8x8 digits (no download).

The source task classifies one subset of the digits, the target task another (disjoint by
default) with only a few training images per class. Labels are re-indexed ``0..k-1`` within
each task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch.utils.data import TensorDataset
from typing_extensions import override

from pl_pac_trs.data.transfer import TransferDataModule

__all__ = ["DigitsTransferDataModule"]


class DigitsTransferDataModule(TransferDataModule):
    """Source or target split of the digits transfer problem.

    Each class's images are split once (seeded) into test (40%), validation (20%) and a training
    pool (40%, about 70 images). The source task trains on its classes' whole pool; the target
    task on the first ``target_per_class`` images per class of its pool.

    Args:
        task: ``"source"`` or ``"target"``.
        source_classes: Digits of the source task.
        target_classes: Digits of the target task.
        target_per_class: Training images per target class (few-shot).
        seed: Seed of the split.
        batch_size: Training batch size (capped at the training-set size).

    Raises:
        ValueError: for another ``task``, fewer than two distinct digits in 0..9 per task, a
            ``target_per_class`` outside 1..60 or a ``batch_size`` below 1.

    Example:
        >>> dm = DigitsTransferDataModule("target", target_classes=(7, 8), target_per_class=3)
        >>> dm.setup()
        >>> dm.num_classes, len(dm.sets["train"])
        (2, 6)
    """

    def __init__(
        self,
        task: Literal["source", "target"] = "source",
        source_classes: Sequence[int] = (0, 1, 2, 3, 4, 5),
        target_classes: Sequence[int] = (6, 7, 8, 9),
        target_per_class: int = 5,
        seed: int = 0,
        batch_size: int = 64,
    ) -> None:
        super().__init__(task, batch_size)
        for name, classes in (
            ("source_classes", source_classes),
            ("target_classes", target_classes),
        ):
            if (
                len(classes) < 2
                or len(set(classes)) != len(classes)
                or not set(classes) <= set(range(10))
            ):
                raise ValueError(f"{name} must be >= 2 distinct digits in 0..9, got {classes}")
        if not 1 <= target_per_class <= 60:
            raise ValueError(f"target_per_class must be in 1..60, got {target_per_class}")
        self.save_hyperparameters()
        self.classes = list(source_classes if task == "source" else target_classes)

    @property
    def num_classes(self) -> int:
        """Classes of the selected task."""
        return len(self.classes)

    @override
    def setup(self, stage: str | None = None) -> None:
        from sklearn.datasets import load_digits

        images, labels = load_digits(return_X_y=True)
        images = (images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
        parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "val": [], "test": []}
        for new_label, digit in enumerate(self.classes):
            # each digit's split depends on (seed, digit) only: a digit in both the source and
            # the target classes has the same test images in both, never another task's train
            rng = np.random.default_rng([self.hparams.seed, digit])
            idx = rng.permutation(np.flatnonzero(labels == digit))
            n_test, n_val = int(0.4 * len(idx)), int(0.2 * len(idx))
            split = {
                "test": idx[:n_test],
                "val": idx[n_test : n_test + n_val],
                "train": idx[n_test + n_val :],
            }
            if self.task == "target":
                split["train"] = split["train"][: self.hparams.target_per_class]
            for key, ids in split.items():
                parts[key].append((images[ids], np.full(len(ids), new_label)))
        self.sets = {
            key: TensorDataset(
                torch.from_numpy(np.concatenate([p[0] for p in value])),
                torch.from_numpy(np.concatenate([p[1] for p in value])).long(),
            )
            for key, value in parts.items()
        }
