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
        train, val, test = (pairs[s] for s in _parts(len(pairs), train_fraction, val_fraction))
        if not train or not test:
            raise ValueError(
                f"{where}: {len(pairs)} trajectories give {len(train)} training and {len(test)} "
                f"test trajectories with train_fraction={train_fraction}, "
                f"val_fraction={val_fraction}; need at least one of each (or use split='time')"
            )
        return {"train": train, "val": val, "test": test}
    splits: Splits = {"train": [], "val": [], "test": []}
    for i, (t, x) in enumerate(pairs):
        train, val, test = ((t[s], x[s]) for s in _parts(len(t), train_fraction, val_fraction))
        if len(train[0]) < 2 or len(test[0]) < 2:
            raise ValueError(
                f"{where}: trajectory {i} has {len(t)} points, too few to split by time with "
                f"train_fraction={train_fraction}, val_fraction={val_fraction}"
            )
        splits["train"].append(train)
        if len(val[0]) >= 2:
            splits["val"].append(val)
        splits["test"].append(test)
    return splits


def _parts(n: int, train_fraction: float, val_fraction: float) -> tuple[slice, slice, slice]:
    """The train, val and test slices of ``n`` items: ``int(n * fraction)`` each, test the rest."""
    n_train, n_val = int(n * train_fraction), int(n * val_fraction)
    return slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None)
