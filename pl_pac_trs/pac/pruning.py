"""Step 1 of PAC-Net: magnitude pruning into essential (kept) and redundant (pruned) weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from typing_extensions import override

from pl_pac_trs.pac.callback import MasksCallback
from pl_pac_trs.pac.checkpoint import FinalCheckpoint, save_checkpoint_atomic
from pl_pac_trs.pac.checks import check_amount
from pl_pac_trs.pac.mask_rules import (
    DEFAULT_MODULE_TYPES,
    PruningFn,
    check_pruning_fn,
    compute_masks,
    select_parameters,
)
from pl_pac_trs.pac.state import Masks, PacState, log_sparsity, pac_state, save_masks, set_pac_state

__all__ = ["MagnitudePruning", "apply_masks", "forget_dense_epochs", "log_sparsity"]


def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Sets the pruned (``False``) entries of the named parameters to exactly ``0.0``, in place."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            p = params[name]
            p.masked_fill_(~mask.to(p.device), 0.0)


class MagnitudePruning(MasksCallback):
    """Computes PAC-Net masks with a mask rule and prunes (zeroes) the redundant weights.

    Pruning happens once per fit, either at the start of epoch ``epoch`` (epochs ``0..epoch-1``
    are dense source training; with a ``GradientMask(phase="allocate")`` in the same trainer the
    remaining epochs are the allocate step) or, with ``epoch=None``, at the end of training (save
    the checkpoint afterwards with ``trainer.save_checkpoint``, or list a ``FinalCheckpoint``
    after this callback). The masks go into the model's
    :class:`~pl_pac_trs.pac.state.PacState` (``model.pac_state``), where a
    ``GradientMask("allocate")`` of the same fit takes them, and into every later checkpoint.
    Under DDP the masks computed on global rank zero are broadcast.

    Lightning's own callbacks beside it: when pruning happens, every monitored
    ``ModelCheckpoint`` forgets the best scores of the dense epochs (its files stay on disk, no
    longer tracked), so its ``best_model_path`` is never a pre-pruning model, and every
    ``EarlyStopping`` starts counting again. An ``EarlyStopping`` that could end the fit before
    pruning at ``epoch`` is refused at set-up unless ``Trainer(min_epochs > epoch)``.

    Args:
        amount: Fraction of the prunable weights pruned, in ``[0, 1)``. Default: the paper's
            0.8; the shipped configs use the ratio chosen on validation per task.
        pruning_fn: The mask rule: ``"global"`` ranks all prunable weights by ``|w|`` together
            (default: on validation global was better than layer-wise or within one std of it on
            every shipped task), ``"layer"`` ranks each tensor separately (most likely the
            paper's "LWM"), or a callable ``(params, amount) -> masks`` (``True`` = kept).
        epoch: Epoch at whose start pruning happens; ``None`` prunes at the end of training.
        module_types: Prunable module classes or dotted names (default ``nn.Linear`` and all
            convolutions).
        param_names: Parameter names inside those modules (default ``("weight",)``).
        include: Optional name patterns a parameter must match (``fnmatch`` or module prefix).
        exclude: Name patterns removed from the selection.
        dense_checkpoint: Optional path where the dense model is checkpointed just before
            pruning (for baselines that start from the dense source model).
        verbose: Print the sparsity summary (rank zero).

    Raises:
        ValueError: For bad arguments; before training, when nothing matches, ``epoch`` is
            beyond ``max_epochs``, an ``EarlyStopping`` could stop the fit before ``epoch``, or a
            ``FinalCheckpoint`` is listed before this callback with ``epoch=None``.

    Example::

        >>> MagnitudePruning(amount=0.8, epoch=20).amount
        0.8
    """

    def __init__(
        self,
        amount: float = 0.8,
        pruning_fn: str | PruningFn = "global",
        epoch: int | None = None,
        module_types: Sequence[type[nn.Module] | str] = DEFAULT_MODULE_TYPES,
        param_names: Sequence[str] = ("weight",),
        include: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        dense_checkpoint: str | None = None,
        verbose: bool = True,
    ) -> None:
        self.amount = check_amount(amount)
        check_pruning_fn(pruning_fn)
        bad_epoch = isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0
        if epoch is not None and bad_epoch:
            raise ValueError(f"epoch must be a non-negative int or None, got {epoch!r}")
        if not param_names:
            raise ValueError("param_names must name at least one parameter, e.g. ['weight']")
        self.pruning_fn = pruning_fn
        self.epoch = epoch
        self.module_types = tuple(module_types)
        self.param_names = tuple(param_names)
        self.include = None if include is None else tuple(include)
        self.exclude = tuple(exclude)
        self.dense_checkpoint = dense_checkpoint
        self.verbose = verbose
        self.masks: Masks | None = None
        self.pruned_at: dict[str, int] | None = None
        self.sparsity: dict[str, float] | None = None

    @property
    def state_key(self) -> str:
        rule = self.pruning_fn if isinstance(self.pruning_fn, str) else "custom"
        return self._generate_state_key(amount=self.amount, pruning_fn=rule)

    def targets(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The parameters this callback prunes in ``model``."""
        return select_parameters(
            model, self.module_types, self.param_names, self.include, self.exclude
        )

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not self.targets(pl_module):
            raise ValueError(
                f"MagnitudePruning: no prunable parameter matched in {type(pl_module).__name__} "
                f"(module_types={self.module_types}, param_names={self.param_names}, "
                f"include={self.include}, exclude={self.exclude})"
            )
        max_epochs = trainer.max_epochs
        if max_epochs not in (None, -1) and self.epoch is not None and self.epoch >= max_epochs:
            raise ValueError(
                f"MagnitudePruning(epoch={self.epoch}) would never run: the Trainer stops "
                f"after max_epochs={max_epochs} (epochs 0..{max_epochs - 1}); use an epoch "
                f"below max_epochs, or epoch=None to prune when the fit ends"
            )
        self._check_neighbours(trainer)
        # the model is dense until this callback prunes it (a resumed checkpoint's state, if it
        # has masks, replaces this one when it is restored)
        when = "end" if self.epoch is None else "epoch"
        set_pac_state(pl_module, PacState(phase="dense", pruning=when))
        self.masks = None

    def _check_neighbours(self, trainer: Trainer) -> None:
        """Callbacks of the same trainer that would undo or miss the pruning: a FinalCheckpoint
        saving before end-of-fit pruning, an EarlyStopping that may stop before ``epoch``."""
        callbacks = list(trainer.callbacks)
        me = callbacks.index(self) if self in callbacks else len(callbacks)
        if self.epoch is None and any(isinstance(cb, FinalCheckpoint) for cb in callbacks[:me]):
            raise ValueError(
                "FinalCheckpoint must be listed after MagnitudePruning in the Trainer's callbacks "
                "(it saves in on_train_end, where MagnitudePruning(epoch=None) prunes)"
            )
        stoppers = [cb for cb in callbacks if isinstance(cb, EarlyStopping)]
        min_epochs = trainer.fit_loop.min_epochs or 0
        if self.epoch is not None and stoppers and min_epochs <= self.epoch:
            raise ValueError(
                f"MagnitudePruning(epoch={self.epoch}) with EarlyStopping: the fit could stop "
                f"before pruning; set Trainer(min_epochs={self.epoch + 1}) or more (EarlyStopping "
                "then starts counting again when pruning happens)"
            )

    @override
    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        state = pac_state(pl_module)
        if state is not None and state.masks is not None:  # resumed after pruning
            self.masks = state.masks

    @override
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.masks is None and self.epoch is not None and trainer.current_epoch >= self.epoch:
            self.prune(trainer, pl_module)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.masks is None and self.epoch is None:
            self.prune(trainer, pl_module)
        elif self.masks is None:
            rank_zero_warn(
                f"MagnitudePruning(epoch={self.epoch}) never ran: training ended at epoch "
                f"{trainer.current_epoch}; no masks were made"
            )

    def prune(self, trainer: Trainer, pl_module: LightningModule) -> Masks:
        """Computes masks (rank zero, broadcast), zeroes the pruned weights, logs sparsity, and
        makes the monitored checkpoints and early stopping forget the dense epochs."""
        if self.dense_checkpoint:
            save_checkpoint_atomic(trainer, self.dense_checkpoint)
        params = self.targets(pl_module)
        masks = (
            compute_masks(params, self.amount, self.pruning_fn) if trainer.is_global_zero else None
        )
        if trainer.world_size > 1:
            cpu = None if masks is None else {k: v.cpu() for k, v in masks.items()}
            masks = trainer.strategy.broadcast(cpu, src=0)
        assert masks is not None
        self.masks = {k: m.to(params[k].device) for k, m in masks.items()}
        apply_masks(pl_module, self.masks)
        set_pac_state(pl_module, PacState(masks=self.masks, phase="pruned"))
        forget_dense_epochs(trainer)
        self.pruned_at = {"epoch": trainer.current_epoch, "global_step": trainer.global_step}
        metrics = log_sparsity(trainer, self.masks)
        self.sparsity = {k.removeprefix("pac/sparsity/"): v for k, v in metrics.items()}
        if self.verbose:
            rank_zero_info(
                f"MagnitudePruning: pruned {metrics['pac/sparsity']:.4f} of "
                f"{sum(m.numel() for m in self.masks.values())} weights in {len(self.masks)} "
                f"tensors at epoch {trainer.current_epoch}"
            )
        return self.masks

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"pruned_at": self.pruned_at, "sparsity": self.sparsity}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pruned_at = state_dict.get("pruned_at")
        self.sparsity = state_dict.get("sparsity")

    def export(self, path: str | Path) -> Path:
        """Writes the masks to a standalone file (see :func:`pl_pac_trs.pac.save_masks`)."""
        if self.masks is None:
            raise ValueError("MagnitudePruning.export: no masks yet (pruning has not run)")
        rule = self.pruning_fn if isinstance(self.pruning_fn, str) else "custom"
        return save_masks(self.masks, path, amount=self.amount, pruning_fn=rule)


def forget_dense_epochs(trainer: Trainer) -> None:
    """Makes every monitored ``ModelCheckpoint`` forget its best scores and files (kept on disk,
    no longer tracked) and every ``EarlyStopping`` its best score and patience count, through
    their public ``load_state_dict``: after pruning, a dense model is never the fit's best."""
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor is not None:
            inf = torch.tensor(float("inf") if cb.mode == "min" else float("-inf"))
            state = cb.state_dict()
            state.update(
                best_model_score=None,
                best_model_path="",
                kth_best_model_path="",
                kth_value=inf,
                best_k_models={},
            )
            cb.load_state_dict(state)
        elif isinstance(cb, EarlyStopping):
            inf = torch.tensor(float("inf") if cb.mode == "min" else float("-inf"))
            cb.load_state_dict({**cb.state_dict(), "wait_count": 0, "best_score": inf})
