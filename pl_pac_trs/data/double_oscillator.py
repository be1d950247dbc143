"""Real double oscillator of Schmidt & Lipson (2009), TRS-ODEN reference experiment V.

The record ``real_double_linear_h_1.txt`` has 495 whitespace-separated rows of 6 columns: column 0
unused (all zero), column 1 the time, columns 2-5 the state in hundredths, read as
``[q1, q2, p1, p2]`` after division by 100. As in the reference code, the first
``int(495 * 0.6) = 297`` points are the training trajectory (cut into windows) and the remaining
198 points are one test rollout starting at its first point.

The file is read from ``path=``, or downloaded from ``url=`` (default: the reference repository,
pinned to a commit) into ``cache_dir`` and verified by SHA-256 (:mod:`pl_pac_trs.data.download`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from typing_extensions import override

from pl_pac_trs.data.datamodule import TrajectoryDataModule
from pl_pac_trs.data.download import default_cache_dir, download_file
from pl_pac_trs.data.splitting import Splits, check_fractions, split_trajectories
from pl_pac_trs.data.tables import read_numeric_rows
from pl_pac_trs.data.windows import check_time_grid

__all__ = [
    "DOUBLE_OSCILLATOR_SHA256",
    "DOUBLE_OSCILLATOR_URL",
    "DoubleOscillatorDataModule",
    "load_double_oscillator",
]

DOUBLE_OSCILLATOR_URL = (
    "https://raw.githubusercontent.com/inhuh/trs-oden/"
    "fa4c5e80596673a333e239eb77a93ccceb0e4998/real_double_linear_h_1.txt"
)
DOUBLE_OSCILLATOR_SHA256 = "094deafabf9c283fa92e25a4c8ceb4437e2262b82870ee89a72484382f5e7fa0"


def load_double_oscillator(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a Schmidt-Lipson record: times ``(N,)`` and states ``[q1, q2, p1, p2]/100`` ``(N, 4)``.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file and line for a wrong column count (6 expected), a non-numeric,
            NaN or inf value, or a time column that is not strictly increasing.
    """
    _, table, lines = read_numeric_rows(path, expected_columns=6)
    t = table[:, 1].copy()
    check_time_grid(t, f"{path} (column 2, time)", lines)
    return t, table[:, 2:6] / 100.0


class DoubleOscillatorDataModule(TrajectoryDataModule):
    """The real double oscillator record: training windows and one test rollout.

    Args:
        path: local copy of the record; if given, ``url`` must be ``None``.
        url: address to download the record from when ``path`` is ``None`` (default: the
            reference repository's raw file).
        sha256: expected SHA-256 of the downloaded file.
        cache_dir: download cache directory; ``None``: ``~/.cache/pl_pac_trs`` (or
            ``$PL_PAC_TRS_CACHE``).
        train_fraction: leading fraction of the points used for training (reference: 0.6).
        val_fraction: fraction of points after the training part used for validation windows
            (reference: 0, no validation).
        **loader_args: ``time_horizon``, ``windows``, ``batch_size``, ``test_batch_size``,
            ``num_workers`` of :class:`~pl_pac_trs.data.TrajectoryDataModule`, with its defaults
            (the reference's: 10-step consecutive windows, full batch).

    ``energy`` is ``None``: the record gives no masses or spring constants, and the reference
    reports per-body trajectory errors (``bodies``) instead of an energy error.
    """

    name = "double_oscillator"
    state_dim = 4
    position_dim = 2
    bodies = {"body1": [0, 2], "body2": [1, 3]}
    energy = None

    def __init__(
        self,
        path: str | None = None,
        url: str | None = None,
        sha256: str = DOUBLE_OSCILLATOR_SHA256,
        cache_dir: str | None = None,
        train_fraction: float = 0.6,
        val_fraction: float = 0.0,
        **loader_args: Any,
    ) -> None:
        super().__init__(**loader_args)
        self.save_hyperparameters()
        if path is not None and url is not None:
            raise ValueError("give either path= (a local file) or url= (to download), not both")
        if path is not None and not Path(path).expanduser().is_file():
            raise FileNotFoundError(f"path={path!r}: double oscillator data file does not exist")
        self.path = path
        self.url = url if path is None and url is not None else None
        if self.path is None and self.url is None:
            self.url = DOUBLE_OSCILLATOR_URL
        self.sha256 = sha256
        self.cache_dir = cache_dir
        self.train_fraction, self.val_fraction = check_fractions(train_fraction, val_fraction)

    def data_file(self) -> Path:
        """Local path of the record (downloading and verifying it first when from ``url``)."""
        if self.path is not None:
            return Path(self.path).expanduser()
        cache = Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()
        try:
            return download_file(self.url, self.sha256, cache_dir=cache)
        except OSError as err:
            dest = cache / Path(urlparse(self.url).path).name
            reason = getattr(err.__cause__, "reason", None) or err.__cause__ or err
            raise FileNotFoundError(
                f"double oscillator data: download of {self.url} failed ({reason}).\n"
                f"Pass a local copy with path= (command line: --data.init_args.path=FILE), or "
                f"put the file at {dest}"
            ) from err

    @override
    def prepare_data(self) -> None:
        """Download (local rank 0) when reading from ``url``."""
        if self.path is None:
            self.data_file()

    @override
    def load_splits(self, write_cache: bool = False) -> Splits:
        file = self.data_file()
        t, x = load_double_oscillator(file)
        splits = split_trajectories(
            [t], [x], "time", self.train_fraction, self.val_fraction, where=str(file)
        )
        n_train = len(splits["train"][0][0])
        if n_train - 1 < self.time_horizon:
            raise ValueError(
                f"{file}: the {n_train} training points hold no window of "
                f"time_horizon={self.time_horizon} steps"
            )
        return splits
