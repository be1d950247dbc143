"""The base of every trajectory DataModule: splits -> windows / rollouts -> batch dictionaries.

Subclasses provide the data as :data:`~pl_pac_trs.data.splitting.Splits` through
:meth:`TrajectoryDataModule.load_splits`; the base class cuts train and val trajectories into
windows of ``time_horizon`` steps and packs every test trajectory as one whole-horizon item (see
:mod:`pl_pac_trs.data.windows` for the batch format). Simulated datasets derive from
:class:`~pl_pac_trs.data.generated.GeneratedTrajectoryDataModule`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import lightning.pytorch as pl
import numpy as np
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader
from typing_extensions import override

from pl_pac_trs.data.full_batch import FullBatchLoader
from pl_pac_trs.data.sampling import EpochSeededSampler
from pl_pac_trs.data.splitting import Splits
from pl_pac_trs.data.validation import check_count
from pl_pac_trs.data.windows import (
    WINDOW_MODES,
    BatchDictDataset,
    collate_batch,
    make_rollouts,
    make_windows,
)

__all__ = ["SPLITS", "TrajectoryDataModule"]

SPLITS = ("train", "val", "test")


class TrajectoryDataModule(pl.LightningDataModule):
    """Base DataModule yielding TRS batch dictionaries ``{"x0", "t", "y"}`` from trajectory splits.

    A subclass declares its own (explicit) constructor, hands the arguments this class takes on
    with ``super().__init__(**self.base_arguments(locals()))`` and implements
    :meth:`load_splits`.

    Args:
        time_horizon: steps per training/validation window (reference: 10).
        windows: ``"consecutive"`` (non-overlapping windows starting at ``j * time_horizon``, the
            reference) or ``"sliding"`` (a window at every point).
        batch_size: training (and validation) batch size; ``None`` means the full set in one batch
            (in one process without workers a :class:`~pl_pac_trs.data.full_batch.FullBatchLoader`,
            the windows in their stored order: no per-epoch shuffle, which one batch does not need).
        test_batch_size: test/predict batch size (one item per trajectory); ``None``: all in one.
        num_workers: DataLoader worker processes.

    Attributes:
        state_dim: dimension ``D`` of the state.
        position_dim: number of position coordinates in ``[q, p]`` states, or ``None``.
        energy: ``energy(x)`` mapping ``(..., D)`` to ``(...)``, or ``None``.
        bodies: coordinate groups reported separately, or ``None``.
        name: short system name.

    Raises:
        ValueError: for a ``time_horizon``, batch size or worker count that is not a suitable
            integer, or an unknown ``windows`` mode.

    Example:
        >>> import numpy as np
        >>> class Line(TrajectoryDataModule):
        ...     def load_splits(self, write_cache=False):
        ...         t = np.linspace(0.0, 1.0, 11)
        ...         x = np.stack([t, -t], axis=1)
        ...         return {"train": [(t, x)], "val": [], "test": [(t, x)]}
        >>> dm = Line(time_horizon=5)
        >>> dm.setup()
        >>> next(iter(dm.train_dataloader()))["y"].shape
        torch.Size([2, 5, 2])
    """

    #: The constructor arguments of this base class (see :meth:`base_arguments`).
    BASE_ARGS: ClassVar[tuple[str, ...]] = (
        "time_horizon",
        "windows",
        "batch_size",
        "test_batch_size",
        "num_workers",
    )

    name: str = "trajectories"
    state_dim: int = 0
    position_dim: int | None = None
    bodies: dict[str, list[int]] | None = None
    energy: Callable[[Tensor], Tensor] | None = None

    def __init__(
        self,
        time_horizon: int = 10,
        windows: str = "consecutive",
        batch_size: int | None = None,
        test_batch_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.time_horizon = check_count("time_horizon", time_horizon)
        if windows not in WINDOW_MODES:
            raise ValueError(f"windows must be one of {WINDOW_MODES}, got {windows!r}")
        self.windows = windows
        self.batch_size = None if batch_size is None else check_count("batch_size", batch_size)
        self.test_batch_size = (
            None if test_batch_size is None else check_count("test_batch_size", test_batch_size)
        )
        self.num_workers = check_count("num_workers", num_workers, minimum=0)
        self._splits: Splits | None = None
        self.train_dataset: BatchDictDataset | None = None
        self.val_dataset: BatchDictDataset | None = None
        self.test_dataset: BatchDictDataset | None = None

    @classmethod
    def base_arguments(cls, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of ``arguments`` (a subclass constructor's ``locals()``) that the base
        class takes: :attr:`BASE_ARGS` of the nearest base that declares them."""
        return {k: arguments[k] for k in cls.BASE_ARGS if k in arguments}

    # ----------------------------------------------------------------- subclass interface
    def load_splits(self, write_cache: bool = False) -> Splits:
        """Return the train/val/test trajectories (abstract: every subclass implements it).

        Args:
            write_cache: whether this call may write caches (True only from ``prepare_data``).
        """
        raise NotImplementedError

    # ----------------------------------------------------------------- Lightning hooks
    @override
    def prepare_data(self) -> None:
        """Runs on local rank 0 only: write caches/downloads (see subclasses)."""

    @override
    def setup(self, stage: str | None = None) -> None:
        """Build the window datasets (train, val) and the rollout dataset (test, predict).

        Raises:
            ValueError: if no training window fits, or if test trajectories of different lengths
                were asked to share a batch.
        """
        splits = self._load()
        if self.train_dataset is not None:
            return
        self.train_dataset = self._windows_dataset(splits["train"])
        if len(self.train_dataset) == 0:
            raise ValueError(
                f"{self._source}: no training window of time_horizon={self.time_horizon} steps "
                "fits in the training trajectories"
            )
        self.val_dataset = self._windows_dataset(splits.get("val", []))
        self.test_dataset = BatchDictDataset(
            make_rollouts(*_unzip(splits["test"])) if splits["test"] else []
        )
        lengths = sorted({len(t) for t, _ in splits["test"]})
        if len(lengths) > 1:  # checked here, before training, not when test batches form
            if self.test_batch_size not in (None, 1):
                raise ValueError(
                    f"{self._source}: test trajectories have different lengths ({lengths[0]}.."
                    f"{lengths[-1]} points), so they cannot be batched together: set "
                    f"test_batch_size=1 (got {self.test_batch_size})"
                )
            self.test_batch_size = 1  # the default (all in one batch) cannot hold them

    @property
    def _source(self) -> str:
        return getattr(self, "path", None) or type(self).__name__

    def _load(self) -> Splits:
        if self._splits is None:
            self._splits = self.load_splits(write_cache=False)
        return self._splits

    def _windows_dataset(self, trajectories: list) -> BatchDictDataset:
        if not trajectories:
            return BatchDictDataset([])
        return BatchDictDataset(
            make_windows(*_unzip(trajectories), self.time_horizon, windows=self.windows)
        )

    def _loader(
        self, dataset: BatchDictDataset, batch_size: int | None, shuffle: bool
    ) -> DataLoader | FullBatchLoader:
        if self._one_local_batch(dataset, batch_size):
            return FullBatchLoader(dataset, collate_batch)
        return DataLoader(
            dataset,
            batch_size=batch_size or max(len(dataset), 1),
            sampler=EpochSeededSampler(dataset) if shuffle else None,
            collate_fn=collate_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _one_local_batch(self, dataset: BatchDictDataset, batch_size: int | None) -> bool:
        """Whether the whole set is one batch that this process loads itself: no worker
        processes, and not distributed (Lightning gives a ``DataLoader`` a distributed
        sampler that deals the rows out to the ranks)."""
        if len(dataset) == 0 or (batch_size is not None and batch_size < len(dataset)):
            return False
        if self.num_workers > 0:
            return False
        if self.trainer is not None:
            return self.trainer.world_size == 1
        return not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)

    @override
    def train_dataloader(self) -> DataLoader | FullBatchLoader:
        """Windows shuffled per epoch (:class:`EpochSeededSampler`); the full set as one batch
        in stored order (:class:`~pl_pac_trs.data.full_batch.FullBatchLoader`) when
        ``batch_size`` is None or covers it, in one process without workers."""
        self._require_setup()
        return self._loader(self.train_dataset, self.batch_size, shuffle=True)

    @override
    def val_dataloader(self) -> DataLoader | FullBatchLoader | list:
        """Noisy validation windows (an empty list, i.e. no validation, when there are none)."""
        self._require_setup()
        if len(self.val_dataset) == 0:
            return []
        return self._loader(self.val_dataset, self.batch_size, shuffle=False)

    @override
    def test_dataloader(self) -> DataLoader | FullBatchLoader:
        """Whole-horizon test trajectories from their clean initial state, one item each."""
        self._require_setup()
        return self._loader(self.test_dataset, self.test_batch_size, shuffle=False)

    @override
    def predict_dataloader(self) -> DataLoader | FullBatchLoader:
        """Same items as :meth:`test_dataloader`."""
        return self.test_dataloader()

    def _require_setup(self) -> None:
        if self.train_dataset is None:
            self.setup()

    # ----------------------------------------------------------------- helpers for users/tests
    def trajectories(self, split: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Time grids and states (float64) of one split, as lists over trajectories.

        Raises:
            ValueError: for a split other than ``"train"``, ``"val"`` or ``"test"``.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return _unzip(self._load().get(split, []))


def _unzip(trajectories: list[tuple[np.ndarray, np.ndarray]]) -> tuple[list, list]:
    return [t for t, _ in trajectories], [x for _, x in trajectories]
