"""Argument checks shared by the PAC-Net callbacks and the applications that configure them."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_amount", "check_choice", "check_strength"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_strength(name: str, value: Any, owner: str | None = None) -> float:
    """``value`` as a float, if it is a penalty strength: a finite number ``>= 0``.

    Args:
        name: The argument's name, for the message (``"lam"``, ``"anchor_lam"``).
        value: The value to check.
        owner: Optional prefix of the message (the class that takes the argument).

    Returns:
        ``float(value)``.

    Raises:
        ValueError: If ``value`` is not a number (``bool`` included), not finite, or negative.

    Example::

        >>> check_strength("lam", 0.01)
        0.01
        >>> check_strength("lam", -1, owner="GradientMask")
        Traceback (most recent call last):
        ...
        ValueError: GradientMask: lam must be a finite number >= 0, got -1
    """
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        prefix = f"{owner}: " if owner else ""
        raise ValueError(f"{prefix}{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_amount(value: Any) -> float:
    """``value`` as a float, if it is a pruning amount: a fraction in ``[0, 1)``.

    Args:
        value: The share of the prunable weights that pruning sets to zero.

    Returns:
        ``float(value)``.

    Raises:
        ValueError: If ``value`` is not a number (``bool`` included) in ``[0, 1)``.

    Example::

        >>> check_amount(0.8)
        0.8
        >>> check_amount(1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: amount must be a fraction in [0, 1) ..., got 1
    """
    if not _is_number(value) or not 0 <= value < 1:
        raise ValueError(
            "amount must be a fraction in [0, 1) (the share of prunable weights pruned), "
            f"got {value!r}"
        )
    return float(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...], owner: str) -> str:
    """``value`` if it is one of ``choices``.

    Raises:
        ValueError: Naming ``owner``, ``name`` and the choices.

    Example::

        >>> check_choice("penalty_norm", "mean", ("sum", "mean"), owner="GradientMask")
        'mean'
    """
    if value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {choices}, got {value!r}")
    return value
