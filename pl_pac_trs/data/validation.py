"""Argument checks shared by the datamodules: each returns the value or raises naming it.

Example:
    >>> check_count("num_train", 50)
    50
    >>> check_fraction("val_fraction", 0.0, allow_zero=True)
    0.0
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "check_count",
    "check_disjoint_seeds",
    "check_finite",
    "check_fraction",
    "check_nonnegative",
    "check_positive",
]


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as int.

    Raises:
        ValueError: naming ``name`` unless ``value`` is an integer >= ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_fraction(name: str, value: Any, allow_zero: bool = False) -> float:
    """Return ``value`` as float.

    Raises:
        ValueError: naming ``name`` unless ``value`` lies in (0, 1) (``allow_zero``: [0, 1)).
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    low_ok = ok and (value >= 0 if allow_zero else value > 0)
    if not (ok and low_ok and value < 1):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


def check_finite(name: str, value: Any) -> float:
    """Return ``value`` as float.

    Raises:
        ValueError: naming ``name`` if ``value`` is NaN or infinite.
    """
    if not np.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value: Any) -> float:
    """Return ``value`` as float.

    Raises:
        ValueError: naming ``name`` if ``value`` is negative or not finite.
    """
    if not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as float.

    Raises:
        ValueError: naming ``name`` unless ``value`` is finite and > 0.
    """
    if not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_disjoint_seeds(*ranges: tuple[str, int, int]) -> None:
    """Check that the seed ranges ``[seed, seed + count)`` of ``(name, seed, count)`` are disjoint.

    Raises:
        ValueError: naming both ranges if two overlap (their splits would share trajectories).
    """
    for i, (name_a, a, na) in enumerate(ranges):
        for name_b, b, nb in ranges[i + 1 :]:
            if na and nb and a < b + nb and b < a + na:
                raise ValueError(
                    f"seed ranges overlap: {name_a}={a} with {na} trajectories and {name_b}={b} "
                    f"with {nb} trajectories would share trajectories; choose disjoint seeds"
                )
