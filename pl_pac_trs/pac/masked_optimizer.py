"""The masked-optimizer kernels behind ``GradientMask``: one optimizer's masked parameters.

:class:`MaskedGroup` enforces PAC-Net masks on the parameters one ``torch.optim`` optimizer
updates, with few in-place kernels per step:

* before the step, :meth:`MaskedGroup.mask_gradients` zeroes the frozen entries' gradients
  (calibrate: after adding the penalty gradient) and :meth:`MaskedGroup.finite` checks every
  gradient the optimizer will see;
* after the step (an optimizer step post-hook), :meth:`MaskedGroup.after_step` writes the frozen
  entries back (allocate: pruned entries to ``+0.0``; calibrate: the stored essential values) and
  every :data:`STATE_TIDY_EVERY` steps tidies their optimizer state.

Tidying: for the element-wise ``torch.optim`` optimizers (:data:`ELEMENTWISE_OPTIMIZERS`) the
frozen entries' first moments / momentum are set to ``0`` and second moments to ``1``
(:data:`FROZEN_STATE`). Each entry's update depends only on its own state, so the trainable
entries follow bit for bit the same trajectory either way (tested). It avoids two slow CPU paths:
first moments decaying into the denormal range after a mid-fit pruning, and ``sqrt`` of the
exactly-zero second moments that zeroed gradients leave (``benchmarks/pac_overhead.py`` probes
it; figures in ``docs/pac.md``).

Tidy state also makes the restore redundant on most steps: a frozen entry whose gradient was
zeroed and whose state is tidy gets an update of exactly zero from these optimizers (a pruned
``+0.0`` stays ``+0.0``: IEEE ``+0.0 + -0.0`` is ``+0.0``), unless weight decay moves it
(``w * (1 - lr * wd)`` or the coupled ``g + wd * w``, which only matters for the non-zero
essential entries of calibrate). So the post-step restore runs only where it can change
something: on the first step after the masks are attached (the state may hold dense-training
moments), on tidy steps, for any other optimizer, when the gradients were not masked before the
step, and in calibrate whenever a param group holding masked weights has ``weight_decay != 0``.

Non-finite values: every gradient the optimizer is about to see, and the step's losses, are
checked before each optimizer step. Checked on the host every step (:meth:`MaskedGroup.finite`,
the default on the CPU), a NaN or an infinity raises :func:`step_error`'s :class:`NonFiniteError`
before the step. Checked on the device (:meth:`MaskedGroup.nonfinite` and :class:`DeferredCheck`,
the default on an accelerator: no host-device synchronisation per step), a bad step's gradients
are all zeroed on the device, so the frozen entries keep their exact values and the weights stay
finite, and the host reads the flag every ``k`` steps, at epoch ends and before every checkpoint,
then stops the fit. :func:`check_finite_weights` refuses a checkpoint while a weight is
non-finite, so every checkpoint holds finite weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pl_pac_trs.pac.state import Masks

__all__ = [
    "ELEMENTWISE_OPTIMIZERS",
    "FROZEN_STATE",
    "STATE_TIDY_EVERY",
    "DeferredCheck",
    "LossProbe",
    "MaskedGroup",
    "NonFiniteError",
    "build_groups",
    "check_finite_weights",
    "step_error",
]

STATE_TIDY_EVERY = 100
"""Default optimizer steps between two tidyings of the frozen entries' optimizer state (``0`` =
off; ``GradientMask.state_tidy_every`` sets it per callback).

Second moments set to ``1`` decay as ``beta2 ** k`` between tidyings: 100 steps keep them far
from the denormal range for any ``beta2 >= 0.5``."""

#: Optimizers whose update of an entry depends only on that entry's gradient and state (exact
#: types: a subclass may change the update).
ELEMENTWISE_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.RMSprop,
    torch.optim.Adagrad,
)
#: The value each per-parameter state tensor of those optimizers takes at frozen entries (0:
#: moments that multiply the update; 1: the denominators under a square root).
FROZEN_STATE: dict[str, float] = {
    "momentum_buffer": 0.0,
    "exp_avg": 0.0,
    "grad_avg": 0.0,
    "exp_avg_sq": 1.0,
    "max_exp_avg_sq": 1.0,
    "square_avg": 1.0,
    "sum": 1.0,
}

_FLAT_CHECK_MAX = 1 << 20  # gradients' total size up to which the check sums a flat copy


class MaskedGroup:
    """The masked parameters of one optimizer, laid out for few, cheap in-place kernels.

    Masks stay ``bool`` (1 byte per entry); the gradient masking reads them through a zero-copy
    ``uint8`` view (CPU kernels multiply it faster than ``bool``, and ``masked_fill_`` is slower
    still); the NaN-safe ``masked_fill_`` runs only where a non-finite value was found, and in the
    rare restores. Calibrate's essential values are restored with ``index_put_`` at ``int32``
    flat indices (faster than ``masked_scatter_``; 4 bytes per *essential* entry). Measurements:
    ``docs/pac.md``.

    Args:
        names: The masked parameters this optimizer updates.
        params: Every parameter of the model by name (all the optimizer's gradients are checked).
        masks: Bool masks by name (``True`` = essential).
        essential: Calibrate: the essential values ``w[mask]`` by name, written back after each
            step where needed (the frozen entries are the mask's). ``None``: allocate (the
            frozen entries are the pruned ones, kept at ``+0.0``).
        optimizer: The optimizer.

    Attributes:
        steps: Optimizer steps since the group was made (restored on resume: the tidying
            cadence continues).
        restored: Whether the last :meth:`after_step` wrote the frozen entries back.

    Example::

        >>> w = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
        >>> opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
        >>> group = MaskedGroup(["w"], {"w": w}, {"w": torch.tensor([True, False])}, None, opt)
        >>> w.grad = torch.tensor([1.0, 1.0]); group.mask_gradients(); w.grad
        tensor([1., 0.])
        >>> opt.step()
        >>> group.after_step(opt, tidy_every=100)  # step 0: the frozen entry is written back
        True
        >>> w.detach()
        tensor([0.9000, 0.0000])
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
        self.grads_masked = False  # mask_gradients ran since the last optimizer step
        self.restored = False
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
        self.frozen_on_mask = essential is not None  # calibrate: the frozen entries are the mask's
        self.named_params = {n: params[n] for n in names}
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

    def mask_gradients(self, penalty: float = 0.0) -> None:
        """Zeroes the frozen entries' gradients; calibrate first adds ``penalty * w`` to them all.

        Call it after backward, before gradient clipping and the optimizer step (Lightning's
        ``on_before_optimizer_step``)."""
        self.grads_masked = True
        params, masks = self.params, self.masks_u8
        grads = [p.grad for p in params]
        if any(g is None for g in grads):  # (rare: parameters unused in this step)
            keep = [i for i, g in enumerate(grads) if g is not None]
            if not keep:
                return
            grads = [grads[i] for i in keep]
            params, masks = [params[i] for i in keep], [masks[i] for i in keep]
        if not self.frozen_on_mask:  # allocate: keep the gradients on the mask
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
                p.grad.masked_fill_(mask if self.frozen_on_mask else ~mask, 0.0)

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
        # (a finite sum that overflows is re-checked exactly below)
        total: Tensor | float = self._total(grads) if grads else 0.0
        if probe is not None:
            total = total + probe
        if math.isfinite(float(total)):
            return True
        self._rezero_frozen_grads()
        if self.first_non_finite() is not None:
            return False
        return probe is None or bool(torch.isfinite(probe))

    def nonfinite(self, probe: Tensor | None = None) -> Tensor:
        """Like :meth:`finite`, without a host read: returns a 0-dim bool tensor on the device,
        ``True`` if a gradient (frozen entries included) or ``probe`` is not finite, and then
        sets every gradient the optimizer will see to zero (NaN-safe ``masked_fill_`` with the
        flag as mask), so the step moves no frozen entry and keeps the weights finite."""
        grads = [p.grad for p in self.checked if p.grad is not None]
        if not grads:
            total = probe if probe is not None else torch.zeros(())
        else:
            # a sum that cannot overflow: 0 * g is 0 for finite g, NaN for inf/NaN (small
            # models: over a flat copy; large ones: the largest |g| per tensor, fused)
            if self.numel <= _FLAT_CHECK_MAX:
                total = torch.cat([g.reshape(-1) for g in grads]).mul_(0.0).sum()
            else:
                total = torch.stack(torch._foreach_norm(grads, float("inf"))).max().mul(0.0)
            if probe is not None:
                total = total + probe
        bad = ~torch.isfinite(total)
        for g in grads:
            g.masked_fill_(bad, 0.0)
        return bad

    def _total(self, grads: list[Tensor]) -> Tensor:
        # one reduction over all gradients (a NaN/inf anywhere makes it non-finite). Small
        # models: one sum over a flat copy (fewer kernels); large ones: a fused norm per tensor
        if self.numel <= _FLAT_CHECK_MAX:
            return torch.cat([g.reshape(-1) for g in grads]).sum()
        return torch.stack(torch._foreach_norm(grads)).sum()

    def first_non_finite(self) -> str | None:
        """The name of the first parameter whose gradient holds a NaN or an infinity."""
        for p in self.checked:
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                return f"gradient of {self.param_names.get(id(p), 'a parameter')!r}"
        return None

    def has_weight_decay(self) -> bool:
        """Whether a param group holding masked weights decays them (``weight_decay != 0``)."""
        return any(group.get("weight_decay", 0) for group in self.param_groups)

    def memory(self) -> dict[str, int]:
        """Bytes this group keeps: ``masks`` (1 per masked entry), calibrate's ``essential``
        values and their ``index`` (per essential entry: the values' size, 4 bytes)."""

        def nbytes(tensors: list) -> int:
            return sum(t.numel() * t.element_size() for t in tensors if t is not None)

        return {
            "masks": nbytes(self.masks),
            "essential": nbytes(self.essential),
            "index": nbytes(self.flat_index),
        }

    def after_step(self, optimizer: torch.optim.Optimizer, tidy_every: int) -> bool:
        """After an optimizer step: writes the frozen entries back where the step can have moved
        them, and tidies their optimizer state every ``tidy_every`` steps (``0``: never).

        Returns:
            Whether the frozen entries were written back (see the module documentation).
        """
        tidy = tidy_every > 0 and type(optimizer) in ELEMENTWISE_OPTIMIZERS
        # a step on gradients that were not masked leaves untidy state: tidy it now
        tidy_now = tidy and (self.steps % tidy_every == 0 or not self.grads_masked)
        # Tidied after step 0 (and every ``tidy_every`` steps), the state stays tidy while the
        # gradients are masked: then the frozen entries' update was exactly zero.
        update_was_zero = (
            tidy and not tidy_now and (not self.frozen_on_mask or not self.has_weight_decay())
        )
        self.steps += 1
        self.grads_masked = False
        self.restored = not update_was_zero
        if update_was_zero:
            return False
        with torch.no_grad():
            if self.frozen_on_mask:
                self.restore_essential()
            else:
                self.zero_pruned()
            if tidy_now:
                self.tidy_state(optimizer)
        return True

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

    def tidy_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Sets the frozen entries' optimizer state to values that make their update exactly 0.

        Only call it for the element-wise ``torch.optim`` optimizers (exact type); state not
        created yet (before the first step) is left alone.
        """
        for p, mask in zip(self.params, self.masks, strict=True):
            state = optimizer.state.get(p)
            if not state:
                continue
            frozen = mask if self.frozen_on_mask else ~mask
            for key, value in state.items():
                fill = FROZEN_STATE.get(key)
                if fill is not None and isinstance(value, Tensor) and value.shape == p.shape:
                    value.masked_fill_(frozen, fill)


def build_groups(
    optimizers: Sequence[torch.optim.Optimizer],
    params: Mapping[str, Tensor],
    masks: Masks,
    essential: Mapping[str, Tensor] | None,
) -> dict[int, MaskedGroup]:
    """One :class:`MaskedGroup` per optimizer that updates masked parameters, by ``id``.

    Args:
        optimizers: The optimizers of the fit.
        params: Every parameter of the model by name.
        masks: Bool masks by name.
        essential: As in :class:`MaskedGroup` (``None``: allocate).
    """
    owned = {id(params[k]): k for k in masks}
    groups: dict[int, MaskedGroup] = {}
    for opt in optimizers:
        names = [owned[id(p)] for g in opt.param_groups for p in g["params"] if id(p) in owned]
        if names:
            groups[id(opt)] = MaskedGroup(names, params, masks, essential, opt)
    return groups


class NonFiniteError(FloatingPointError):
    """A PAC phase met a non-finite loss or gradient; the fit stopped before that step."""


class LossProbe:
    """The step's losses, summed without a device sync: non-finite once one loss is (``None``
    before the first). One loss costs no kernel (a detached view); only gradient accumulation
    adds them.

    Args:
        enabled: Whether losses are probed (off under DDP: each rank sees its own loss, and one
            rank stopping alone would hang the others, so only the all-reduced gradients decide).
    """

    __slots__ = ("enabled", "value")

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.value: Tensor | None = None

    def add(self, loss: Tensor) -> None:
        """Adds ``loss`` (call it before every backward of the step)."""
        loss = loss.detach()
        if loss.dim():
            loss = loss.sum()
        self.value = loss if self.value is None else self.value + loss

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
        probe: The step's losses summed (non-finite if a loss was not), or ``None``.

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
