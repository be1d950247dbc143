"""A user's own trajectories from an ``.npz`` or ``.csv`` file, with the TRS windowing.

Formats
-------
``.npz``: an array ``x`` of shape ``(M, N, D)`` (``M`` trajectories of ``N`` points; ``(N, D)`` is
one trajectory) and an array ``t`` of shape ``(N,)`` (a grid shared by all trajectories) or
``(M, N)`` (one grid per trajectory). Grids must be strictly increasing; they may be non-uniform.

``.csv``: a header line naming the columns, then one row per observed point. A column named
``time_column`` (default ``"t"``) holds the time; an optional column ``id_column`` (default
``"trajectory"``) identifies the trajectory of each row (rows of one trajectory contiguous or not,
in increasing time; trajectories ordered by first appearance; without the column the file is one
trajectory); the state is ``state_columns`` (default: all other columns, in file order). For
mechanical systems put positions first (``[q..., p...]``) and set ``position_dim``.

Optional: an ``energy`` of the system (a function or callable object, e.g. its Hamiltonian) gives
the test energy MSE and the energy plot; a separate ``test_path`` file (e.g. clean trajectories,
while the training file is noisy) gives the test rollouts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import override

from pl_pac_trs.data.datamodule import TrajectoryDataModule
from pl_pac_trs.data.splitting import SPLIT_MODES, Splits, check_fractions, split_trajectories
from pl_pac_trs.data.tables import read_numeric_rows
from pl_pac_trs.data.validation import check_count
from pl_pac_trs.data.windows import check_time_grid

__all__ = ["TrajectoryFileDataModule", "read_trajectory_file"]


def read_trajectory_file(
    path: str | os.PathLike,
    time_column: str = "t",
    id_column: str = "trajectory",
    state_columns: list[str] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read trajectories from ``.npz`` or ``.csv`` (see the module docstring for the formats).

    Returns:
        Per-trajectory time grids ``(N_i,)`` and states ``(N_i, D)`` (float64).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file (and line/trajectory) for an unknown suffix, missing arrays or
            columns, inconsistent shapes, NaN/inf values or a time grid that is not increasing.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"trajectory file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        ts, xs = _read_npz(path)
        lines: list[list[int] | None] = [None] * len(ts)
    elif suffix == ".csv":
        ts, xs, lines = _read_csv(path, time_column, id_column, state_columns)
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; expected .npz or .csv")
    for i, (t, at) in enumerate(zip(ts, lines, strict=True)):
        check_time_grid(t, f"{path} (trajectory {i})", at)
    return ts, xs


def _read_npz(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("t", "x") if k not in data.files]
        if missing:
            raise ValueError(f"{path}: missing array(s) {missing}; found {sorted(data.files)}")
        t, x = np.asarray(data["t"], np.float64), np.asarray(data["x"], np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"{path}: x must have shape (M, N, D) or (N, D), got {x.shape}")
    m, n, _ = x.shape
    if t.ndim == 1:
        t = np.broadcast_to(t, (m, len(t)))
    if t.shape != (m, n):
        raise ValueError(
            f"{path}: t has shape {t.shape}, expected ({n},) or ({m}, {n}) to match x {x.shape}"
        )
    for name, a in (("t", t), ("x", x)):
        bad = np.argwhere(~np.isfinite(a))
        if bad.size:
            index = tuple(int(i) for i in bad[0])
            raise ValueError(f"{path}: array {name} has NaN or inf at index {index}")
    return [t[i].copy() for i in range(m)], [x[i].copy() for i in range(m)]


def _read_csv(
    path: Path, time_column: str, id_column: str, state_columns: list[str] | None
) -> tuple[list[np.ndarray], list[np.ndarray], list[list[int] | None]]:
    names, table, line_numbers = read_numeric_rows(path, delimiter=",", header=True)
    if time_column not in names:
        raise ValueError(f"{path}: no time column {time_column!r} in header {names}")
    if state_columns is None:
        state_columns = [c for c in names if c not in (time_column, id_column)]
    missing = [c for c in state_columns if c not in names]
    if missing or not state_columns:
        raise ValueError(f"{path}: state columns {missing or state_columns} not in header {names}")
    t_all = table[:, names.index(time_column)]
    x_all = table[:, [names.index(c) for c in state_columns]]
    if id_column in names:
        ids = table[:, names.index(id_column)]
        order = list(dict.fromkeys(ids.tolist()))
        groups = [np.flatnonzero(ids == i) for i in order]
    else:
        groups = [np.arange(len(table))]
    lines: list[list[int] | None] = [[line_numbers[r] for r in g] for g in groups]
    return [t_all[g] for g in groups], [x_all[g] for g in groups], lines


class TrajectoryFileDataModule(TrajectoryDataModule):
    """Trajectories from a user's ``.npz``/``.csv`` file, windowed like the reference data.

    Args:
        path: the ``.npz`` or ``.csv`` file.
        split: ``"trajectory"`` (whole trajectories to train/val/test, in file order) or
            ``"time"`` (each trajectory's leading points train, the rest a test rollout).
        train_fraction: fraction of trajectories (or points) for training.
        val_fraction: fraction of trajectories (or points) for validation; 0: none.
        position_dim: number of position coordinates of ``[q, p]`` states; ``None`` when the
            state has no such split (the TRS reversal must then be given explicitly).
        bodies: optional coordinate groups reported separately.
        name: system name (default: the file stem).
        time_column: csv time column.
        id_column: csv trajectory-id column.
        state_columns: csv state columns (default: all others, in file order).
        energy: the system's energy ``energy(x)``, states ``(..., D)`` (torch tensors) to
            energies ``(...)`` (a function, or a callable object such as a Hamiltonian; in a
            config its import path or ``class_path``): the test energy MSE and the energy
            plot. ``None``: no energy metric.
        test_path: a separate ``.npz``/``.csv`` file (same format and columns) whose every
            trajectory is a test rollout from its first point, e.g. clean trajectories of a
            system whose training file is noisy. ``path`` then gives train and val only:
            ``val_fraction`` of its trajectories (points, with ``split="time"``) validate, the
            rest train (``train_fraction`` is not used).
        **loader_args: ``time_horizon``, ``windows``, ``batch_size``, ``test_batch_size`` (use 1
            for trajectories of different lengths), ``num_workers`` of
            :class:`~pl_pac_trs.data.TrajectoryDataModule`, with its defaults.

    The file is read in ``__init__`` (so ``state_dim`` is known before ``setup``) and errors are
    raised there.
    """

    energy = None

    def __init__(
        self,
        path: str,
        split: str = "trajectory",
        train_fraction: float = 0.7,
        val_fraction: float = 0.1,
        position_dim: int | None = None,
        bodies: dict[str, list[int]] | None = None,
        name: str | None = None,
        time_column: str = "t",
        id_column: str = "trajectory",
        state_columns: list[str] | None = None,
        energy: Callable | None = None,
        test_path: str | None = None,
        **loader_args: Any,
    ) -> None:
        super().__init__(**loader_args)
        self.save_hyperparameters(ignore=["energy"])  # a function is not checkpoint data
        if energy is not None and not callable(energy):
            raise TypeError(
                f"energy must be a callable (states (..., D) -> energies (...)), got "
                f"{type(energy).__name__}"
            )
        self.energy = energy
        if split not in SPLIT_MODES:
            raise ValueError(f"split must be one of {SPLIT_MODES}, got {split!r}")
        self.path = str(path)
        self.split = split
        self.train_fraction, self.val_fraction = check_fractions(train_fraction, val_fraction)
        self._ts, self._xs = read_trajectory_file(path, time_column, id_column, state_columns)
        dims = {x.shape[1] for x in self._xs}
        if len(dims) != 1:
            raise ValueError(f"{path}: trajectories have different state dimensions {dims}")
        self.state_dim = dims.pop()
        if position_dim is not None:
            check_count("position_dim", position_dim)
            if not position_dim < self.state_dim:  # [q, p] with any split, as leapfrog and R
                raise ValueError(
                    f"position_dim={position_dim} leaves no momentum coordinate: {path} has "
                    f"states of dimension {self.state_dim} (position_dim must be in "
                    f"1..{self.state_dim - 1})"
                )
        self.position_dim = position_dim
        if bodies is not None:
            for body, idx in bodies.items():
                if any(not 0 <= i < self.state_dim for i in idx):
                    raise ValueError(
                        f"bodies[{body!r}]={idx} has an index outside 0..{self.state_dim - 1}"
                    )
        self.bodies = bodies
        self.name = name or Path(path).stem
        self.test_path = None if test_path is None else str(test_path)
        if self.test_path is None:
            self._split_cache: Splits = split_trajectories(
                self._ts, self._xs, split, self.train_fraction, self.val_fraction, where=self.path
            )
        else:
            self._split_cache = _train_val(self._ts, self._xs, split, self.val_fraction, self.path)
            test_ts, test_xs = read_trajectory_file(
                self.test_path, time_column, id_column, state_columns
            )
            bad = sorted({x.shape[1] for x in test_xs} - {self.state_dim})
            if bad:
                raise ValueError(
                    f"{self.test_path}: test trajectories have state dimension {bad[0]}, the "
                    f"training file {path} has {self.state_dim}"
                )
            self._split_cache["test"] = list(zip(test_ts, test_xs, strict=True))

    @override
    def load_splits(self, write_cache: bool = False) -> Splits:
        return self._split_cache


def _train_val(
    ts: list[np.ndarray], xs: list[np.ndarray], split: str, val_fraction: float, where: str
) -> Splits:
    """Train and val splits of a file whose test rollouts come from another file: the last
    ``val_fraction`` of the trajectories (``split="time"``: of each trajectory's points)
    validate, the rest train."""
    pairs = list(zip(ts, xs, strict=True))
    if split == "trajectory":
        n_val = int(len(pairs) * val_fraction)
        train, val = pairs[: len(pairs) - n_val], pairs[len(pairs) - n_val :]
        if not train:
            raise ValueError(
                f"{where}: {len(pairs)} trajectories leave no training trajectory with "
                f"val_fraction={val_fraction}"
            )
        return {"train": train, "val": val, "test": []}
    splits: Splits = {"train": [], "val": [], "test": []}
    for i, (t, x) in enumerate(pairs):
        n_train = len(t) - int(len(t) * val_fraction)
        if n_train < 2:
            raise ValueError(
                f"{where}: trajectory {i} has {len(t)} points, too few to split by time with "
                f"val_fraction={val_fraction}"
            )
        splits["train"].append((t[:n_train], x[:n_train]))
        if len(t) - n_train >= 2:
            splits["val"].append((t[n_train:], x[n_train:]))
    return splits
