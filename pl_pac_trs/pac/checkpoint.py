"""Hand-off between PAC-Net stages: the model as it is when a fit ends, at a fixed path."""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

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


class FinalCheckpoint(Callback):
    """Writes a full checkpoint (weights, masks, callback states) to ``path`` when the fit ends.

    The next stage's config names the same path (``LoadSourceWeights(checkpoint=...)``,
    ``GradientMask(masks=...)``), so the stages chain through LightningCLI alone. Lightning's
    ``ModelCheckpoint`` saves at epoch or step ends, before ``MagnitudePruning(epoch=None)``
    prunes in ``on_train_end``; this callback saves in ``on_train_end``, after it. It must
    therefore be listed *after* ``MagnitudePruning`` (checked at setup).

    Args:
        path: Destination file (``.ckpt``); parent directories are created. An existing file is
            replaced only once the new checkpoint is complete.
        verbose: Print where the checkpoint was written (rank zero).
    """

    def __init__(self, path: str | os.PathLike, verbose: bool = True) -> None:
        if not str(path).strip():
            raise ValueError("FinalCheckpoint: path must be a non-empty file path")
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"FinalCheckpoint: path {str(self.path)!r} is a directory, not a file")
        self.verbose = verbose

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        from pl_pac_trs.pac.pruning import MagnitudePruning

        if stage != "fit":
            return
        callbacks = list(trainer.callbacks)
        later = callbacks[callbacks.index(self) + 1 :]
        if any(isinstance(cb, MagnitudePruning) for cb in later):
            raise ValueError(
                "FinalCheckpoint must be listed after MagnitudePruning in the Trainer's callbacks "
                "(it saves in on_train_end, where MagnitudePruning(epoch=None) prunes)"
            )

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        save_checkpoint_atomic(trainer, self.path)
        if self.verbose:
            rank_zero_info(f"FinalCheckpoint: wrote {self.path}")
