"""Step 1 of PAC-Net: magnitude pruning into essential (kept) and redundant (pruned) weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from typing_extensions import override

from pl_pac_trs.pac.checkpoint import save_checkpoint_atomic
from pl_pac_trs.pac.checks import check_amount
from pl_pac_trs.pac.handoff import MasksCallback, handoff
from pl_pac_trs.pac.masks import Masks, log_sparsity, save_masks
from pl_pac_trs.pac.selection import DEFAULT_MODULE_TYPES, select_parameters

__all__ = ["MagnitudePruning", "apply_masks", "compute_masks", "log_sparsity"]

Scope = Literal["global", "layer"]


def _prune_flat(scores: Tensor, amount: float) -> Tensor:
    """Bool keep-mask for a flat score vector: exactly ``round(amount * n)`` smallest pruned.

    Ties are broken deterministically by position (earlier entries are pruned first), so the
    count is exact whatever the weight values.
    """
    n = scores.numel()
    k = round(amount * n)
    keep = torch.ones(n, dtype=torch.bool, device=scores.device)
    if k:
        order = torch.argsort(scores, stable=True)
        keep[order[:k]] = False
    return keep


def compute_masks(
    params: Mapping[str, Tensor], amount: float = 0.8, scope: Scope = "global"
) -> Masks:
    """Magnitude masks: ``True`` for the largest ``|w|`` (essential), ``False`` for the pruned.

    Args:
        params: Tensors by name (e.g. from :func:`~pl_pac_trs.pac.selection.select_parameters`).
        amount: Fraction pruned, in ``[0, 1)``. ``global`` prunes exactly
            ``round(amount * total)`` entries ranked over all tensors together; ``layer`` prunes
            ``round(amount * n_l)`` in each tensor.
        scope: ``"global"`` or ``"layer"``.

    Returns:
        Bool masks with the shapes and devices of ``params``.

    Raises:
        ValueError: On a bad ``amount``/``scope``, no tensors, or non-finite weights (named).
    """
    amount = check_amount(amount)
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    if not params:
        raise ValueError("compute_masks: no parameters to prune")
    for name, p in params.items():
        if not torch.isfinite(p).all():
            raise ValueError(f"cannot prune {name!r}: it holds NaN or infinite values")
    with torch.no_grad():
        if scope == "layer":
            return {
                name: _prune_flat(p.detach().abs().flatten(), amount).view_as(p)
                for name, p in params.items()
            }
        device = next(iter(params.values())).device
        scores = torch.cat([p.detach().abs().flatten().to(device) for p in params.values()])
        keep = _prune_flat(scores, amount)
        del scores
        out: Masks = {}
        start = 0
        for name, p in params.items():
            out[name] = keep[start : start + p.numel()].view_as(p).to(p.device).clone()
            start += p.numel()
        return out


def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Sets the pruned (``False``) entries of the named parameters to exactly ``0.0``, in place."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            p = params[name]
            p.masked_fill_(~mask.to(p.device), 0.0)


class MagnitudePruning(MasksCallback):
    """Computes PAC-Net masks by weight magnitude and prunes (zeroes) the redundant weights.

    Pruning happens once per fit, either at the start of epoch ``epoch`` (epochs ``0..epoch-1``
    are dense source training; with a ``GradientMask(phase="allocate")`` in the same trainer the
    remaining epochs are the allocate step) or, with ``epoch=None``, at the end of training (save
    the checkpoint afterwards with ``trainer.save_checkpoint``, or list a ``FinalCheckpoint``
    after this callback). The masks are published on the fit's :mod:`~pl_pac_trs.pac.handoff`
    record, where a ``GradientMask("allocate")`` of the same fit takes them.

    Unlike Lightning's ``ModelPruning``: no ``weight_orig`` re-parametrisation and no float masks
    (masks are bool, one byte per prunable parameter), no lottery-ticket reset, and the masks are
    written into every later checkpoint (top-level key ``"pac_masks"`` and this callback's state)
    and restored on resume. Under DDP the masks computed on global rank zero are broadcast.

    Args:
        amount: Fraction of the prunable weights pruned, in ``[0, 1)``. Default: the paper's
            0.8; the shipped configs use the ratio chosen on validation per task (docs/pac.md,
            "Settings").
        scope: ``"global"`` ranks all prunable weights together (default: the paper is silent;
            on validation global was better than layer-wise or within one std of it on every
            shipped task), ``"layer"`` ranks each tensor separately (most likely the paper's
            "LWM").
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
            beyond ``max_epochs``, or a ``FinalCheckpoint`` is listed before this callback.

    Example::

        >>> MagnitudePruning(amount=0.8, epoch=20).amount
        0.8
    """

    def __init__(
        self,
        amount: float = 0.8,
        scope: Scope = "global",
        epoch: int | None = None,
        module_types: Sequence[type[nn.Module] | str] = DEFAULT_MODULE_TYPES,
        param_names: Sequence[str] = ("weight",),
        include: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        dense_checkpoint: str | None = None,
        verbose: bool = True,
    ) -> None:
        self.amount = check_amount(amount)
        if scope not in ("global", "layer"):
            raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
        bad_epoch = isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0
        if epoch is not None and bad_epoch:
            raise ValueError(f"epoch must be a non-negative int or None, got {epoch!r}")
        if not param_names:
            raise ValueError("param_names must name at least one parameter, e.g. ['weight']")
        self.scope = scope
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
        return self._generate_state_key(amount=self.amount, scope=self.scope)

    def targets(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The parameters this callback prunes in ``model``."""
        return select_parameters(
            model, self.module_types, self.param_names, self.include, self.exclude
        )

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        record = handoff(trainer)
        if record.final_checkpoints:  # set up first, so it would also save before this prunes
            raise ValueError(
                "FinalCheckpoint must be listed after MagnitudePruning in the Trainer's callbacks "
                "(it saves in on_train_end, where MagnitudePruning(epoch=None) prunes)"
            )
        if not self.targets(pl_module):
            raise ValueError(
                f"MagnitudePruning: no prunable parameter matched in {type(pl_module).__name__} "
                f"(module_types={self.module_types}, param_names={self.param_names}, "
                f"include={self.include}, exclude={self.exclude})"
            )
        max_epochs = trainer.max_epochs
        bounded = max_epochs not in (None, -1) and self.masks is None  # (masks: resumed)
        if bounded and self.epoch is not None and self.epoch >= max_epochs:
            raise ValueError(
                f"MagnitudePruning(epoch={self.epoch}) would never run: the Trainer stops "
                f"after max_epochs={max_epochs} (epochs 0..{max_epochs - 1}); use an epoch "
                f"below max_epochs, or epoch=None to prune when the fit ends"
            )
        record.pruning_epochs.append(self.epoch)
        if self.dense_checkpoint:
            record.dense_checkpoints.append(Path(self.dense_checkpoint))

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.masks is not None:  # restored on resume: publish them again
            self._move(pl_module)
            handoff(trainer).publish_masks(trainer, pl_module, self.masks)

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
        """Computes masks (rank zero, broadcast), zeroes the pruned weights, logs sparsity."""
        if self.dense_checkpoint:
            save_checkpoint_atomic(trainer, self.dense_checkpoint)
        params = self.targets(pl_module)
        masks = compute_masks(params, self.amount, self.scope) if trainer.is_global_zero else None
        if trainer.world_size > 1:
            cpu = None if masks is None else {k: v.cpu() for k, v in masks.items()}
            masks = trainer.strategy.broadcast(cpu, src=0)
        self.masks = masks
        self._move(pl_module)
        apply_masks(pl_module, self.masks)
        self.pruned_at = {"epoch": trainer.current_epoch, "global_step": trainer.global_step}
        metrics = log_sparsity(trainer, self.masks)
        self.sparsity = {k.removeprefix("pac/sparsity/"): v for k, v in metrics.items()}
        if self.verbose:
            rank_zero_info(
                f"MagnitudePruning: pruned {metrics['pac/sparsity']:.4f} of "
                f"{sum(m.numel() for m in self.masks.values())} weights in {len(self.masks)} "
                f"tensors at epoch {trainer.current_epoch}"
            )
        handoff(trainer).publish_masks(trainer, pl_module, self.masks)
        return self.masks

    def _move(self, pl_module: LightningModule) -> None:
        params = dict(pl_module.named_parameters())
        assert self.masks is not None
        self.masks = {
            k: m.to(params[k].device) if k in params else m for k, m in self.masks.items()
        }

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"masks": self.masks, "pruned_at": self.pruned_at, "sparsity": self.sparsity}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.masks = state_dict.get("masks")
        self.pruned_at = state_dict.get("pruned_at")
        self.sparsity = state_dict.get("sparsity")

    def export(self, path: str | Path) -> Path:
        """Writes the masks to a standalone file (see :func:`pl_pac_trs.pac.save_masks`)."""
        if self.masks is None:
            raise ValueError("MagnitudePruning.export: no masks yet (pruning has not run)")
        return save_masks(self.masks, path, amount=self.amount, scope=self.scope)
