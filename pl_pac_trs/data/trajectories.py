"""Deprecated module: its contents moved (issue 18); this alias goes after one release.

* :class:`TrajectoryDataModule` -> :mod:`pl_pac_trs.data.datamodule`
* :class:`GeneratedTrajectoryDataModule` -> :mod:`pl_pac_trs.data.generated`
* ``Splits``, ``SPLIT_MODES``, ``split_trajectories`` -> :mod:`pl_pac_trs.data.splitting`
* ``check_*`` -> :mod:`pl_pac_trs.data.validation`

The public classes stay importable from :mod:`pl_pac_trs.data`.
"""

import warnings

from pl_pac_trs.data.datamodule import TrajectoryDataModule
from pl_pac_trs.data.generated import GeneratedTrajectoryDataModule
from pl_pac_trs.data.splitting import SPLIT_MODES, Splits, split_trajectories
from pl_pac_trs.data.validation import (
    check_count,
    check_disjoint_seeds,
    check_fraction,
    check_nonnegative,
    check_positive,
)

__all__ = [
    "SPLIT_MODES",
    "GeneratedTrajectoryDataModule",
    "Splits",
    "TrajectoryDataModule",
    "check_count",
    "check_disjoint_seeds",
    "check_fraction",
    "check_nonnegative",
    "check_positive",
    "split_trajectories",
]

warnings.warn(
    "pl_pac_trs.data.trajectories is deprecated: import TrajectoryDataModule and "
    "GeneratedTrajectoryDataModule from pl_pac_trs.data (modules datamodule, generated, splitting, "
    "validation)",
    FutureWarning,
    stacklevel=2,
)
