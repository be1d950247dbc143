"""What a PAC-Net phase does on non-finite values: stop before the step, refuse the checkpoint.

``GradientMask`` checks every gradient the optimizer is about to see, and the step's losses,
before each optimizer step (:meth:`~pl_pac_trs.pac.masked_optimizer.MaskedGroup.finite`); on a
NaN or an infinity it raises :func:`step_error`'s :class:`NonFiniteError`, so the frozen entries
keep their exact values. It also refuses to write a checkpoint while a weight is non-finite
(:func:`check_finite_weights`), so every checkpoint holds the last finite weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from pl_pac_trs.pac.masked_optimizer import MaskedGroup

__all__ = ["LossProbe", "NonFiniteError", "check_finite_weights", "step_error"]


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
