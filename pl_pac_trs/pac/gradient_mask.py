"""Steps 2 and 3 of PAC-Net: train only one side of the masks, exactly.

``GradientMask(phase="allocate")`` re-trains the source task on the essential weights only;
``GradientMask(phase="calibrate")`` trains the target task on the redundant weights only, with
the penalty ``lam * sum(w_r ** 2)``.

The masks come from the model's :class:`~pl_pac_trs.pac.state.PacState` (``model.pac_state``: put
there by ``MagnitudePruning`` or ``LoadSourceWeights``, or by a resumed checkpoint), or from
``masks=``. Masking gradients alone is not exact (momentum and weight decay move weights whose
gradient is zero), so per optimizer (:class:`~pl_pac_trs.pac.masked_optimizer.MaskedGroup`) the
callback zeroes the frozen entries' gradients after backward and unscaling, before clipping
(calibrate first adds the penalty gradient), and in an optimizer step post-hook writes the frozen
entries back and tidies their optimizer state. A non-finite loss or gradient stops the fit
(:class:`~pl_pac_trs.pac.masked_optimizer.NonFiniteError`), unless an fp16 grad scaler skips the
step itself.

Before the first step the callback finds the masks and declares them on the model: from
``masks=`` (checked against the model and against what is new), from the model's ``PacState``
(put there by ``MagnitudePruning`` or by a ``LoadSourceWeights`` listed before it), or from the
checkpoint a fit resumes (which must be of the same phase). Calibrate freezes what it does not
train, before the model is wrapped (DDP registers only parameters that require grad), and records
the source value of every entry outside the masks when calibration starts.
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

from pl_pac_trs.pac.baselines import AnchorPenalty
from pl_pac_trs.pac.callback import FreezingCallback, MasksCallback
from pl_pac_trs.pac.checks import check_choice, check_strength
from pl_pac_trs.pac.mask_rules import matches_any, require_matches
from pl_pac_trs.pac.masked_optimizer import (
    STATE_TIDY_EVERY,
    DeferredCheck,
    LossProbe,
    MaskedGroup,
    NonFiniteError,
    build_groups,
    check_finite_weights,
    step_error,
)
from pl_pac_trs.pac.state import (
    Masks,
    PacState,
    load_masks,
    log_sparsity,
    masks_equal,
    pac_state,
    set_pac_state,
    validate_masks,
)

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
    normally; in calibrate (``train_shared=False``) every unmasked parameter that is not new is
    frozen from ``setup`` to ``teardown`` and normalisation layers outside new modules run in
    eval mode. New modules (not loaded from the source: ``LoadSourceWeights(skip=...)``; or
    ``new_modules``) carry no masks and train normally. When calibration starts, the source
    value of every entry outside the masks is recorded in the model's state, so the source model
    is recoverable from the target checkpoint alone (:func:`~pl_pac_trs.pac.source_state_dict`).

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
            bool masks. ``None`` (default): the model's (``model.pac_state``), put there by a
            ``MagnitudePruning`` of the same fit (allocate), a ``LoadSourceWeights`` listed
            before this callback (calibrate), or the checkpoint resumed.
        new_modules: Name patterns of modules loaded from the source that this phase re-trains
            freely (their masks are dropped; their source values are recorded). Modules not
            loaded from the source are new without being listed here.
        train_shared: Calibrate only: train the unmasked shared parameters (paper: silent;
            default: frozen). Their source values are recorded, so the source stays recoverable.
        anchor_lam: Allocate only, default 0 (off): starting-point penalty
            ``anchor_lam * ||w_e - w_e(start)||^2`` on the essential weights.
        verbose: Print a summary when the masks are attached (rank zero).
        check_every: Optimizer steps between two host checks of the non-finite guard. ``1``:
            the fit stops before the first bad step (one host read of a device value per step).
            ``k > 1``: the check stays on the device (a bad step's gradients are all zeroed, so
            the frozen entries stay exact and the weights finite) and the host reads it every
            ``k`` steps and before every checkpoint, then stops the fit. ``None`` (default):
            ``1`` on the CPU (no device to wait for), the trainer's ``log_every_n_steps`` on an
            accelerator.

    Attributes:
        masks: The masks enforced (``None`` until known).
        state_tidy_every: Steps between two tidyings of the frozen entries' optimizer state
            (default :data:`~pl_pac_trs.pac.masked_optimizer.STATE_TIDY_EVERY`; ``0``: never).

    Raises:
        ValueError: For bad arguments; before training, for masks that do not fit the model, a
            ``new_modules`` pattern that matches nothing, masks naming an entry that was not
            loaded from the source, or no masks at all.
        NonFiniteError: During the fit, on a non-finite loss or gradient.

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
        check_every: int | None = None,
    ) -> None:
        super().__init__()
        check_choice("phase", phase, _PHASES, owner="GradientMask")
        check_choice("penalty_norm", penalty_norm, _PENALTY_NORMS, owner="GradientMask")
        lam = check_strength("lam", lam, owner="GradientMask")
        anchor_lam = check_strength("anchor_lam", anchor_lam, owner="GradientMask")
        if anchor_lam and phase != "allocate":
            raise ValueError("anchor_lam is an option of phase='allocate' only")
        bad_every = isinstance(check_every, bool) or not isinstance(check_every, int)
        if check_every is not None and (bad_every or check_every < 1):
            raise ValueError(
                f"GradientMask: check_every must be an int >= 1 or None, got {check_every!r}"
            )
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
        self.check_every = check_every
        self.state_tidy_every = STATE_TIDY_EVERY
        self.masks: Masks | None = None
        self._restored: dict[str, Any] | None = None
        self._resumed = False
        self._essential: dict[str, Tensor] = {}
        self._anchor = AnchorPenalty(anchor_lam)
        self._by_optimizer: dict[int, MaskedGroup] = {}
        self._handles: list[Any] = []
        self._probe = LossProbe()
        self._scaler = False
        self._deferred: DeferredCheck | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(phase=self.phase)

    @property
    def groups(self) -> tuple[MaskedGroup, ...]:
        """The masked-optimizer kernels in use, one per optimizer holding masked weights."""
        return tuple(self._by_optimizer.values())

    # -- where the masks come from, checked before the first step ------------------------

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.masks, self._restored, self._resumed = None, None, False
        require_matches(pl_module, self.new_modules, "GradientMask: new_modules pattern")
        state = pac_state(pl_module, open_only=True)
        if self.masks_arg is not None:
            given = (
                dict(self.masks_arg)
                if isinstance(self.masks_arg, Mapping)
                else load_masks(self.masks_arg)
            )
            state = self._declare(pl_module, state, given)
        if state is not None and state.masks is not None:
            self._take(pl_module, state)
        # else: from pruning in this fit (allocate), or from the checkpoint resumed

    def _declare(self, model: nn.Module, state: PacState | None, given: Masks) -> PacState:
        """Puts explicitly given masks into the model's state (checked against the model and
        against what is new: a module not loaded from the source carries no source masks)."""
        new = state.new if state is not None else ()
        given = validate_masks(given, model)
        for name in given:
            if name in new:
                module = name.rpartition(".")[0] or name
                raise ValueError(
                    f"GradientMask: masks= name {name!r}, but module {module!r} was not loaded "
                    "from the source (LoadSourceWeights skip): a new module carries no source "
                    "masks; drop it from skip or from the masks"
                )
        if state is None:
            state = PacState(phase="pruned")
        state.masks = given
        return set_pac_state(model, state)  # type: ignore[return-value]

    def _take(self, pl_module: nn.Module, state: PacState) -> None:
        """Takes the model's masks: drops those of ``new_modules``, checks them against the
        model; calibrate freezes what it does not train (before the model is wrapped: DDP
        registers only parameters that require grad) and records the source values."""
        assert state.masks is not None
        masks = {k: m for k, m in state.masks.items() if not matches_any(k, self.new_modules)}
        self.masks = validate_masks(masks, pl_module)
        if self.phase != "calibrate":
            return
        if not self.train_shared:
            new_modules = {n.rpartition(".")[0] for n in state.new} - {""}
            trainable = set(self.masks) | set(state.new)
            self.freezer.freeze(pl_module, (*self.new_modules, *new_modules), trainable=trainable)
        if state.phase != "calibrate":  # calibration starts: the model is the source model
            entries = pl_module.state_dict()
            recorded = {
                k: v.detach().cpu().clone()
                for k, v in entries.items()
                if k not in self.masks and k not in state.new
            }
            state.source = {**recorded, **state.source}
            state.masks = self.masks
            state.phase = "calibrate"

    @override
    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        taken = self.masks
        super().on_load_checkpoint(trainer, pl_module, checkpoint)  # (the checkpoint's state)
        state = pac_state(pl_module, open_only=True)
        if state is None or state.masks is None or state.phase in ("dense", "pruned"):
            if self.phase == "calibrate" or (state is not None and state.masks is not None):
                raise ValueError(
                    f"checkpoint {str(trainer.ckpt_path)!r} carries no PAC-Net masks of the "
                    f"{self.phase} phase: resume from a checkpoint this stage wrote"
                )
            return  # allocate resumed before pruning
        if state.phase != self.phase:
            raise ValueError(
                f"checkpoint {str(trainer.ckpt_path)!r} is from the {state.phase} phase, not "
                f"{self.phase}: resume from a checkpoint this stage wrote"
            )
        masks = {k: m for k, m in state.masks.items() if not matches_any(k, self.new_modules)}
        if taken is not None and not masks_equal(taken, masks):
            raise ValueError(
                f"GradientMask: the masks given (or of LoadSourceWeights' checkpoint) differ from "
                f"those in the checkpoint being resumed, {str(trainer.ckpt_path)!r}: it was "
                "written from another source model"
            )
        self._resumed = True
        if taken is None:
            self._take(pl_module, state)
        else:
            self.masks = masks

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        state = pac_state(pl_module, open_only=True)
        if self.masks is not None:
            self.attach(trainer, pl_module)
            return
        pruning = state.pruning if state is not None else None
        if self.phase == "allocate" and pruning == "epoch":
            return  # attached when pruning puts masks on the model
        if self.phase == "allocate" and pruning == "end":
            raise ValueError(
                "GradientMask(phase='allocate') with MagnitudePruning(epoch=None): pruning "
                "happens when this fit ends, so nothing would be allocated; give "
                "MagnitudePruning an epoch, or run allocate as a fit of its own"
            )
        if state is not None and state.masks is not None and self.phase == "calibrate":
            raise ValueError(
                "GradientMask(phase='calibrate') must be listed after LoadSourceWeights in the "
                "Trainer's callbacks (it freezes the shared parameters before the model is "
                "wrapped, from the masks LoadSourceWeights loads)"
            )
        if state is not None and state.origin is not None:
            raise ValueError(
                f"{state.origin!r} carries no PAC-Net masks: GradientMask({self.phase!r}) needs "
                "a checkpoint written after MagnitudePruning ran"
            )
        hint = (
            "list a LoadSourceWeights whose checkpoint carries masks before it"
            if self.phase == "calibrate"
            else "add a MagnitudePruning callback to the same Trainer"
        )
        raise ValueError(
            f"GradientMask(phase={self.phase!r}) found no masks: pass masks=<checkpoint or "
            f"masks file>, {hint}, or resume (ckpt_path) from a checkpoint written while they "
            "existed"
        )

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        if self.masks is None and self.phase == "allocate":  # pruned in this fit?
            state = pac_state(pl_module, open_only=True)
            if state is not None and state.masks is not None:
                self._take(pl_module, state)
                self.attach(trainer, pl_module)

    # -- enforcing the masks ---------------------------------------------------------------

    def attach(
        self, trainer: Trainer, pl_module: LightningModule, masks: Masks | None = None
    ) -> None:
        """Starts enforcing ``masks`` (default: :attr:`masks`; at fit start, or when pruning made
        them). ``trainer`` needs ``optimizers``, ``loggers``, ``is_global_zero``, ``global_step``.
        """
        if masks is not None:
            self.masks = dict(masks)
        assert self.masks is not None
        resumed = self._resumed
        params = dict(pl_module.named_parameters())
        self.masks = {k: m.to(params[k].device) for k, m in self.masks.items()}
        state = pac_state(pl_module, open_only=True)
        if state is not None:
            state.masks = self.masks
            state.phase = self.phase
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
        restored = self._restored or {}
        if self.anchor_lam:
            anchors = restored.get("anchor") if resumed else None
            self._anchor.start({n: params[n] for n in self.masks}, self.masks, anchors)
        essential = self._essential if self.phase == "calibrate" else None
        self._by_optimizer = build_groups(trainer.optimizers, params, self.masks, essential)
        for opt in trainer.optimizers:
            if id(opt) in self._by_optimizer:
                self._handles.append(opt.register_step_post_hook(self._after_step))
        steps = restored.get("optimizer_steps") if resumed else None
        if isinstance(steps, list) and len(steps) == len(self._by_optimizer):
            # a resumed fit keeps the tidying cadence of the interrupted one (bit-exact state)
            for group, count in zip(self._by_optimizer.values(), steps, strict=True):
                group.steps = int(count)
        # (DDP: only the all-reduced gradients decide, see ``LossProbe``)
        self._probe = LossProbe(enabled=getattr(trainer, "world_size", 1) == 1)
        # an fp16 grad scaler skips steps with inf/NaN gradients itself (fixed for the fit)
        self._scaler = (
            getattr(getattr(trainer, "precision_plugin", None), "scaler", None) is not None
        )
        every = self.check_every
        if every is None:
            on_cpu = next(iter(params.values())).device.type == "cpu"
            every = 1 if on_cpu else max(1, int(getattr(trainer, "log_every_n_steps", 50) or 1))
        self._deferred = DeferredCheck(every, trainer) if every > 1 else None
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
        if self._scaler:
            return  # fp16 grad scaler: it skips steps with inf/NaN gradients itself
        if self._deferred is not None:  # on the device; the host reads it every k steps
            self._deferred.add(group.nonfinite(probe), group)
            self._deferred.maybe_raise(f"GradientMask({self.phase})", trainer, group)
        elif not group.finite(probe):
            raise step_error(f"GradientMask({self.phase})", trainer, group, probe)

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        group = self._by_optimizer.get(id(optimizer))
        if group is not None:
            group.after_step(optimizer, self.state_tidy_every)

    def penalty(self, pl_module: nn.Module) -> Tensor:
        """The calibrate penalty (``lam * sum(w_r ** 2)`` or, with ``penalty_norm="mean"``,
        ``lam * mean(w_r ** 2)``) at the current weights, on the weights' device (float64 where
        the device has it)."""
        params = dict(pl_module.named_parameters())
        device = next(iter(params.values())).device
        dtype = torch.float32 if device.type == "mps" else torch.float64
        total = torch.zeros((), dtype=dtype, device=device)
        for name, mask in (self.masks or {}).items():
            w = params[name].detach()
            total += (w.to(dtype) ** 2).masked_fill(mask, 0).sum()
        return self._strength * total

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._deferred is not None and self._by_optimizer:
            group = next(iter(self._by_optimizer.values()))
            self._deferred.maybe_raise(f"GradientMask({self.phase})", trainer, group, now=True)
        if self.phase == "calibrate" and self.masks:
            # the same value on every rank (the weights are replicated); sync_dist under DDP
            distributed = getattr(trainer, "world_size", 1) > 1
            value = self.penalty(pl_module).float()
            pl_module.log("pac/penalty", value, on_epoch=True, sync_dist=distributed)

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
        self._deferred = None

    @override
    def check_before_save(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._deferred is not None and self._by_optimizer:
            group = next(iter(self._by_optimizer.values()))
            self._deferred.maybe_raise(f"GradientMask({self.phase})", trainer, group, now=True)
        check_finite_weights(f"GradientMask({self.phase})", pl_module, trainer.global_step)

    @override
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"phase": self.phase}
        if self._by_optimizer:  # optimizer steps since the masks were attached, per optimizer
            state["optimizer_steps"] = [g.steps for g in self._by_optimizer.values()]
        if self._anchor.anchors:
            state["anchor"] = self._anchor.anchors
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict)
