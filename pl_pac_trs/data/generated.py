"""The base of simulated trajectory datasets: sizes and seeds, the train/val/test triple, the cache.

A system writes only how it simulates (:meth:`GeneratedTrajectoryDataModule.simulate`) and which
parameters the data depend on (:meth:`GeneratedTrajectoryDataModule.generation_args`); this base
validates the counts, spans, noise and seeds, generates the noisy train and val splits and the
clean test split, and keeps them in an ``.npz`` cache keyed by the generation arguments.

DDP: ``prepare_data`` (local rank 0) writes the cache when a ``cache_dir`` is given; ``setup`` on
every rank loads that cache or generates the identical data (generation is deterministic by seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from typing_extensions import override

from pl_pac_trs.data.cache import cache_path, load_cached_arrays, save_arrays_atomic
from pl_pac_trs.data.datamodule import SPLITS, TrajectoryDataModule
from pl_pac_trs.data.splitting import Splits
from pl_pac_trs.data.validation import (
    check_count,
    check_disjoint_seeds,
    check_nonnegative,
    check_positive,
)

__all__ = ["SIZE_ARGS", "GeneratedTrajectoryDataModule"]

#: The counts, spans, noise and seeds of every simulated dataset (part of the cache key).
SIZE_ARGS = (
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

    A subclass passes its sizes, seeds and loader arguments on with
    ``super().__init__(**self.base_arguments(locals()))``, extends :meth:`generation_args` (a
    JSON-serialisable dict of everything the data depend on) with its own parameters, and
    implements :meth:`simulate`. Train and val trajectories are observed with noise
    ``noise_std``, test trajectories clean; the train split also keeps its clean states
    (``train_clean``).

    Args:
        cache_dir: directory of the ``.npz`` cache; ``None`` disables caching.
        **kwargs: the sizes and seeds (:data:`SIZE_ARGS`: ``num_train``, ``train_steps``,
            ``train_span``, ``noise_std``, ``num_val``, ``num_test``, ``test_steps``,
            ``test_span``, ``train_seed``, ``val_seed``, ``test_seed``; all or none; a subclass
            that gives none stores them with :meth:`_set_sizes`), and the arguments of
            :class:`~pl_pac_trs.data.datamodule.TrajectoryDataModule`.

    Raises:
        ValueError: for a bad count, span, noise level or seed, a ``time_horizon`` longer than
            the training trajectories, or overlapping seed ranges of the three splits.

    Example:
        >>> class Decay(GeneratedTrajectoryDataModule):
        ...     name, state_dim = "decay", 1
        ...     def simulate(self, num, steps, span, noise_std, seed):
        ...         t = np.linspace(0.0, span, steps + 1)
        ...         clean = np.exp(-t)[None, :, None] * np.arange(1, num + 1)[:, None, None]
        ...         return t, clean, clean.copy()
        >>> dm = Decay(num_train=2, train_steps=10, train_span=1.0, noise_std=0.0, num_val=0,
        ...            num_test=1, test_steps=20, test_span=2.0, train_seed=0, val_seed=10,
        ...            test_seed=20)
        >>> dm.arrays()["test_x"].shape
        (1, 21, 1)
    """

    BASE_ARGS: ClassVar[tuple[str, ...]] = (
        *TrajectoryDataModule.BASE_ARGS,
        *SIZE_ARGS,
        "cache_dir",
    )
    cache_version = 1

    def __init__(self, cache_dir: str | None = None, **kwargs: Any) -> None:
        sizes = {k: kwargs.pop(k) for k in SIZE_ARGS if k in kwargs}
        super().__init__(**kwargs)
        self.cache_dir = cache_dir
        self._arrays: dict[str, np.ndarray] | None = None
        if sizes:
            self._set_sizes(**sizes)

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
        """Everything the generated arrays depend on (the cache key): the sizes and seeds;
        subclasses add their own (e.g. the system's parameters)."""
        return {k: getattr(self, k) for k in SIZE_ARGS}

    def simulate(
        self, num: int, steps: int, span: float, noise_std: float, seed: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Simulate one split (abstract: every system implements it).

        Args:
            num: trajectories; trajectory ``i`` is drawn from seed ``seed + i``.
            steps: intervals of the grid ``linspace(0, span, steps + 1)``.
            span: length of the time interval.
            noise_std: standard deviation of the observation noise (0: clean).
            seed: seed of trajectory 0.

        Returns:
            ``(t, clean, observed)``: the grid ``(steps + 1,)``, clean and observed states
            ``(num, steps + 1, D)`` (float64).
        """
        raise NotImplementedError

    def generate(self) -> dict[str, np.ndarray]:
        """Generate the arrays (deterministic given :meth:`generation_args`): ``{split}_t``
        ``(N,)`` and ``{split}_x`` ``(M, N, D)`` for train/val/test, and ``train_clean``."""
        train_t, train_clean, train_x = self.simulate(
            self.num_train, self.train_steps, self.train_span, self.noise_std, self.train_seed
        )
        val_t, _, val_x = self.simulate(
            self.num_val, self.train_steps, self.train_span, self.noise_std, self.val_seed
        )
        test_t, test_x, _ = self.simulate(
            self.num_test, self.test_steps, self.test_span, 0.0, self.test_seed
        )
        return {
            "train_t": train_t,
            "train_x": train_x,
            "train_clean": train_clean,
            "val_t": val_t,
            "val_x": val_x,
            "test_t": test_t,
            "test_x": test_x,
        }

    @property
    def cache_file(self) -> Path | None:
        """Path of this dataset's cache file, or ``None`` without ``cache_dir``."""
        if self.cache_dir is None:
            return None
        args = {"class": type(self).__name__, "version": self.cache_version}
        args.update(self.generation_args())
        return cache_path(self.cache_dir, self.name, args)

    def arrays(self, write_cache: bool = False) -> dict[str, np.ndarray]:
        """The generated arrays: from memory, a valid cache file, or freshly generated.

        Args:
            write_cache: whether to write the cache file when it is absent or not valid.
        """
        if self._arrays is not None:
            if (
                write_cache
                and self.cache_file is not None
                and load_cached_arrays(self.cache_file) is None
            ):
                save_arrays_atomic(self.cache_file, self._arrays)
            return self._arrays
        required = tuple(f"{s}_{k}" for s in SPLITS for k in ("t", "x"))
        arrays = None
        if self.cache_file is not None:
            arrays = load_cached_arrays(self.cache_file, required=required)
        if arrays is None:
            arrays = self.generate()
            if write_cache and self.cache_file is not None:
                save_arrays_atomic(self.cache_file, arrays)
        self._arrays = arrays
        return arrays

    @override
    def prepare_data(self) -> None:
        """Generate and write the cache (local rank 0) when a ``cache_dir`` is given."""
        if self.cache_dir is not None:
            self.arrays(write_cache=True)

    @override
    def load_splits(self, write_cache: bool = False) -> Splits:
        arrays = self.arrays(write_cache=write_cache)
        return {
            split: [(arrays[f"{split}_t"], x) for x in arrays[f"{split}_x"]] for split in SPLITS
        }
