"""Freezing the shared part of a model for a transfer phase, and releasing it afterwards.

:class:`Freezer` freezes every parameter outside a trainable set and keeps the normalisation
layers outside it in eval mode (running statistics stay as they are), then makes the parameters
trainable again (in the spirit of Lightning's ``BaseFinetuning.freeze`` / ``make_trainable``);
``GradientMask("calibrate")`` and ``LinearProbe`` use it, through :class:`FreezingCallback`
(normalisation layers in eval mode at every batch, everything released at ``teardown``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from pl_pac_trs.pac.callback import PacCallback
from pl_pac_trs.pac.selection import matches_any

__all__ = ["Freezer", "FreezingCallback", "has_running_stats"]


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
        :func:`~pl_pac_trs.pac.selection.matches_any`) and the parameter names ``trainable``.

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
