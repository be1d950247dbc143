"""Splitting a source's trajectories into train/val/test, by whole trajectory or by time.

Example:
    >>> import numpy as np
    >>> t = [np.linspace(0, 1, 11)]
    >>> x = [np.zeros((11, 2))]
    >>> splits = split_trajectories(t, x, "time", 0.6, 0.0, where="example")
    >>> [len(splits["train"][0][0]), len(splits["val"]), len(splits["test"][0][0])]
    [6, 0, 5]
"""

from __future__ import annotations

import numpy as np

from pl_pac_trs.data.validation import check_fraction

__all__ = ["SPLIT_MODES", "Splits", "check_fractions", "split_trajectories"]

#: ``{"train": [(t, x), ...], "val": [...], "test": [...]}``: per-trajectory time grids ``(N,)``
#: and states ``(N, D)`` (float64 numpy).
Splits = dict[str, list[tuple[np.ndarray, np.ndarray]]]

SPLIT_MODES = ("trajectory", "time")


def check_fractions(train_fraction: float, val_fraction: float) -> tuple[float, float]:
    """Return the checked ``(train_fraction, val_fraction)``.

    Raises:
        ValueError: unless ``train_fraction`` lies in (0, 1), ``val_fraction`` in [0, 1) and their
            sum below 1 (something must be left for testing).
    """
    train = check_fraction("train_fraction", train_fraction)
    val = check_fraction("val_fraction", val_fraction, allow_zero=True)
    if train + val >= 1:
        raise ValueError(
            f"train_fraction + val_fraction must be < 1 to leave test data, got "
            f"{train_fraction} + {val_fraction}"
        )
    return train, val


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

    Raises:
        ValueError: for an unknown ``split``, fractions out of range (:func:`check_fractions`),
            or too few trajectories (points) to give every split its share.
    """
    if split not in SPLIT_MODES:
        raise ValueError(f"split must be one of {SPLIT_MODES}, got {split!r}")
    check_fractions(train_fraction, val_fraction)
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
