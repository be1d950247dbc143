"""Where a PAC-Net phase's masks come from, checked before the first step.

:class:`PhaseMasks` is the part of ``GradientMask`` that finds the masks and declares them on the
model: from ``masks=`` (checked against the model and against what is new), from the model's
:class:`~pl_pac_trs.pac.state.PacState` (put there by ``MagnitudePruning`` or by a
``LoadSourceWeights`` listed before it), or from the checkpoint a fit resumes (which must be of
the same phase). Calibrate freezes what it does not train, before the model is wrapped (DDP
registers only parameters that require grad), and records the source value of every entry
outside the masks when calibration starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from torch import nn
from typing_extensions import override

from pl_pac_trs.pac.callback import MasksCallback
from pl_pac_trs.pac.freezing import FreezingCallback
from pl_pac_trs.pac.masks import Masks, load_masks, masks_equal, validate_masks
from pl_pac_trs.pac.selection import matches_any, require_matches
from pl_pac_trs.pac.state import PacState, pac_state, set_pac_state

__all__ = ["PhaseMasks"]


class PhaseMasks(MasksCallback, FreezingCallback):
    """Finds, checks and declares a phase's masks (base of ``GradientMask``).

    Subclasses set ``phase``, ``masks_arg``, ``new_modules``, ``train_shared`` and implement
    :meth:`attach` (start enforcing :attr:`masks`).
    """

    phase: str
    masks_arg: Any
    new_modules: tuple[str, ...]
    train_shared: bool
    masks: Masks | None = None
    _restored: dict[str, Any] | None = None
    _resumed: bool = False

    def attach(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Starts enforcing :attr:`masks` (implemented by the phase)."""
        raise NotImplementedError

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
