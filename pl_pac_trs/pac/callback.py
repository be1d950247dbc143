"""The base of the PAC-Net callbacks: checkpoints of another stage are refused, and the model's
PAC-Net state (:mod:`pl_pac_trs.pac.state`) goes into every checkpoint and comes back on resume.

The callbacks do not talk to each other: what one needs from another (pruning's masks, the
source checkpoint's masks, what is new) is on the model, in its :class:`~pl_pac_trs.pac.state.
PacState`.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

from pl_pac_trs.pac.masks import state_of
from pl_pac_trs.pac.state import CHECKPOINT_KEY, pac_state, set_pac_state

__all__ = ["MasksCallback", "PacCallback", "check_checkpoint_stage"]


def _pac_class_names() -> set[str]:
    names: set[str] = set()
    todo = [PacCallback]
    while todo:
        cls = todo.pop()
        names.add(cls.__qualname__)
        todo.extend(cls.__subclasses__())
    return names


def _stateful_keys(trainer: Trainer) -> set[str]:
    return {
        cb.state_key for cb in trainer.callbacks if isinstance(cb, PacCallback) and cb.state_dict()
    }


def check_checkpoint_stage(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    """Refuses a checkpoint (``--ckpt_path`` of a resume or a test) that another stage wrote.

    The PAC-Net callbacks whose state the checkpoint holds must be the ones of this run (same
    class and key, e.g. ``GradientMask{'phase': 'calibrate'}``): a checkpoint of the source stage
    given to calibrate, a baseline's given to a PAC-Net stage (no masks where they are needed)
    or a PAC-Net one given to a baseline (masks where none belong) is an error naming the file.
    Checkpoints without callback states (weights only) are not checked.

    Raises:
        ValueError: Naming the file and both sets of callbacks.
    """
    states = checkpoint.get("callbacks")
    if not isinstance(states, dict):
        return
    names = _pac_class_names()
    theirs = {k for k in states if str(k).split("{", 1)[0] in names}
    ours = _stateful_keys(trainer)
    if theirs != ours:
        path = trainer.ckpt_path or "the checkpoint"
        raise ValueError(
            f"checkpoint {str(path)!r} was written by another stage (PAC-Net callbacks "
            f"{sorted(theirs) or 'none'}; this run has {sorted(ours) or 'none'}): resume or test "
            "a stage from a checkpoint it wrote (a source checkpoint goes in LoadSourceWeights)"
        )


def close_state(model: LightningModule) -> None:
    """Marks the model's state as the result of a finished fit (see ``PacState.closed``)."""
    state = pac_state(model)
    if state is not None:
        state.closed = True
        state.pruning = None


class PacCallback(Callback):
    """Base of the PAC-Net callbacks: checks a restored checkpoint's stage
    (:func:`check_checkpoint_stage`)."""

    @override
    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        check_checkpoint_stage(trainer, checkpoint)


class MasksCallback(PacCallback):
    """A PAC-Net callback that enforces or makes masks: every checkpoint written while the model
    has masks carries its :class:`~pl_pac_trs.pac.state.PacState`, and a restored checkpoint's
    state is put back on the model. Subclasses may refuse a checkpoint in
    :meth:`check_before_save`."""

    def check_before_save(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Raises to refuse writing the checkpoint (default: accepts)."""

    @override
    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = pac_state(pl_module)
        if state is not None and state.masks is not None:
            self.check_before_save(trainer, pl_module)
            if CHECKPOINT_KEY not in checkpoint:  # (several callbacks write the same state)
                checkpoint[CHECKPOINT_KEY] = state.to_checkpoint()

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        if stage == "fit":
            close_state(pl_module)

    @override
    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        close_state(pl_module)  # (Lightning runs no ``teardown`` hook after an exception)

    @override
    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        if CHECKPOINT_KEY in checkpoint:  # the checkpoint's state replaces the model's
            set_pac_state(pl_module, state_of(checkpoint, str(trainer.ckpt_path)))
