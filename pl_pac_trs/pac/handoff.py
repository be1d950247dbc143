"""The explicit hand-off between the PAC-Net callbacks of one fit, and masks in checkpoints.

No PAC-Net callback looks another one up in ``trainer.callbacks``. Each one *publishes* what the
others may need on the fit's :class:`Handoff` record (``handoff(trainer)``) and *reads* or
*subscribes to* what it needs:

* ``MagnitudePruning`` publishes its ``epoch`` and ``dense_checkpoint`` at ``setup``, and its
  masks when it prunes (or resumes); ``GradientMask("allocate", masks=None)`` takes the masks,
  ``WandbArtifacts`` logs the dense checkpoint.
* ``LoadSourceWeights`` publishes its checkpoint at ``setup``; ``GradientMask("calibrate",
  masks=None)`` reads the masks it carries, ``WandbArtifacts`` declares it as the run's input.
* ``FinalCheckpoint`` publishes its path at ``setup``; ``WandbArtifacts`` logs that file, and a
  ``MagnitudePruning`` set up after it (so listed after it, and pruning after it saved) refuses.

``setup`` hooks run in the order of ``trainer.callbacks``, before the model is wrapped (DDP) and
before ``on_fit_start``; a subscriber is called at once for a value already published, so the
callbacks may be listed in any order (except the one ordering :class:`FinalCheckpoint` needs).
The record lives from the first ``setup`` of a fit until its ``teardown`` (or an exception).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

from pl_pac_trs.pac.masks import CHECKPOINT_KEY, Masks

__all__ = ["Handoff", "MasksCallback", "PacCallback", "SourceCheckpoint", "handoff"]


@dataclass(frozen=True)
class SourceCheckpoint:
    """The source checkpoint a target fit starts from (published by ``LoadSourceWeights``)."""

    path: Path
    trust_pickle: bool = False


MasksListener = Callable[[Trainer, LightningModule, Masks], None]
SourceListener = Callable[[SourceCheckpoint], None]


@dataclass
class Handoff:
    """What the PAC-Net callbacks of one fit publish for each other.

    Attributes:
        pruning_epochs: The ``epoch`` of every pruning callback (``None``: at the end of the fit).
        masks: The masks made (or restored) by pruning in this fit, once there are some.
        source: The source checkpoint of a target fit.
        final_checkpoints: Files written when the fit ends.
        dense_checkpoints: Files holding the dense model, written just before pruning.

    Example::

        >>> record = Handoff()
        >>> record.on_source(lambda source: print("masks from", source.path))
        >>> record.publish_source(SourceCheckpoint(Path("source.ckpt")))
        masks from source.ckpt
    """

    pruning_epochs: list[int | None] = field(default_factory=list)
    masks: Masks | None = None
    source: SourceCheckpoint | None = None
    final_checkpoints: list[Path] = field(default_factory=list)
    dense_checkpoints: list[Path] = field(default_factory=list)
    _masks_listeners: list[MasksListener] = field(default_factory=list, repr=False)
    _source_listeners: list[SourceListener] = field(default_factory=list, repr=False)

    def publish_masks(self, trainer: Trainer, pl_module: LightningModule, masks: Masks) -> None:
        """Records pruning's masks and hands them to every subscriber, in subscription order."""
        self.masks = masks
        for listener in self._masks_listeners:
            listener(trainer, pl_module, masks)

    def on_masks(self, listener: MasksListener) -> None:
        """Calls ``listener(trainer, pl_module, masks)`` whenever pruning publishes masks."""
        self._masks_listeners.append(listener)

    def publish_source(self, source: SourceCheckpoint) -> None:
        """Records the source checkpoint and hands it to every subscriber."""
        self.source = source
        for listener in self._source_listeners:
            listener(source)

    def on_source(self, listener: SourceListener) -> None:
        """Calls ``listener(source)`` when the source checkpoint is published (now if it was)."""
        self._source_listeners.append(listener)
        if self.source is not None:
            listener(self.source)


_RECORDS: weakref.WeakKeyDictionary[Any, Handoff] = weakref.WeakKeyDictionary()


def handoff(trainer: Trainer) -> Handoff:
    """The :class:`Handoff` record of ``trainer``'s current fit (created on first use)."""
    record = _RECORDS.get(trainer)
    if record is None:
        record = _RECORDS[trainer] = Handoff()
    return record


def release(trainer: Trainer) -> None:
    """Drops ``trainer``'s record (the fit is over); idempotent."""
    _RECORDS.pop(trainer, None)


class PacCallback(Callback):
    """Base of the PAC-Net callbacks: releases the fit's :class:`Handoff` record at its end."""

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            release(trainer)

    @override
    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        release(trainer)  # (Lightning runs no ``teardown`` hook after an exception)


class MasksCallback(PacCallback):
    """A PAC-Net callback that holds masks: every checkpoint it sees carries them.

    The masks (``self.masks``, when not ``None``) go under the checkpoint's top-level
    :data:`~pl_pac_trs.pac.CHECKPOINT_KEY`, where :func:`~pl_pac_trs.pac.load_masks` finds them.
    Subclasses may refuse a checkpoint in :meth:`check_before_save`.
    """

    masks: Masks | None = None

    def check_before_save(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Raises to refuse writing the checkpoint (default: accepts)."""

    @override
    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.masks is not None:
            self.check_before_save(trainer, pl_module)
            checkpoint[CHECKPOINT_KEY] = self.masks
