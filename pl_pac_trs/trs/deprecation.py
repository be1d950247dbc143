"""Renamed arguments of the TRS API: the old name keeps working for one release, with a
``FutureWarning``."""

from __future__ import annotations

import warnings
from typing import TypeVar

__all__ = ["renamed_argument"]

T = TypeVar("T")


def renamed_argument(owner: str, old: str, new: str, old_value: T | None, new_value: T) -> T:
    """``new_value``, or ``old_value`` when the deprecated ``old`` name was given (it wins, so
    that ``--model.lam=5`` on a config stating ``trs_weight`` still sets the weight).

    Args:
        owner: the function or class, named in the warning.
        old: the deprecated argument name.
        new: its new name.
        old_value: the value passed under ``old`` (``None``: not passed).
        new_value: the value of ``new``.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     value = renamed_argument("f", "lam", "trs_weight", 5.0, 0.0)
        >>> value, caught[0].category.__name__
        (5.0, 'FutureWarning')
        >>> renamed_argument("f", "lam", "trs_weight", None, 2.0)
        2.0
    """
    if old_value is None:
        return new_value
    warnings.warn(
        f"{owner}: `{old}` is deprecated and will be removed in the next release; use `{new}` "
        f"instead ({old}={old_value!r} is used)",
        FutureWarning,
        stacklevel=3,
    )
    return old_value
