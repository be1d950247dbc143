"""Hand-off between PAC-Net stages: the model as it is when a fit ends, at a fixed path."""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from pl_pac_trs.pac.callback import PacCallback

__all__ = ["FinalCheckpoint", "save_checkpoint_atomic"]


def save_checkpoint_atomic(trainer: Trainer, path: str | os.PathLike) -> Path:
    """``trainer.save_checkpoint`` under a temporary name, then renamed to ``path`` (rank zero).

    A run killed while saving leaves ``<path>.partial``, never a truncated ``path``. Every rank
    must call it (saving is collective); rank zero renames, then all ranks meet at a barrier.
    """
    path = Path(path)
    if trainer.is_global_zero:
        path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    trainer.save_checkpoint(partial, weights_only=False)  # every rank takes part; rank 0 writes
    if trainer.is_global_zero:
        os.replace(partial, path)
    trainer.strategy.barrier("save_checkpoint_atomic")
    return path


class FinalCheckpoint(PacCallback):
    """Writes a full checkpoint (weights, masks, callback states) to ``path`` when the fit ends.

    The next stage's config names the same path (``LoadSourceWeights(checkpoint=...)``,
    ``GradientMask(masks=...)``), so the stages chain through LightningCLI alone. Lightning's
    ``ModelCheckpoint`` saves at epoch or step ends, before ``MagnitudePruning(epoch=None)``
    prunes in ``on_train_end``; this callback saves in ``on_train_end``, after it. It must
    therefore be listed *after* ``MagnitudePruning``, which checks the order at set-up.

    Args:
        path: Destination file (``.ckpt``); parent directories are created. An existing file is
            replaced only once the new checkpoint is complete.
        verbose: Print where the checkpoint was written (rank zero).

    Raises:
        ValueError: For an empty path or a directory.

    Example::

        >>> FinalCheckpoint("runs/pac/friedman/source.ckpt", verbose=False).path.name
        'source.ckpt'
    """

    def __init__(self, path: str | os.PathLike, verbose: bool = True) -> None:
        if not str(path).strip():
            raise ValueError("FinalCheckpoint: path must be a non-empty file path")
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"FinalCheckpoint: path {str(self.path)!r} is a directory, not a file")
        self.verbose = verbose

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        save_checkpoint_atomic(trainer, self.path)
        if self.verbose:
            rank_zero_info(f"FinalCheckpoint: wrote {self.path}")
