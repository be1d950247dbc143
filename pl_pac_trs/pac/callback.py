"""The bases of the PAC-Net callbacks.

* :class:`PacCallback`: a checkpoint of another stage is refused (:func:`check_checkpoint_stage`).
* :class:`MasksCallback`: the model's PAC-Net state (:mod:`pl_pac_trs.pac.state`) goes into every
  checkpoint and comes back on resume.
* :class:`FreezingCallback`: freezes the shared part of a model for a transfer phase with a
  :class:`Freezer` (normalisation layers outside the trainable modules in eval mode, running
  statistics unchanged) and releases it when the fit ends, in the spirit of Lightning's
  ``BaseFinetuning.freeze`` / ``make_trainable``; ``GradientMask("calibrate")``, ``LinearProbe``
  and ``LoRA`` use it.

The callbacks do not talk to each other: what one needs from another (pruning's masks, the
source checkpoint's masks, what is new) is on the model, in its :class:`~pl_pac_trs.pac.state.
PacState`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from pl_pac_trs.pac.mask_rules import matches_any
from pl_pac_trs.pac.state import CHECKPOINT_KEY, pac_state, set_pac_state, state_of

__all__ = [
    "Freezer",
    "FreezingCallback",
    "MasksCallback",
    "PacCallback",
    "check_checkpoint_stage",
    "has_running_stats",
]


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


def has_running_stats(module: nn.Module) -> bool:
    """Whether ``module`` is a normalisation layer that tracks running statistics (BatchNorm,
    InstanceNorm with ``track_running_stats``), which train mode would update."""
    return bool(getattr(module, "track_running_stats", False)) and isinstance(
        getattr(module, "running_mean", None), Tensor
    )


class Freezer:
    """Freezes a model's parameters except the trainable ones, until :meth:`release`.

    Frozen: every parameter that requires grad, is not named in ``trainable`` and is outside the
    modules ``trainable_modules``. Normalisation layers with running statistics outside
    ``trainable_modules`` run in eval mode while :meth:`eval_norms` is called each batch.

    Example::

        >>> model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Linear(2, 1))
        >>> freezer = Freezer()
        >>> freezer.freeze(model, trainable_modules=["2"])
        >>> [n for n, p in model.named_parameters() if p.requires_grad]
        ['2.weight', '2.bias']
        >>> freezer.eval_norms(); model[1].training
        False
        >>> freezer.release(); all(p.requires_grad for p in model.parameters())
        True
    """

    def __init__(self) -> None:
        self.frozen: list[nn.Parameter] = []
        self.norms: list[nn.Module] = []

    def freeze(
        self,
        model: nn.Module,
        trainable_modules: Sequence[str] = (),
        trainable: Collection[str] = (),
    ) -> None:
        """Freezes ``model`` outside ``trainable_modules`` (name patterns, see
        :func:`~pl_pac_trs.pac.mask_rules.matches_any`) and the parameter names ``trainable``.

        Calling it again while parameters are frozen does nothing."""
        if self.frozen:
            return
        for name, p in model.named_parameters():
            if name in trainable or matches_any(name, trainable_modules):
                continue
            if p.requires_grad:
                p.requires_grad_(False)
                self.frozen.append(p)
        self.norms = [
            m
            for name, m in model.named_modules()
            if has_running_stats(m) and not matches_any(name, trainable_modules)
        ]

    def eval_norms(self) -> None:
        """Puts the frozen normalisation layers in eval mode (call it at every batch start)."""
        for m in self.norms:
            if m.training:
                m.eval()

    def release(self) -> None:
        """Makes the frozen parameters trainable again and forgets the normalisation layers."""
        for p in self.frozen:
            p.requires_grad_(True)
        self.frozen = []
        self.norms = []


class FreezingCallback(PacCallback):
    """Base of the callbacks that freeze part of the model with a :class:`Freezer`.

    Subclasses call ``self.freezer.freeze(...)`` (in ``setup``, before the model is wrapped);
    this base keeps the frozen normalisation layers in eval mode at every batch and releases
    everything at the end of the fit.
    """

    def __init__(self) -> None:
        self.freezer = Freezer()

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.freezer.eval_norms()

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        if stage == "fit":
            self.freezer.release()
