"""Steps 2 and 3 of PAC-Net: train only one side of the masks, exactly.

``GradientMask(phase="allocate")`` re-trains the source task on the essential weights only;
``GradientMask(phase="calibrate")`` trains the target task on the redundant weights only, with
the penalty ``lam * sum(w_r ** 2)``.

Masking gradients alone is not exact: momentum and weight decay move weights whose gradient is
zero. So the callback does two things:

1. In ``on_before_optimizer_step`` (Lightning calls it after backward and gradient unscaling and
   *before* gradient clipping) it zeroes the gradients of the frozen entries, so clipping norms
   and optimizer statistics see only the trainable ones, and (calibrate) adds the penalty
   gradient ``2 * lam * w`` to the redundant entries.
2. A ``torch.optim.Optimizer.register_step_post_hook`` restores the frozen entries after every
   real optimizer step (so it also covers gradient accumulation, AMP steps skipped by the grad
   scaler and manual optimisation): allocate sets pruned entries back to exactly ``0.0``;
   calibrate writes back the essential values stored compactly (``w[mask]`` only) at the start.

For the element-wise ``torch.optim`` optimizers (SGD, Adam, AdamW, NAdam, RAdam, RMSprop,
Adagrad) the same hook also tidies the optimizer state of the frozen entries every
``STATE_TIDY_EVERY`` steps: first moments / momentum to ``0`` and second moments to ``1``. Each
entry's update depends only on its own state, so the trainable entries follow bit for bit the
same trajectory either way (tested). It avoids two slow CPU paths: first moments decaying into
the denormal range after a mid-fit pruning, and ``sqrt`` of the exactly-zero second moments that
zeroed gradients leave (19-26x slower than of non-zero values on this project's x86 CPUs;
``benchmarks/pac_overhead.py`` probes it).

Tidy state also makes the restore redundant on most steps: a frozen entry whose gradient was
zeroed and whose state is tidy gets an update of exactly zero from these optimizers (a pruned
``+0.0`` stays ``+0.0``: IEEE ``+0.0 + -0.0`` is ``+0.0``), unless weight decay moves it
(``w * (1 - lr * wd)`` or the coupled ``g + wd * w``, which only matters for the non-zero
essential entries of calibrate). So the post-step restore runs only where it can change
something: on the first step after the masks are attached (the state may hold dense-training
moments), on tidy steps, for any other optimizer, when this callback did not mask the step's
gradients, and in calibrate whenever a param group holding masked weights has
``weight_decay != 0``. Every other step costs the gradient masking alone.

Non-finite losses and gradients stop the fit (:class:`NonFiniteError`) *before* the optimizer
step that would take them: after masking, the hook sums every gradient the optimizer is about to
see (masked parameters, biases, a new head, ...) plus the step's losses (single process); a NaN
or an infinity anywhere makes that sum non-finite. So no optimizer ever steps on a non-finite
gradient (which gradient clipping would spread to the frozen entries), the frozen entries keep
their exact values, and every checkpoint holds the last finite weights. The gradient masking
multiplies by the mask (fast on CPU), which turns an infinite or NaN frozen gradient into NaN;
when the check finds a non-finite value it first re-zeroes the frozen entries with the NaN-safe
``masked_fill_`` and only stops the fit if a *trainable* gradient (or the loss) is non-finite.
Under fp16 mixed precision with a grad scaler the scaler's own inf/NaN handling (skipping the
step) is left in charge.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

from pl_pac_trs.pac.masks import CHECKPOINT_KEY, Masks, load_masks, validate_masks
from pl_pac_trs.pac.pruning import log_sparsity
from pl_pac_trs.pac.targets import matches_any

__all__ = ["GradientMask", "NonFiniteError", "Phase"]

Phase = Literal["allocate", "calibrate"]
_PHASES = ("allocate", "calibrate")

STATE_TIDY_EVERY = 100
"""Optimizer steps between two tidyings of the frozen entries' optimizer state (``0`` = off).

Second moments set to ``1`` decay as ``beta2 ** k`` between tidyings: 100 steps keep them far
from the denormal range for any ``beta2 >= 0.5``."""

# Optimizers whose update of an entry depends only on that entry's gradient and state, and the
# value each per-parameter state tensor takes at frozen entries (0: moments that multiply the
# update; 1: the denominators under a square root).
_ELEMENTWISE_OPTIMIZERS = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.RMSprop,
    torch.optim.Adagrad,
)
_FROZEN_STATE = {
    "momentum_buffer": 0.0,
    "exp_avg": 0.0,
    "grad_avg": 0.0,
    "exp_avg_sq": 1.0,
    "max_exp_avg_sq": 1.0,
    "square_avg": 1.0,
    "sum": 1.0,
}


class NonFiniteError(FloatingPointError):
    """A PAC phase met a non-finite loss or gradient; the fit stopped before that step."""


def _check_strength(name: str, value: Any) -> float:
    """``value`` as a float, if it is a finite number >= 0 (a penalty strength)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise ValueError(f"GradientMask: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


class GradientMask(Callback):
    """Trains only the essential (allocate) or only the redundant (calibrate) weights, exactly.

    Invariants (bit-exact, checked with ``torch.equal`` in the tests) for every masked parameter,
    under any ``torch.optim`` optimizer (momentum, Adam moments, decoupled weight decay), 32-bit
    or mixed precision, gradient clipping, gradient accumulation, resume and DDP:

    * ``allocate``: pruned entries stay exactly ``0.0``.
    * ``calibrate``: essential entries stay bit-identical to their values at the start of the
      phase (the source checkpoint); redundant entries start at exactly ``0.0``.

    Both hold whatever the trainable entries do: a non-finite loss or gradient stops the fit
    with :class:`NonFiniteError` naming the step, before the optimizer takes it (see the module
    docstring), and no checkpoint with non-finite weights is written.

    What the masks do not cover (decided here; the paper is silent):

    * allocate: biases, normalisation parameters and running statistics and every unmasked
      parameter train normally on the source task.
    * calibrate: with ``train_shared=False`` (default) every unmasked parameter outside
      ``new_modules`` (biases, normalisation affine parameters, ...) is frozen
      (``requires_grad=False`` from ``setup`` until ``teardown``) and batch-norm layers outside
      ``new_modules`` run in eval mode, so their running statistics stay the source ones. This is
      what makes the source model recoverable exactly (:func:`~pl_pac_trs.pac.source_view`).
      Parameters of ``new_modules`` (e.g. a new target head) train normally, unregularised.

    Args:
        phase: ``"allocate"`` or ``"calibrate"``.
        lam: Calibrate penalty strength ``lam * sum(w_r ** 2)`` over the redundant weights
            (paper: 0.01). Added to the gradient (``2 * lam * w_r``), which equals adding it to the
            loss of every (micro-)batch; it is not part of the logged training loss and is logged
            as ``pac/penalty`` once per epoch. Ignored in allocate.
        masks: A checkpoint written while masks existed, an exported masks file, or a mapping of
            bool masks. ``None``: allocate takes the masks of a ``MagnitudePruning`` callback of
            the same trainer; calibrate takes those of the checkpoint of a ``LoadSourceWeights``
            callback. Masks are also restored from this callback's state on resume.
        new_modules: Name patterns of modules that are new for this phase (typically a new target
            head): their masks are dropped and they train normally.
        train_shared: Calibrate only: train the unmasked shared parameters instead of freezing
            them (the source model is then only recoverable with ``source_state``).
        anchor_lam: Allocate only, default 0 (off): starting-point penalty
            ``anchor_lam * ||w_e - w_e(start)||^2`` on the essential weights.
        verbose: Print a summary when the masks are attached (rank zero).
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
    ) -> None:
        if phase not in _PHASES:
            raise ValueError(f"phase must be one of {_PHASES}, got {phase!r}")
        lam = _check_strength("lam", lam)
        anchor_lam = _check_strength("anchor_lam", anchor_lam)
        if anchor_lam and phase != "allocate":
            raise ValueError("anchor_lam is an option of phase='allocate' only")
        if isinstance(new_modules, str):
            new_modules = (new_modules,)
        self.phase = phase
        self.lam = float(lam)
        self.masks_arg = masks
        self.new_modules = tuple(new_modules)
        self.train_shared = bool(train_shared)
        self.anchor_lam = float(anchor_lam)
        self.verbose = verbose
        self.masks: Masks | None = None
        self._restored: dict[str, Any] | None = None
        self._essential: dict[str, Tensor] = {}
        self._anchor: dict[str, Tensor] = {}
        self._by_optimizer: dict[int, _MaskedGroup] = {}
        self._handles: list[Any] = []
        self._frozen: list[nn.Parameter] = []
        self._norm_modules: list[nn.Module] = []
        self._pending_module: nn.Module | None = None
        self._expects_pruning = False
        self._loss_probe: Tensor | None = None  # 0 while this step's losses are finite, else NaN
        self._probe_losses = True

    # ------------------------------------------------------------------ set-up
    @property
    def state_key(self) -> str:
        return self._generate_state_key(phase=self.phase)

    @property
    def accepts_pruning_masks(self) -> bool:
        """Whether masks made by ``MagnitudePruning`` in the same fit are taken."""
        return self.phase == "allocate" and self.masks_arg is None

    def _initial_masks(self, trainer: Trainer) -> Masks | None:
        """The masks known at ``setup``; ``None`` when they arrive later (pruning, resume)."""
        if isinstance(self.masks_arg, Mapping):
            return dict(self.masks_arg)
        if self.masks_arg is not None:
            return load_masks(self.masks_arg)
        from pl_pac_trs.pac.pruning import MagnitudePruning
        from pl_pac_trs.pac.transfer import LoadSourceWeights

        if self.phase == "allocate":
            pruning = [cb for cb in trainer.callbacks if isinstance(cb, MagnitudePruning)]
            if any(cb.epoch is None for cb in pruning):
                raise ValueError(
                    "GradientMask(phase='allocate') with MagnitudePruning(epoch=None): pruning "
                    "happens when this fit ends, so nothing would be allocated; give "
                    "MagnitudePruning an epoch, or run allocate as a fit of its own"
                )
            self._expects_pruning = bool(pruning)
            return None  # from pruning in this fit, or from the checkpoint being resumed
        for cb in trainer.callbacks:
            if isinstance(cb, LoadSourceWeights):
                return load_masks(cb.checkpoint, trust_pickle=cb.trust_pickle)
        return None  # only a checkpoint being resumed can still provide them

    def _no_masks_error(self) -> ValueError:
        hint = (
            "add a MagnitudePruning callback to the same Trainer"
            if self.phase == "allocate"
            else "add a LoadSourceWeights callback whose checkpoint carries masks"
        )
        return ValueError(
            f"GradientMask(phase={self.phase!r}) found no masks: pass masks=<checkpoint or masks "
            f"file>, {hint}, or resume (ckpt_path) from a checkpoint written while they existed"
        )

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        names = [n for n, _ in pl_module.named_parameters()]
        for pattern in self.new_modules:
            if not any(matches_any(n, (pattern,)) for n in names):
                raise ValueError(
                    f"GradientMask: new_modules pattern {pattern!r} matches no parameter of "
                    f"{type(pl_module).__name__}"
                )
        masks = self._initial_masks(trainer)
        if masks is not None:
            self.masks = validate_masks(masks, pl_module, ignore=self.new_modules)
            self._freeze_shared(pl_module)
        else:  # Lightning restores callback states after ``setup``: see ``load_state_dict``
            self._pending_module = pl_module

    def _freeze_shared(self, pl_module: nn.Module) -> None:
        """Calibrate: freezes unmasked shared parameters and collects the normalisation layers.

        Runs before the model is wrapped (DDP registers only parameters that require grad).
        """
        if self.phase != "calibrate" or self.train_shared or self._frozen:
            return
        assert self.masks is not None
        for name, p in pl_module.named_parameters():
            if name in self.masks or matches_any(name, self.new_modules):
                continue
            if p.requires_grad:
                p.requires_grad_(False)
                self._frozen.append(p)
        self._norm_modules = [
            m
            for name, m in pl_module.named_modules()
            if isinstance(m, _NormBase)
            and m.track_running_stats
            and not matches_any(name, self.new_modules)
        ]

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        restored = self._restored
        if restored is not None and restored.get("masks") is not None:
            state_masks = validate_masks(restored["masks"], pl_module, ignore=self.new_modules)
            given = self.masks
            if given is not None and (
                given.keys() != state_masks.keys()
                or any(not torch.equal(given[k].cpu(), state_masks[k].cpu()) for k in given)
            ):
                raise ValueError(
                    "GradientMask: the masks given differ from those in the checkpoint being "
                    "resumed"
                )
            self.masks = state_masks
        self._pending_module = None
        if self.masks is not None:
            self.attach(trainer, pl_module, self.masks)
        elif not self._expects_pruning:
            raise self._no_masks_error()

    def attach(self, trainer: Trainer, pl_module: LightningModule, masks: Masks) -> None:
        """Starts enforcing ``masks`` (called at fit start, or by ``MagnitudePruning``)."""
        resumed = self._restored is not None and self._restored.get("masks") is not None
        params = dict(pl_module.named_parameters())
        self.masks = {k: m.to(params[k].device) for k, m in masks.items()}
        self._remove_hooks()
        with torch.no_grad():
            for name, mask in self.masks.items():
                p = params[name]
                if not resumed:
                    p.masked_fill_(~mask, 0.0)  # pruned (allocate) / start of calibration
                if self.phase == "calibrate":
                    self._essential[name] = p.detach()[mask].clone()
                elif self.anchor_lam:
                    anchor = (self._restored or {}).get("anchor") if resumed else None
                    if anchor is not None and name in anchor:
                        self._anchor[name] = anchor[name].to(p.device)
                    else:
                        self._anchor[name] = p.detach()[mask].clone()
        owned = {id(params[k]): k for k in self.masks}
        self._by_optimizer = {}
        for opt in trainer.optimizers:
            names = [
                owned[id(p)]
                for group in opt.param_groups
                for p in group["params"]
                if id(p) in owned
            ]
            if names:
                self._by_optimizer[id(opt)] = _MaskedGroup(
                    names,
                    params,
                    self.masks,
                    self._essential if self.phase == "calibrate" else None,
                    opt,
                )
                self._handles.append(opt.register_step_post_hook(self._after_step))
        steps = (self._restored or {}).get("optimizer_steps") if resumed else None
        if isinstance(steps, list) and len(steps) == len(self._by_optimizer):
            # a resumed fit keeps the tidying cadence of the interrupted one (bit-exact state)
            for group, count in zip(self._by_optimizer.values(), steps, strict=True):
                group.steps = int(count)
        # DDP: every rank sees the same (all-reduced) gradients but its own loss; a rank stopping
        # alone would hang the others, so only the gradients decide there
        self._probe_losses = getattr(trainer, "world_size", 1) == 1
        self._loss_probe = None
        missing = set(self.masks) - {n for g in self._by_optimizer.values() for n in g.names}
        if missing:
            rank_zero_warn(f"GradientMask: masked parameters in no optimizer: {sorted(missing)}")
        log_sparsity(trainer, self.masks)
        if self.verbose:
            n = sum(m.numel() for m in self.masks.values())
            kept = sum(int(m.sum()) for m in self.masks.values())
            rank_zero_info(
                f"GradientMask({self.phase}): {len(self.masks)} masked tensors, {kept}/{n} "
                f"essential; frozen unmasked parameters: {len(self._frozen)}"
            )

    # ---------------------------------------------------------------- training
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        for m in self._norm_modules:
            if m.training:
                m.eval()

    def on_before_backward(
        self, trainer: Trainer, pl_module: LightningModule, loss: Tensor
    ) -> None:
        if self._by_optimizer and self._probe_losses:
            zero = loss.detach().sum() * 0.0  # 0, or NaN for a NaN/inf loss (no sync here)
            probe = self._loss_probe
            self._loss_probe = zero if probe is None else probe + zero

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        group = self._by_optimizer.get(id(optimizer))
        probe, self._loss_probe = self._loss_probe, None
        if group is None:
            return
        # No ``torch.no_grad()`` (Lightning calls this hook with grad enabled, and the context
        # costs several microseconds a step): the in-place ops below touch only gradients and
        # detached views of the weights, so autograd records nothing.
        if self.phase == "allocate":
            if self.anchor_lam:
                for p, mask, name in zip(group.params, group.masks, group.names, strict=True):
                    if p.grad is not None:
                        w = p.detach()
                        p.grad[mask] += (2 * self.anchor_lam) * (w[mask] - self._anchor[name])
            group.keep_grads(on_mask=True)
        else:
            group.keep_grads(on_mask=False, penalty=2 * self.lam)
        group.grads_masked = True
        if getattr(getattr(trainer, "precision_plugin", None), "scaler", None) is not None:
            return  # fp16 grad scaler: it skips steps with inf/NaN gradients itself
        if not group.finite(probe):
            raise self._non_finite_error(trainer, group, probe)

    def _non_finite_error(
        self, trainer: Trainer | None, group: _MaskedGroup, probe: Tensor | None
    ) -> NonFiniteError:
        """The error for a step whose loss or (trainable) gradients are not all finite."""
        culprit = group.first_non_finite()
        if culprit is None and probe is not None and not bool(torch.isfinite(probe)):
            culprit = "the training loss"
        where = f"at optimizer step {group.steps} of this phase"
        if trainer is not None and hasattr(trainer, "global_step"):
            epoch = getattr(trainer, "current_epoch", "?")
            where = f"at global step {trainer.global_step} (epoch {epoch})"
        return NonFiniteError(
            f"GradientMask({self.phase}): non-finite {culprit or 'gradients'} {where}; the fit "
            "stopped before this step, so the frozen weights are intact and checkpoints hold "
            "the last finite weights.\nLower the learning rate, or check lam and the data."
        )

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        group = self._by_optimizer.get(id(optimizer))
        if group is None:
            return
        tidy = type(optimizer) in _ELEMENTWISE_OPTIMIZERS and STATE_TIDY_EVERY > 0
        # a step on gradients this callback did not mask leaves untidy state: tidy it now
        tidy_now = tidy and (group.steps % STATE_TIDY_EVERY == 0 or not group.grads_masked)
        # Tidied after step 0 (and every STATE_TIDY_EVERY steps), the state stays tidy while
        # this callback masks the gradients: then the frozen entries' update was exactly zero
        # and there is nothing to restore (see the module docstring).
        update_was_zero = (
            tidy and not tidy_now and (self.phase == "allocate" or not group.has_weight_decay())
        )
        group.steps += 1
        group.grads_masked = False
        if update_was_zero:
            return
        with torch.no_grad():
            if self.phase == "allocate":
                group.zero_pruned()
            else:
                group.restore_essential()
            if tidy_now:
                group.tidy_state(optimizer, frozen_on_mask=self.phase == "calibrate")

    def penalty(self, pl_module: nn.Module) -> Tensor:
        """The calibrate penalty ``lam * sum(w_r ** 2)`` at the current weights."""
        params = dict(pl_module.named_parameters())
        total = torch.zeros((), dtype=torch.float64)
        for name, mask in (self.masks or {}).items():
            w = params[name].detach()
            total += (w.double() ** 2).masked_fill(mask, 0).sum().cpu()
        return self.lam * total

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.phase == "calibrate" and self.masks:
            pl_module.log("pac/penalty", self.penalty(pl_module).float(), sync_dist=False)

    # ------------------------------------------------------------- tear-down
    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._remove_hooks()
        for p in self._frozen:
            p.requires_grad_(True)
        self._frozen = []
        self._norm_modules = []
        self._restored = None
        self._pending_module = None
        self._expects_pruning = False

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.masks is not None:
            for name, p in pl_module.named_parameters():
                if p.is_floating_point() and not bool(torch.isfinite(p.detach().sum())):
                    raise NonFiniteError(
                        f"GradientMask({self.phase}): parameter {name!r} holds non-finite values "
                        f"at global step {trainer.global_step}; refusing to write a checkpoint "
                        "with them (the last one written holds finite weights)."
                    )
            checkpoint[CHECKPOINT_KEY] = self.masks

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"phase": self.phase, "masks": self.masks}
        if self._by_optimizer:  # optimizer steps since the masks were attached, per optimizer
            state["optimizer_steps"] = [g.steps for g in self._by_optimizer.values()]
        if self._anchor:
            state["anchor"] = self._anchor
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict)
        module = self._pending_module
        if module is not None and state_dict.get("masks") is not None:
            # resuming with masks=None: they come from this state (before the model is wrapped)
            self.masks = validate_masks(state_dict["masks"], module, ignore=self.new_modules)
            self._freeze_shared(module)


_FLAT_CHECK_MAX = 1 << 20  # gradients' total size up to which the check sums a flat copy


class _MaskedGroup:
    """The masked parameters of one optimizer, laid out for few, cheap in-place kernels.

    Masks stay ``bool`` (1 byte per entry); the gradient masking reads them through a zero-copy
    ``uint8`` view, which CPU kernels multiply about 2.5x faster than ``bool`` (and ``masked_fill_``
    is slower still on CPU); the NaN-safe ``masked_fill_`` runs only where a non-finite value was
    found, and in the rare restores. Calibrate's essential values are restored with
    ``index_put_`` at ``int32`` flat indices (2.5x faster than ``masked_scatter_``; 4 bytes per
    *essential* entry, 0.8 bytes per parameter at amount 0.8).
    """

    def __init__(
        self,
        names: list[str],
        params: Mapping[str, Tensor],
        masks: Masks,
        essential: Mapping[str, Tensor] | None,
        optimizer: torch.optim.Optimizer,
    ) -> None:
        self.names = names
        self.steps = 0  # optimizer steps since attached
        self.grads_masked = False  # keep_grads ran since the last optimizer step
        ids = {id(params[n]) for n in names}
        # the optimizer's param groups that hold masked weights (their weight decay is read at
        # every step: a schedule may change it)
        self.param_groups = [
            g for g in optimizer.param_groups if any(id(p) in ids for p in g["params"])
        ]
        self.params = [params[n] for n in names]
        # every parameter this optimizer updates: all their gradients are checked for finiteness
        # (gradient clipping would spread a NaN of any of them to the frozen entries)
        self.checked = [p for g in optimizer.param_groups for p in g["params"]]
        self.numel = sum(p.numel() for p in self.checked)
        self.param_names = {id(p): n for n, p in params.items()}
        self.on_mask = essential is not None  # calibrate: the frozen entries are the mask's
        self.masks = [masks[n] for n in names]
        self.masks_u8 = [m.view(torch.uint8) for m in self.masks]
        self.essential = [essential[n] for n in names] if essential is not None else []
        self.flat_index = (
            [
                m.reshape(-1).nonzero().squeeze(1).to(torch.int32) if p.is_contiguous() else None
                for p, m in zip(self.params, self.masks, strict=True)
            ]
            if essential is not None
            else []
        )

    def keep_grads(self, on_mask: bool, penalty: float = 0.0) -> None:
        """Zero the gradients off the mask (``on_mask``) or on it, after adding ``penalty * w``."""
        params, masks = self.params, self.masks_u8
        grads = [p.grad for p in params]
        if any(g is None for g in grads):  # (rare: parameters unused in this step)
            keep = [i for i, g in enumerate(grads) if g is not None]
            if not keep:
                return
            grads = [grads[i] for i in keep]
            params, masks = [params[i] for i in keep], [masks[i] for i in keep]
        if on_mask:
            torch._foreach_mul_(grads, masks)
            return
        if penalty:
            torch._foreach_add_(grads, [p.detach() for p in params], alpha=penalty)
        # g - g * m: exactly 0 on the mask, g elsewhere (for finite g: see ``finite``)
        torch._foreach_addcmul_(grads, grads, masks, value=-1)

    def _rezero_frozen_grads(self) -> None:
        """Frozen entries' gradients to exactly 0, NaN-safe (``x * 0`` is NaN for inf/NaN x)."""
        for p, mask in zip(self.params, self.masks, strict=True):
            if p.grad is not None:
                p.grad.masked_fill_(mask if self.on_mask else ~mask, 0.0)

    def finite(self, probe: Tensor | None = None) -> bool:
        """Whether every gradient the optimizer will see, and ``probe`` (losses), is finite.

        One fused norm over all gradients and one device sync. A NaN or infinity anywhere makes
        the total non-finite; then (only then) every gradient is checked exactly: if only frozen
        entries were non-finite (turned into NaN by the multiplicative masking), they are zeroed
        NaN-safely and the step goes ahead, and a total that merely overflowed is not a stop.
        """
        grads = [p.grad for p in self.checked if p.grad is not None]
        if not grads and probe is None:
            return True
        # one reduction over all gradients (a NaN/inf anywhere makes it non-finite; a finite sum
        # that overflows is re-checked exactly below). Small models: one sum over a flat copy
        # (fewer kernels); large ones: a fused norm per tensor (no copy).
        if not grads:
            total: Tensor | float = 0.0
        elif self.numel <= _FLAT_CHECK_MAX:
            total = torch.cat([g.reshape(-1) for g in grads]).sum()
        else:
            total = torch.stack(torch._foreach_norm(grads)).sum()
        if probe is not None:
            total = total + probe
        if math.isfinite(float(total)):
            return True
        self._rezero_frozen_grads()
        if self.first_non_finite() is not None:
            return False
        return probe is None or bool(torch.isfinite(probe))

    def first_non_finite(self) -> str | None:
        """The name of the first parameter whose gradient holds a NaN or an infinity."""
        for p in self.checked:
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                return f"gradient of {self.param_names.get(id(p), 'a parameter')!r}"
        return None

    def has_weight_decay(self) -> bool:
        """Whether a param group holding masked weights decays them (``weight_decay != 0``)."""
        return any(group.get("weight_decay", 0) for group in self.param_groups)

    def zero_pruned(self) -> None:
        """Allocate: pruned entries back to exactly +0.0, NaN-safe (``masked_fill_``)."""
        for p, mask in zip(self.params, self.masks, strict=True):
            p.masked_fill_(~mask, 0.0)

    def restore_essential(self) -> None:
        """Calibrate: essential entries back to their stored values, bit for bit."""
        rows = zip(self.params, self.masks, self.flat_index, self.essential, strict=True)
        for p, mask, index, values in rows:
            if index is None:  # non-contiguous layout (e.g. channels_last): no flat view
                p.masked_scatter_(mask, values)
            else:
                p.view(-1).index_put_((index,), values)

    def tidy_state(self, optimizer: torch.optim.Optimizer, frozen_on_mask: bool) -> None:
        """Sets the frozen entries' optimizer state to values that make their update exactly 0.

        Only call it for the element-wise ``torch.optim`` optimizers (exact type); state not
        created yet (before the first step) is left alone.
        """
        for p, mask in zip(self.params, self.masks, strict=True):
            state = optimizer.state.get(p)
            if not state:
                continue
            frozen = mask if frozen_on_mask else ~mask
            for key, value in state.items():
                fill = _FROZEN_STATE.get(key)
                if fill is not None and isinstance(value, Tensor) and value.shape == p.shape:
                    value.masked_fill_(frozen, fill)
