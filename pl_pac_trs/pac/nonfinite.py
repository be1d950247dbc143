"""What a PAC-Net phase does on non-finite values: stop the fit, refuse the checkpoint.

``GradientMask`` checks every gradient the optimizer is about to see, and the step's losses,
before each optimizer step. Checked on the host every step
(:meth:`~pl_pac_trs.pac.masked_optimizer.MaskedGroup.finite`, the default on the CPU), a NaN or
an infinity raises :func:`step_error`'s :class:`NonFiniteError` before the step. Checked on the
device (:meth:`~pl_pac_trs.pac.masked_optimizer.MaskedGroup.nonfinite` and
:class:`DeferredCheck`, the default on an accelerator: no host-device synchronisation per step),
a bad step's gradients are all zeroed on the device, so the frozen entries keep their exact
values and the weights stay finite, and the host reads the flag every ``k`` steps, at epoch ends
and before every checkpoint, then stops the fit. It also refuses to write a checkpoint while a
weight is non-finite (:func:`check_finite_weights`), so every checkpoint holds finite weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from pl_pac_trs.pac.masked_optimizer import MaskedGroup

__all__ = ["DeferredCheck", "LossProbe", "NonFiniteError", "check_finite_weights", "step_error"]


class NonFiniteError(FloatingPointError):
    """A PAC phase met a non-finite loss or gradient; the fit stopped before that step."""


class LossProbe:
    """The step's losses times zero, summed without a device sync: ``0`` while every loss is
    finite, ``NaN`` once one is not (``None`` before the first).

    Args:
        enabled: Whether losses are probed (off under DDP: each rank sees its own loss, and one
            rank stopping alone would hang the others, so only the all-reduced gradients decide).
    """

    __slots__ = ("enabled", "value")

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.value: Tensor | None = None

    def add(self, loss: Tensor) -> None:
        """Adds ``loss * 0`` (call it before every backward of the step)."""
        zero = loss.detach().sum() * 0.0
        self.value = zero if self.value is None else self.value + zero

    def take(self) -> Tensor | None:
        """The probe of the step so far, then reset (call it before the optimizer step)."""
        value, self.value = self.value, None
        return value


class DeferredCheck:
    """The non-finite flags of the steps since the last host read, kept on the device.

    Args:
        every: Optimizer steps between two host reads.
        trainer: The trainer (``global_step``), or ``None``.
    """

    def __init__(self, every: int, trainer: Any = None) -> None:
        self.every = every
        self.flag: Tensor | None = None
        self.count = 0
        self.since = getattr(trainer, "global_step", 0)

    def add(self, bad: Tensor, group: MaskedGroup | None = None) -> None:
        """Records one step's flag (a 0-dim bool tensor; no host read)."""
        self.flag = bad if self.flag is None else self.flag | bad
        self.count += 1

    def maybe_raise(self, owner: str, trainer: Any, group: MaskedGroup, now: bool = False) -> None:
        """Reads the flag on the host every :attr:`every` steps (or ``now``); raises
        :class:`NonFiniteError` if a step since the last read was not finite."""
        if self.flag is None or (not now and self.count % self.every):
            return
        bad = bool(self.flag)  # the one host-device synchronisation
        step = getattr(trainer, "global_step", group.steps)
        if bad:
            raise NonFiniteError(
                f"{owner}: non-finite loss or gradients at a step between global steps "
                f"{self.since} and {step}; those steps' gradients were zeroed, so the frozen "
                "weights are intact and no checkpoint holds non-finite weights."
                "\nLower the learning rate, or check lam and the data (GradientMask(check_every=1) "
                "stops before the first bad step)."
            )
        self.flag = None
        self.since = step


def step_error(
    owner: str, trainer: Any, group: MaskedGroup, probe: Tensor | None
) -> NonFiniteError:
    """The error for a step whose loss (``probe``) or trainable gradients are not all finite.

    Args:
        owner: Who stops the fit, for the message (``"GradientMask(allocate)"``).
        trainer: The trainer (``global_step``, ``current_epoch``), or ``None``.
        group: The masked parameters of the optimizer about to step.
        probe: The step's losses times zero (``NaN`` if a loss was not finite), or ``None``.

    Returns:
        The error, naming the first non-finite gradient (or the loss) and the step.
    """
    culprit = group.first_non_finite()
    if culprit is None and probe is not None and not bool(torch.isfinite(probe)):
        culprit = "the training loss"
    where = f"at optimizer step {group.steps} of this phase"
    if trainer is not None and hasattr(trainer, "global_step"):
        epoch = getattr(trainer, "current_epoch", "?")
        where = f"at global step {trainer.global_step} (epoch {epoch})"
    return NonFiniteError(
        f"{owner}: non-finite {culprit or 'gradients'} {where}; the fit stopped before this "
        "step, so the frozen weights are intact and checkpoints hold the last finite weights."
        "\nLower the learning rate, or check lam and the data."
    )


def check_finite_weights(owner: str, model: nn.Module, global_step: int) -> None:
    """Raises :class:`NonFiniteError` naming the first parameter of ``model`` that holds a NaN
    or an infinity (called before writing a checkpoint)."""
    for name, p in model.named_parameters():
        if p.is_floating_point() and not bool(torch.isfinite(p.detach().sum())):
            raise NonFiniteError(
                f"{owner}: parameter {name!r} holds non-finite values at global step "
                f"{global_step}; refusing to write a checkpoint with them (the last one written "
                "holds finite weights)."
            )
