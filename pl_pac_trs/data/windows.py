"""Cutting trajectories into training windows and packing test rollouts as batch dictionaries.

A trajectory is a time grid ``t`` of ``N`` points (``N - 1`` steps) and states ``x`` of shape
``(N, D)``. A window of ``T = time_horizon`` steps starting at point ``s`` is the dictionary

* ``x0 = x[s]`` (``(D,)``), ``t = t[s : s + T + 1]`` (``(T + 1,)``, absolute times),
* ``y = x[s + 1 : s + T + 1]`` (``(T, D)``).

``windows="consecutive"`` (the reference's choice) uses the starts ``s = j * T`` for
``j = 0 .. (N - 1) // T - 1``: non-overlapping windows that share end/start points, so a 30-step
trajectory (31 points) gives 3 windows. ``windows="sliding"`` uses every start
``s = 0 .. N - 1 - T``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "WINDOW_MODES",
    "BatchDictDataset",
    "check_time_grid",
    "collate_batch",
    "make_rollouts",
    "make_windows",
    "window_starts",
]

WINDOW_MODES = ("consecutive", "sliding")


def check_time_grid(t: np.ndarray, where: str, lines: Sequence[int] | None = None) -> None:
    """Raise ``ValueError`` naming ``where`` unless the 1-D grid ``t`` is finite and increasing.

    Args:
        t: The time grid.
        where: What the message names (the file, the trajectory).
        lines: The 1-based file line of every point, if it comes from a text file; else the
            message counts points from 1.
    """
    t = np.asarray(t)
    if t.ndim != 1:
        raise ValueError(f"{where}: time grid must be 1-D, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{where}: time grid contains NaN or inf")
    bad = np.flatnonzero(np.diff(t) <= 0)
    if bad.size:
        i = int(bad[0])

        def at(k: int) -> str:
            place = f"line {lines[k]}" if lines is not None else f"point {k + 1}"
            return f"{place} (t={float(t[k]):g})"

        raise ValueError(
            f"{where}: time grid is not strictly increasing: {at(i)} is followed by {at(i + 1)}"
        )


def window_starts(num_points: int, time_horizon: int, windows: str = "consecutive") -> np.ndarray:
    """Indices of the first point of every window of ``time_horizon`` steps.

    Args:
        num_points: number of points ``N`` of the trajectory (``N - 1`` steps).
        time_horizon: steps per window ``T``.
        windows: ``"consecutive"`` (start ``j * T``) or ``"sliding"`` (every start).
    """
    if windows not in WINDOW_MODES:
        raise ValueError(f"windows must be one of {WINDOW_MODES}, got {windows!r}")
    steps = num_points - 1
    if windows == "consecutive":
        return np.arange(steps // time_horizon) * time_horizon
    return np.arange(max(steps - time_horizon + 1, 0))


def make_windows(
    ts: Sequence[np.ndarray],
    xs: Sequence[np.ndarray],
    time_horizon: int,
    windows: str = "consecutive",
) -> dict[str, Tensor]:
    """Cut trajectories into windows, stacked over all trajectories (in trajectory order).

    Args:
        ts: per-trajectory time grids, each ``(N_i,)``.
        xs: per-trajectory states, each ``(N_i, D)``.
        time_horizon: steps per window.
        windows: ``"consecutive"`` or ``"sliding"``.

    Returns:
        ``{"x0": (W, D), "t": (W, T + 1), "y": (W, T, D)}`` float32 tensors (``W`` may be 0).
    """
    if len(ts) != len(xs):
        raise ValueError(f"got {len(ts)} time grids but {len(xs)} state arrays")
    dim = int(np.asarray(xs[0]).shape[-1]) if len(xs) else 0
    offsets = np.arange(time_horizon + 1)
    t_parts, x_parts = [], []
    for t, x in zip(ts, xs, strict=True):
        t, x = np.asarray(t), np.asarray(x)
        starts = window_starts(len(t), time_horizon, windows)
        idx = starts[:, None] + offsets[None, :]
        t_parts.append(t[idx])
        x_parts.append(x[idx])
    t_w = np.concatenate(t_parts) if t_parts else np.zeros((0, time_horizon + 1))
    x_w = np.concatenate(x_parts) if x_parts else np.zeros((0, time_horizon + 1, dim))
    x_w = torch.as_tensor(x_w, dtype=torch.float32)
    return {
        "x0": x_w[:, 0].contiguous(),
        "t": torch.as_tensor(t_w, dtype=torch.float32),
        "y": x_w[:, 1:].contiguous(),
    }


def make_rollouts(ts: Sequence[np.ndarray], xs: Sequence[np.ndarray]) -> list[dict[str, Tensor]]:
    """One whole-horizon item per trajectory: ``x0 = x[0]``, ``t = t``, ``y = x[1:]`` (float32),
    and ``index``, the trajectory's position (test metrics count a trajectory that a distributed
    sampler repeats as padding once)."""
    items = []
    for i, (t, x) in enumerate(zip(ts, xs, strict=True)):
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        items.append(
            {
                "x0": x[0].clone(),
                "t": torch.as_tensor(np.asarray(t), dtype=torch.float32),
                "y": x[1:].clone(),
                "index": torch.tensor(i),
            }
        )
    return items


class BatchDictDataset(Dataset):
    """Map-style dataset of dictionaries of tensors (stacked, or a list of ragged items)."""

    def __init__(self, data: dict[str, Tensor] | list[dict[str, Tensor]]) -> None:
        if isinstance(data, dict):
            lengths = {len(v) for v in data.values()}
            if len(lengths) > 1:
                raise ValueError(f"tensors differ in leading size: {sorted(lengths)}")
        self.data = data

    def __len__(self) -> int:
        if isinstance(self.data, dict):
            return len(next(iter(self.data.values()))) if self.data else 0
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if isinstance(self.data, dict):
            return {k: v[index] for k, v in self.data.items()}
        return self.data[index]

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """A whole batch at once (the DataLoader's batched fetch): one indexing per stacked
        tensor instead of one dictionary per item; ragged data stay a list of items."""
        if isinstance(self.data, dict):
            index = torch.as_tensor(indices, dtype=torch.long)
            return {k: v[index] for k, v in self.data.items()}
        return [self.data[i] for i in indices]


def collate_batch(items: list[dict[str, Tensor]] | dict[str, Tensor]) -> dict[str, Tensor]:
    """Stack a list of item dictionaries into a batch dictionary (a batch already stacked by
    :meth:`BatchDictDataset.__getitems__` is returned as it is).

    Raises:
        ValueError: if items of one key have different shapes (e.g. test trajectories of different
            lengths in one batch; use a test batch size of 1 for those).
    """
    if isinstance(items, dict):
        return items
    batch = {}
    for key in items[0]:
        shapes = {tuple(item[key].shape) for item in items}
        if len(shapes) > 1:
            raise ValueError(
                f"cannot batch {key!r} of different shapes {sorted(shapes)}; trajectories of "
                "different lengths need test_batch_size=1"
            )
        batch[key] = torch.stack([item[key] for item in items])
    return batch
