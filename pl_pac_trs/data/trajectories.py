"""Shared base of the trajectory DataModules: splits -> windows / rollouts -> batch dictionaries.

Subclasses provide the data as *splits*: ``{"train": [(t, x), ...], "val": [...], "test": [...]}``
with per-trajectory time grids ``t`` ``(N,)`` and states ``x`` ``(N, D)`` (float64 numpy). The
base class cuts train and val trajectories into windows of ``time_horizon`` steps and packs every
test trajectory as one whole-horizon item (see :mod:`pl_pac_trs.data.windows` for the batch
format). Generated datasets derive from :class:`GeneratedTrajectoryDataModule`, which adds the
``.npz`` cache keyed by the generation arguments.

DDP: ``prepare_data`` (local rank 0) writes the cache when a ``cache_dir`` is given; ``setup`` on
every rank loads that cache or generates the identical data (generation is deterministic by seed).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from torch import Tensor
from torch.utils.data import DataLoader

from pl_pac_trs.data.cache import cache_path, load_cached_arrays, save_arrays_atomic
from pl_pac_trs.data.sampling import EpochSeededSampler
from pl_pac_trs.data.windows import (
    WINDOW_MODES,
    BatchDictDataset,
    collate_batch,
    make_rollouts,
    make_windows,
)

__all__ = [
    "SPLIT_MODES",
    "GeneratedTrajectoryDataModule",
    "Splits",
    "TrajectoryDataModule",
    "check_count",
    "check_disjoint_seeds",
    "check_fraction",
    "split_trajectories",
]

Splits = dict[str, list[tuple[np.ndarray, np.ndarray]]]

_SPLITS = ("train", "val", "test")


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as int, or raise ``ValueError`` naming ``name`` if not an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_fraction(name: str, value: Any, allow_zero: bool = False) -> float:
    """Return ``value`` as float, or raise ``ValueError`` unless it lies in (0, 1) ([0, 1))."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    low_ok = ok and (value >= 0 if allow_zero else value > 0)
    if not (ok and low_ok and value < 1):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value: Any) -> float:
    """Return ``value`` as float; raise ``ValueError`` naming ``name`` if negative or not finite."""
    if not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as float, or raise ``ValueError`` naming ``name`` unless finite and > 0."""
    if not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_disjoint_seeds(*ranges: tuple[str, int, int]) -> None:
    """Raise ``ValueError`` if two seed ranges ``[seed, seed + count)`` overlap (data leakage)."""
    for i, (name_a, a, na) in enumerate(ranges):
        for name_b, b, nb in ranges[i + 1 :]:
            if na and nb and a < b + nb and b < a + na:
                raise ValueError(
                    f"seed ranges overlap: {name_a}={a} with {na} trajectories and {name_b}={b} "
                    f"with {nb} trajectories would share trajectories; choose disjoint seeds"
                )


SPLIT_MODES = ("trajectory", "time")


def split_trajectories(
    ts: list[np.ndarray],
    xs: list[np.ndarray],
    split: str,
    train_fraction: float,
    val_fraction: float,
    where: str,
) -> Splits:
    """Split trajectories into train/val/test.

    Args:
        ts: per-trajectory time grids ``(N_i,)``.
        xs: per-trajectory states ``(N_i, D)``.
        split: ``"trajectory"``: the first ``int(M * train_fraction)`` trajectories train, the
            next ``int(M * val_fraction)`` validate, the rest are test rollouts (file order).
            ``"time"``: every trajectory's first ``int(N * train_fraction)`` points train, the next
            ``int(N * val_fraction)`` points validate, and the remaining points form one test
            rollout starting at its first point (the reference's split of the real oscillator).
        train_fraction: fraction for training, in (0, 1).
        val_fraction: fraction for validation, in [0, 1).
        where: name of the data source, used in error messages.
    """
    if split not in SPLIT_MODES:
        raise ValueError(f"split must be one of {SPLIT_MODES}, got {split!r}")
    if train_fraction + val_fraction >= 1:
        raise ValueError(
            f"train_fraction + val_fraction must be < 1 to leave test data, got "
            f"{train_fraction} + {val_fraction}"
        )
    pairs = list(zip(ts, xs, strict=True))
    if split == "trajectory":
        m = len(pairs)
        n_train, n_val = int(m * train_fraction), int(m * val_fraction)
        if n_train < 1 or m - n_train - n_val < 1:
            raise ValueError(
                f"{where}: {m} trajectories give {n_train} training and {m - n_train - n_val} "
                f"test trajectories with train_fraction={train_fraction}, "
                f"val_fraction={val_fraction}; need at least one of each (or use split='time')"
            )
        return {
            "train": pairs[:n_train],
            "val": pairs[n_train : n_train + n_val],
            "test": pairs[n_train + n_val :],
        }
    splits: Splits = {"train": [], "val": [], "test": []}
    for i, (t, x) in enumerate(pairs):
        n = len(t)
        n_train, n_val = int(n * train_fraction), int(n * val_fraction)
        if n_train < 2 or n - n_train - n_val < 2:
            raise ValueError(
                f"{where}: trajectory {i} has {n} points, too few to split by time with "
                f"train_fraction={train_fraction}, val_fraction={val_fraction}"
            )
        splits["train"].append((t[:n_train], x[:n_train]))
        if n_val >= 2:
            splits["val"].append((t[n_train : n_train + n_val], x[n_train : n_train + n_val]))
        splits["test"].append((t[n_train + n_val :], x[n_train + n_val :]))
    return splits


class TrajectoryDataModule(pl.LightningDataModule):
    """Base DataModule yielding TRS batch dictionaries ``{"x0", "t", "y"}`` from trajectory splits.

    Args:
        time_horizon: steps per training/validation window (reference: 10).
        windows: ``"consecutive"`` (non-overlapping windows starting at ``j * time_horizon``, the
            reference) or ``"sliding"`` (a window at every point).
        batch_size: training (and validation) batch size; ``None`` means the full set in one batch.
        test_batch_size: test/predict batch size (one item per trajectory); ``None``: all in one.
        num_workers: DataLoader worker processes.

    Attributes:
        state_dim: dimension ``D`` of the state.
        position_dim: number of position coordinates in ``[q, p]`` states, or ``None``.
        energy: ``energy(x)`` mapping ``(..., D)`` to ``(...)``, or ``None``.
        bodies: coordinate groups reported separately, or ``None``.
        name: short system name.
    """

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

    # ----------------------------------------------------------------- subclass interface
    def load_splits(self, write_cache: bool = False) -> Splits:
        """Return the train/val/test trajectories (abstract: every subclass implements it).

        Args:
            write_cache: whether this call may write caches (True only from ``prepare_data``).
        """
        raise NotImplementedError

    # ----------------------------------------------------------------- Lightning hooks
    def prepare_data(self) -> None:
        """Runs on local rank 0 only: write caches/downloads (see subclasses)."""

    def setup(self, stage: str | None = None) -> None:
        """Build the window datasets (train, val) and the rollout dataset (test, predict)."""
        if self._splits is None:
            self._splits = self.load_splits(write_cache=False)
        splits = self._splits
        if self.train_dataset is None:
            self.train_dataset = self._windows_dataset(splits["train"])
            if len(self.train_dataset) == 0:
                source = getattr(self, "path", None) or type(self).__name__
                raise ValueError(
                    f"{source}: no training window of time_horizon={self.time_horizon} steps "
                    "fits in the training trajectories"
                )
            self.val_dataset = self._windows_dataset(splits.get("val", []))
            self.test_dataset = BatchDictDataset(
                make_rollouts(*_unzip(splits["test"])) if splits["test"] else []
            )
            lengths = sorted({len(t) for t, _ in splits["test"]})
            if len(lengths) > 1:  # checked here, before training, not when test batches form
                if self.test_batch_size not in (None, 1):
                    source = getattr(self, "path", None) or type(self).__name__
                    raise ValueError(
                        f"{source}: test trajectories have different lengths ({lengths[0]}.."
                        f"{lengths[-1]} points), so they cannot be batched together: set "
                        f"test_batch_size=1 (got {self.test_batch_size})"
                    )
                self.test_batch_size = 1  # the default (all in one batch) cannot hold them

    def _windows_dataset(self, trajectories: list) -> BatchDictDataset:
        if not trajectories:
            return BatchDictDataset([])
        return BatchDictDataset(
            make_windows(*_unzip(trajectories), self.time_horizon, windows=self.windows)
        )

    def _loader(
        self, dataset: BatchDictDataset, batch_size: int | None, shuffle: bool
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size or max(len(dataset), 1),
            sampler=EpochSeededSampler(dataset) if shuffle else None,
            collate_fn=collate_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Windows shuffled per epoch (:class:`EpochSeededSampler`); full batch when
        ``batch_size`` is None."""
        self._require_setup()
        return self._loader(self.train_dataset, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Noisy validation windows (an empty list, i.e. no validation, when there are none)."""
        self._require_setup()
        if len(self.val_dataset) == 0:
            return []
        return self._loader(self.val_dataset, self.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Whole-horizon test trajectories from their clean initial state, one item each."""
        self._require_setup()
        return self._loader(self.test_dataset, self.test_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Same items as :meth:`test_dataloader`."""
        return self.test_dataloader()

    def _require_setup(self) -> None:
        if self.train_dataset is None:
            self.setup()

    # ----------------------------------------------------------------- helpers for users/tests
    def trajectories(self, split: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Time grids and states (float64) of one split, as lists over trajectories."""
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        if self._splits is None:
            self._splits = self.load_splits(write_cache=False)
        return _unzip(self._splits.get(split, []))


def _unzip(trajectories: list[tuple[np.ndarray, np.ndarray]]) -> tuple[list, list]:
    return [t for t, _ in trajectories], [x for _, x in trajectories]


#: The counts, spans, noise and seeds of every simulated dataset (:meth:`_set_sizes`).
_SIZE_ARGS = (
    "num_train",
    "train_steps",
    "train_span",
    "noise_std",
    "num_val",
    "num_test",
    "test_steps",
    "test_span",
    "train_seed",
    "val_seed",
    "test_seed",
)


class GeneratedTrajectoryDataModule(TrajectoryDataModule):
    """Base of simulated datasets: deterministic generation plus an optional ``.npz`` cache.

    Subclasses store their counts, spans, noise and seeds with :meth:`_set_sizes`, extend
    :meth:`generation_args` (a JSON-serialisable dict of everything the data depend on) with
    their own parameters, and implement :meth:`generate` (returning ``{split}_t`` ``(N,)`` and
    ``{split}_x`` ``(M, N, D)`` arrays for ``split`` in train/val/test, plus optional extra
    arrays).

    Args:
        cache_dir: directory of the ``.npz`` cache; ``None`` disables caching.
        **kwargs: see :class:`TrajectoryDataModule`.
    """

    cache_version = 1

    def __init__(self, cache_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cache_dir = cache_dir
        self._arrays: dict[str, np.ndarray] | None = None

    def _set_sizes(
        self,
        *,
        num_train: int,
        num_val: int,
        num_test: int,
        train_steps: int,
        test_steps: int,
        train_span: float,
        test_span: float,
        noise_std: float,
        train_seed: int,
        val_seed: int,
        test_seed: int,
    ) -> None:
        """Validate and store the counts, spans, noise and seeds every simulated dataset has."""
        self.num_train = check_count("num_train", num_train)
        self.num_val = check_count("num_val", num_val, minimum=0)
        self.num_test = check_count("num_test", num_test)
        self.train_steps = check_count("train_steps", train_steps)
        self.test_steps = check_count("test_steps", test_steps)
        self.train_span = check_positive("train_span", train_span)
        self.test_span = check_positive("test_span", test_span)
        self.noise_std = check_nonnegative("noise_std", noise_std)
        self.train_seed = check_count("train_seed", train_seed, minimum=0)
        self.val_seed = check_count("val_seed", val_seed, minimum=0)
        self.test_seed = check_count("test_seed", test_seed, minimum=0)
        if self.time_horizon > self.train_steps:
            raise ValueError(
                f"time_horizon={self.time_horizon} exceeds train_steps={self.train_steps}: no "
                "training window fits in a trajectory"
            )
        check_disjoint_seeds(
            ("train_seed", self.train_seed, self.num_train),
            ("val_seed", self.val_seed, self.num_val),
            ("test_seed", self.test_seed, self.num_test),
        )

    def generation_args(self) -> dict[str, Any]:
        """Everything the generated arrays depend on (the cache key): the arguments stored by
        :meth:`_set_sizes`; subclasses add their own (e.g. the system's parameters)."""
        return {k: getattr(self, k) for k in _SIZE_ARGS}

    def generate(self) -> dict[str, np.ndarray]:
        """Generate the arrays (deterministic given :meth:`generation_args`)."""
        raise NotImplementedError

    @property
    def cache_file(self) -> Path | None:
        """Path of this dataset's cache file, or ``None`` without ``cache_dir``."""
        if self.cache_dir is None:
            return None
        args = {"class": type(self).__name__, "version": self.cache_version}
        args.update(self.generation_args())
        return cache_path(self.cache_dir, self.name, args)

    def arrays(self, write_cache: bool = False) -> dict[str, np.ndarray]:
        """The generated arrays: from memory, a valid cache file, or freshly generated."""
        if self._arrays is not None:
            if (
                write_cache
                and self.cache_file is not None
                and load_cached_arrays(self.cache_file) is None
            ):
                save_arrays_atomic(self.cache_file, self._arrays)
            return self._arrays
        required = tuple(f"{s}_{k}" for s in _SPLITS for k in ("t", "x"))
        arrays = None
        if self.cache_file is not None:
            arrays = load_cached_arrays(self.cache_file, required=required)
        if arrays is None:
            arrays = self.generate()
            if write_cache and self.cache_file is not None:
                save_arrays_atomic(self.cache_file, arrays)
        self._arrays = arrays
        return arrays

    def prepare_data(self) -> None:
        """Generate and write the cache (local rank 0) when a ``cache_dir`` is given."""
        if self.cache_dir is not None:
            self.arrays(write_cache=True)

    def load_splits(self, write_cache: bool = False) -> Splits:
        arrays = self.arrays(write_cache=write_cache)
        splits: Splits = {}
        for split in _SPLITS:
            t, x = arrays[f"{split}_t"], arrays[f"{split}_x"]
            splits[split] = [(t, xi) for xi in x]
        return splits
