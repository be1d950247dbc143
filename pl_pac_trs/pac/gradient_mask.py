"""Steps 2 and 3 of PAC-Net: train only one side of the masks, exactly.

``GradientMask(phase="allocate")`` re-trains the source task on the essential weights only;
``GradientMask(phase="calibrate")`` trains the target task on the redundant weights only, with
the penalty ``lam * sum(w_r ** 2)``.

Masking gradients alone is not exact (momentum and weight decay move weights whose gradient is
zero), so per optimizer (:class:`~pl_pac_trs.pac.masked_optimizer.MaskedGroup`) the callback
zeroes the frozen entries' gradients after backward and unscaling, before clipping (calibrate
first adds the penalty gradient), and in an optimizer step post-hook writes the frozen entries
back and tidies their optimizer state. A non-finite loss or gradient stops the fit before the
step (:mod:`pl_pac_trs.pac.nonfinite`), unless an fp16 grad scaler skips the step itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from typing_extensions import override

from pl_pac_trs.pac.anchor import AnchorPenalty
from pl_pac_trs.pac.checks import check_choice, check_strength
from pl_pac_trs.pac.freezing import FreezingCallback
from pl_pac_trs.pac.handoff import MasksCallback, SourceCheckpoint, handoff
from pl_pac_trs.pac.masked_optimizer import STATE_TIDY_EVERY, MaskedGroup, build_groups
from pl_pac_trs.pac.masks import Masks, load_masks, log_sparsity, masks_equal, validate_masks
from pl_pac_trs.pac.nonfinite import LossProbe, NonFiniteError, check_finite_weights, step_error
from pl_pac_trs.pac.selection import require_matches

__all__ = ["GradientMask", "NonFiniteError", "PenaltyNorm", "Phase"]

Phase = Literal["allocate", "calibrate"]
PenaltyNorm = Literal["sum", "mean"]
_PHASES, _PENALTY_NORMS = ("allocate", "calibrate"), ("sum", "mean")


class GradientMask(MasksCallback, FreezingCallback):
    """Trains only the essential (allocate) or only the redundant (calibrate) weights, exactly.

    Invariants (bit-exact, checked with ``torch.equal`` in the tests) for every masked parameter,
    under any ``torch.optim`` optimizer (momentum, Adam moments, decoupled weight decay), 32-bit
    or mixed precision, gradient clipping, gradient accumulation, resume and DDP:

    * ``allocate``: pruned entries stay exactly ``0.0``.
    * ``calibrate``: essential entries stay bit-identical to their values at the start of the
      phase (the source checkpoint); redundant entries start at exactly ``0.0``.

    Both hold whatever the trainable entries do (a non-finite value stops the fit first). What
    the masks do not cover (the paper is silent): in allocate every unmasked parameter trains
    normally; in calibrate (``train_shared=False``) every unmasked parameter outside
    ``new_modules`` is frozen from ``setup`` to ``teardown`` and normalisation layers outside
    ``new_modules`` run in eval mode, which makes the source model recoverable exactly
    (:func:`~pl_pac_trs.pac.source_view`); ``new_modules`` (a new head) train normally.

    Args:
        phase: ``"allocate"`` or ``"calibrate"``.
        lam: Calibrate penalty strength ``lam * sum(w_r ** 2)`` over the redundant weights
            (default: the paper's 0.01; the shipped configs: the λ chosen on validation), added
            to the gradient (``2 * lam * w_r``) of every (micro-)batch; not in the logged
            training loss, logged as ``pac/penalty`` once per epoch. Ignored in allocate.
        penalty_norm: ``"sum"`` (the paper's form, default), or ``"mean"``:
            ``lam * mean(w_r ** 2)`` over the redundant entries, a ``lam`` that does not grow
            with the model's size.
        masks: A checkpoint written while masks existed, an exported masks file, or a mapping of
            bool masks. ``None``: allocate takes the masks a ``MagnitudePruning`` callback of the
            same fit makes; calibrate takes those of the checkpoint a ``LoadSourceWeights``
            callback of the same fit loads (both published on :mod:`~pl_pac_trs.pac.handoff`).
            Masks are also restored from this callback's state on resume.
        new_modules: Name patterns of modules that are new for this phase (typically a new target
            head): their masks are dropped and they train normally.
        train_shared: Calibrate only: train the unmasked shared parameters (paper: silent;
            default: frozen). Trained, the source needs ``source_state`` to be recovered.
        anchor_lam: Allocate only, default 0 (off): starting-point penalty
            ``anchor_lam * ||w_e - w_e(start)||^2`` on the essential weights.
        verbose: Print a summary when the masks are attached (rank zero).

    Attributes:
        masks: The masks enforced (``None`` until known).
        state_tidy_every: Steps between two tidyings of the frozen entries' optimizer state
            (default :data:`~pl_pac_trs.pac.masked_optimizer.STATE_TIDY_EVERY`; ``0``: never).

    Raises:
        ValueError: For bad arguments; before training, for masks that do not fit the model, a
            ``new_modules`` pattern that matches nothing, or no masks at all.
        NonFiniteError: During the fit, before a step on a non-finite loss or gradient.

    Example::

        >>> from pl_pac_trs.pac import MagnitudePruning
        >>> callbacks = [MagnitudePruning(0.8, epoch=20), GradientMask("allocate")]
    """

    def __init__(
        self,
        phase: Phase = "allocate",
        lam: float = 0.01,
        masks: str | os.PathLike | Mapping[str, Tensor] | None = None,
        new_modules: Sequence[str] = (),
        train_shared: bool = False,
        anchor_lam: float = 0.0,
        verbose: bool = True,
        penalty_norm: PenaltyNorm = "sum",
    ) -> None:
        super().__init__()
        check_choice("phase", phase, _PHASES, owner="GradientMask")
        check_choice("penalty_norm", penalty_norm, _PENALTY_NORMS, owner="GradientMask")
        lam = check_strength("lam", lam, owner="GradientMask")
        anchor_lam = check_strength("anchor_lam", anchor_lam, owner="GradientMask")
        if anchor_lam and phase != "allocate":
            raise ValueError("anchor_lam is an option of phase='allocate' only")
        if isinstance(new_modules, str):
            new_modules = (new_modules,)
        self.phase = phase
        self.lam = lam
        self.penalty_norm = penalty_norm
        self._strength = lam
        self.masks_arg = masks
        self.new_modules = tuple(new_modules)
        self.train_shared = bool(train_shared)
        self.anchor_lam = anchor_lam
        self.verbose = verbose
        self.state_tidy_every = STATE_TIDY_EVERY
        self.masks: Masks | None = None
        self._restored: dict[str, Any] | None = None
        self._essential: dict[str, Tensor] = {}
        self._anchor = AnchorPenalty(anchor_lam)
        self._by_optimizer: dict[int, MaskedGroup] = {}
        self._handles: list[Any] = []
        self._pending_module: nn.Module | None = None
        self._expects_pruning = False
        self._probe = LossProbe()

    @property
    def state_key(self) -> str:
        return self._generate_state_key(phase=self.phase)

    @property
    def accepts_pruning_masks(self) -> bool:
        """Whether masks made by ``MagnitudePruning`` in the same fit are taken."""
        return self.phase == "allocate" and self.masks_arg is None

    @property
    def groups(self) -> tuple[MaskedGroup, ...]:
        """The masked-optimizer kernels in use, one per optimizer holding masked weights."""
        return tuple(self._by_optimizer.values())

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        require_matches(pl_module, self.new_modules, "GradientMask: new_modules pattern")
        # Lightning restores callback states after ``setup``: see ``load_state_dict``
        self._pending_module = pl_module
        if isinstance(self.masks_arg, Mapping):
            self._take_masks(pl_module, dict(self.masks_arg))
        elif self.masks_arg is not None:
            self._take_masks(pl_module, load_masks(self.masks_arg))
        elif self.phase == "allocate":  # from pruning in this fit, or the checkpoint resumed
            handoff(trainer).on_masks(self.attach)
        else:  # from the source checkpoint, or the checkpoint resumed
            handoff(trainer).on_source(self._take_source_masks)

    def _take_masks(self, pl_module: nn.Module, masks: Mapping[str, Tensor]) -> None:
        """Checks ``masks``; calibrate freezes the unmasked shared parameters and normalisation
        layers (before the model is wrapped: DDP registers only parameters that require grad)."""
        self.masks = validate_masks(masks, pl_module, ignore=self.new_modules)
        if self.phase == "calibrate" and not self.train_shared:
            self.freezer.freeze(pl_module, self.new_modules, trainable=self.masks)

    def _take_source_masks(self, source: SourceCheckpoint) -> None:
        if self._pending_module is not None and self.masks is None:
            masks = load_masks(source.path, trust_pickle=source.trust_pickle)
            self._take_masks(self._pending_module, masks)

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.accepts_pruning_masks:
            epochs = handoff(trainer).pruning_epochs
            if None in epochs:
                raise ValueError(
                    "GradientMask(phase='allocate') with MagnitudePruning(epoch=None): pruning "
                    "happens when this fit ends, so nothing would be allocated; give "
                    "MagnitudePruning an epoch, or run allocate as a fit of its own"
                )
            self._expects_pruning = bool(epochs)
        restored = self._restored
        if restored is not None and restored.get("masks") is not None:
            state_masks = validate_masks(restored["masks"], pl_module, ignore=self.new_modules)
            if self.masks is not None and not masks_equal(self.masks, state_masks):
                raise ValueError(
                    "GradientMask: the masks given differ from those in the checkpoint being "
                    "resumed"
                )
            self.masks = state_masks
        self._pending_module = None
        if self.masks is not None:
            self.attach(trainer, pl_module, self.masks)
        elif not self._expects_pruning:
            hint = (
                "a LoadSourceWeights callback whose checkpoint carries masks"
                if self.phase == "calibrate"
                else "a MagnitudePruning callback to the same Trainer"
            )
            raise ValueError(
                f"GradientMask(phase={self.phase!r}) found no masks: pass masks=<checkpoint or "
                f"masks file>, add {hint}, or resume (ckpt_path) from a checkpoint written while "
                "they existed"
            )

    def attach(self, trainer: Trainer, pl_module: LightningModule, masks: Masks) -> None:
        """Starts enforcing ``masks`` (called at fit start, or when pruning publishes masks).

        Args:
            trainer: The trainer (its ``optimizers``, ``loggers``, ``is_global_zero`` and
                ``global_step`` are read).
            pl_module: The model.
            masks: Bool masks by parameter name.
        """
        resumed = self._restored is not None and self._restored.get("masks") is not None
        params = dict(pl_module.named_parameters())
        self.masks = {k: m.to(params[k].device) for k, m in masks.items()}
        # the factor of sum(w_r ** 2): lam, or lam / (number of redundant entries)
        redundant = sum(int((~m).sum()) for m in self.masks.values())
        self._strength = self.lam / max(redundant, 1) if self.penalty_norm == "mean" else self.lam
        self._remove_hooks()
        with torch.no_grad():
            for name, mask in self.masks.items():
                p = params[name]
                if not resumed:
                    p.masked_fill_(~mask, 0.0)  # pruned (allocate) / start of calibration
                if self.phase == "calibrate":
                    self._essential[name] = p.detach()[mask].clone()
        if self.anchor_lam:
            restored = (self._restored or {}).get("anchor") if resumed else None
            self._anchor.start({n: params[n] for n in self.masks}, self.masks, restored)
        essential = self._essential if self.phase == "calibrate" else None
        self._by_optimizer = build_groups(trainer.optimizers, params, self.masks, essential)
        for opt in trainer.optimizers:
            if id(opt) in self._by_optimizer:
                self._handles.append(opt.register_step_post_hook(self._after_step))
        steps = (self._restored or {}).get("optimizer_steps") if resumed else None
        if isinstance(steps, list) and len(steps) == len(self._by_optimizer):
            # a resumed fit keeps the tidying cadence of the interrupted one (bit-exact state)
            for group, count in zip(self._by_optimizer.values(), steps, strict=True):
                group.steps = int(count)
        # (DDP: only the all-reduced gradients decide, see ``LossProbe``)
        self._probe = LossProbe(enabled=getattr(trainer, "world_size", 1) == 1)
        missing = set(self.masks) - {n for g in self._by_optimizer.values() for n in g.names}
        if missing:
            rank_zero_warn(f"GradientMask: masked parameters in no optimizer: {sorted(missing)}")
        log_sparsity(trainer, self.masks)
        if self.verbose:
            n = sum(m.numel() for m in self.masks.values())
            kept = sum(int(m.sum()) for m in self.masks.values())
            rank_zero_info(
                f"GradientMask({self.phase}): {len(self.masks)} masked tensors, {kept}/{n} "
                f"essential; frozen unmasked parameters: {len(self.freezer.frozen)}"
            )

    @override
    def on_before_backward(
        self, trainer: Trainer, pl_module: LightningModule, loss: Tensor
    ) -> None:
        if self._by_optimizer and self._probe.enabled:
            self._probe.add(loss)

    @override
    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        group = self._by_optimizer.get(id(optimizer))
        probe = self._probe.take()
        if group is None:
            return
        # No ``torch.no_grad()`` (Lightning calls this hook with grad enabled, and entering the
        # context costs time on every step): the in-place ops below touch only gradients and
        # detached views of the weights, so autograd records nothing.
        if self.phase == "allocate":
            if self.anchor_lam:
                self._anchor.add_gradient(group.named_params, self.masks, group.names)
            group.mask_gradients()
        else:
            group.mask_gradients(penalty=2 * self._strength)
        if getattr(getattr(trainer, "precision_plugin", None), "scaler", None) is not None:
            return  # fp16 grad scaler: it skips steps with inf/NaN gradients itself
        if not group.finite(probe):
            raise step_error(f"GradientMask({self.phase})", trainer, group, probe)

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        group = self._by_optimizer.get(id(optimizer))
        if group is not None:
            group.after_step(optimizer, self.state_tidy_every)

    def penalty(self, pl_module: nn.Module) -> Tensor:
        """The calibrate penalty (``lam * sum(w_r ** 2)`` or, with ``penalty_norm="mean"``,
        ``lam * mean(w_r ** 2)``) at the current weights."""
        params = dict(pl_module.named_parameters())
        total = torch.zeros((), dtype=torch.float64)
        for name, mask in (self.masks or {}).items():
            w = params[name].detach()
            total += (w.double() ** 2).masked_fill(mask, 0).sum().cpu()
        return self._strength * total

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.phase == "calibrate" and self.masks:
            pl_module.log("pac/penalty", self.penalty(pl_module).float(), sync_dist=False)

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        if stage != "fit":
            return
        self._remove_hooks()
        self._restored = None
        self._pending_module = None
        self._expects_pruning = False

    @override
    def check_before_save(self, trainer: Trainer, pl_module: LightningModule) -> None:
        check_finite_weights(f"GradientMask({self.phase})", pl_module, trainer.global_step)

    @override
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"phase": self.phase, "masks": self.masks}
        if self._by_optimizer:  # optimizer steps since the masks were attached, per optimizer
            state["optimizer_steps"] = [g.steps for g in self._by_optimizer.values()]
        if self._anchor.anchors:
            state["anchor"] = self._anchor.anchors
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict)
        module = self._pending_module
        if module is not None and self.masks is None and state_dict.get("masks") is not None:
            # resuming with masks=None: they come from this state (before the model is wrapped)
            self._take_masks(module, state_dict["masks"])
