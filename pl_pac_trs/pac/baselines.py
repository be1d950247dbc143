"""Transfer-learning baselines PAC-Net is compared with: L2-SP and linear probing.

:class:`AnchorPenalty` is L2-SP's starting-point penalty ``lam * sum((w - w_anchor) ** 2)``; the
anchor is the weights when a phase starts (or those restored on resume), and the penalty's
gradient ``2 * lam * (w - w_anchor)`` is added before the optimizer step.
``GradientMask(anchor_lam=...)`` reuses it on the essential entries of allocate (their anchor
stored compactly, ``w[mask]``).

Plain fine-tuning is a fit started by :class:`~pl_pac_trs.pac.LoadSourceWeights` with no other
callback; training from scratch is a fit without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from pl_pac_trs.pac.callback import FreezingCallback, PacCallback
from pl_pac_trs.pac.checks import check_strength
from pl_pac_trs.pac.mask_rules import DEFAULT_MODULE_TYPES, require_matches, select_parameters

__all__ = ["L2SP", "AnchorPenalty", "LinearProbe"]


class AnchorPenalty:
    """``lam * sum((w - w_anchor) ** 2)`` over named parameters (optionally masked entries).

    Args:
        lam: Penalty strength (``>= 0``; checked by the callbacks).

    Attributes:
        anchors: The anchor values by parameter name (whole tensors, or ``w[mask]``).

    Example::

        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        >>> penalty = AnchorPenalty(lam=1.0)
        >>> penalty.start({"w": w})
        >>> with torch.no_grad():
        ...     _ = w.add_(0.5)
        >>> w.grad = torch.zeros(2); penalty.add_gradient({"w": w}); w.grad
        tensor([1., 1.])
        >>> penalty.value({"w": w})
        tensor(0.5000, dtype=torch.float64)
    """

    def __init__(self, lam: float) -> None:
        self.lam = float(lam)
        self.anchors: dict[str, Tensor] = {}
        self._index: dict[str, Tensor] = {}  # flat indices of the masked-in entries

    def start(
        self,
        params: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
        restored: Mapping[str, Tensor] | None = None,
    ) -> None:
        """Anchors ``params`` at their current values (``w[mask]`` with ``masks``), or at the
        ``restored`` values of a resumed fit where it has them (moved to the parameter's device).
        """
        restored = restored or {}
        anchors: dict[str, Tensor] = {}
        with torch.no_grad():
            for name, p in params.items():
                if name in restored:
                    anchors[name] = restored[name].to(p.device)
                elif masks is None:
                    anchors[name] = p.detach().clone()
                else:
                    anchors[name] = p.detach()[masks[name]].clone()
        self.anchors = anchors
        # the entries ``w[mask]`` in order, as indices: the gradient is then added without the
        # host-device synchronisation of boolean indexing
        self._index = (
            {n: masks[n].to(params[n].device).reshape(-1).nonzero().squeeze(1) for n in params}
            if masks is not None
            else {}
        )

    def add_gradient(
        self,
        params: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
        names: Iterable[str] | None = None,
    ) -> None:
        """Adds ``2 * lam * (w - w_anchor)`` to ``p.grad`` (parameters without one are skipped).

        Args:
            params: Parameters by name.
            masks: The masks the anchors were taken with, if any.
            names: Only these parameters (default: every anchored one).
        """
        # No ``torch.no_grad()`` entered on this per-step path: the in-place ops touch
        # gradients and detached views of the weights only, so autograd records nothing.
        for name in self.anchors if names is None else names:
            p = params[name]
            if p.grad is None:
                continue
            w = p.detach()
            if masks is None:
                p.grad.add_(w - self.anchors[name], alpha=2 * self.lam)
            elif name in self._index and p.grad.is_contiguous() and w.is_contiguous():
                index = self._index[name]
                delta = w.reshape(-1).index_select(0, index) - self.anchors[name]
                p.grad.view(-1).index_add_(0, index, delta, alpha=2 * self.lam)
            else:
                mask = masks[name]
                p.grad[mask] += (2 * self.lam) * (w[mask] - self.anchors[name])

    def value(
        self, params: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """The penalty at the current weights (float64, on the CPU)."""
        total = torch.zeros((), dtype=torch.float64)
        for name, anchor in self.anchors.items():
            w = params[name].detach()
            if masks is not None:
                w = w[masks[name]]
            total += ((w.double() - anchor.double()) ** 2).sum().cpu()
        return self.lam * total


class L2SP(PacCallback):
    """L2-SP regularisation: ``lam * ||w - w_source||^2`` towards the starting-point weights.

    ``w_source`` is the weights at the start of the fit (load them with ``LoadSourceWeights``);
    they are kept in this callback's state so that a resumed fit uses the same anchor. The
    penalty is added to the gradients before clipping (like a loss term of every micro-batch).

    Args:
        lam: Penalty strength (paper's baseline: 0.01).
        module_types: Module classes whose ``weight`` is regularised (default Linear and conv).
        exclude: Name patterns left unregularised (e.g. a new head).

    Raises:
        ValueError: If ``lam`` is not a finite number ``>= 0``; at ``setup``, if no parameter
            matches.

    Example::

        >>> L2SP(lam=0.01, exclude=["head"]).lam
        0.01
    """

    def __init__(
        self,
        lam: float = 0.01,
        module_types: Sequence[type[nn.Module] | str] = DEFAULT_MODULE_TYPES,
        exclude: Sequence[str] = (),
    ) -> None:
        self.lam = check_strength("lam", lam, owner="L2SP")
        self.module_types = tuple(module_types)
        self.exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
        self._penalty = AnchorPenalty(self.lam)
        self._params: dict[str, nn.Parameter] = {}

    @property
    def anchor(self) -> dict[str, Tensor]:
        """The starting-point weights by parameter name (empty before the fit starts)."""
        return self._penalty.anchors

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._params = select_parameters(pl_module, self.module_types, exclude=self.exclude)
            if not self._params:
                raise ValueError("L2SP: no parameter matched module_types/exclude")

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # anchored at the weights now, unless restored from a resumed checkpoint
        self._penalty.start(self._params, restored=dict(self._penalty.anchors))

    @override
    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        self._penalty.add_gradient(self._params)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"anchor": self._penalty.anchors}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._penalty.anchors = dict(state_dict.get("anchor") or {})


class LinearProbe(FreezingCallback):
    """Trains only the head: every parameter outside ``head`` is frozen and normalisation layers
    outside it run in eval mode (running statistics stay the source ones).

    Args:
        head: Name patterns of the trainable modules (default ``("head",)``).

    Raises:
        ValueError: If ``head`` is empty; at ``setup``, if a pattern matches no parameter.

    Example::

        >>> LinearProbe(head="classifier").head
        ('classifier',)
    """

    def __init__(self, head: Sequence[str] = ("head",)) -> None:
        super().__init__()
        self.head = (head,) if isinstance(head, str) else tuple(head)
        if not self.head:
            raise ValueError("LinearProbe: head must name at least one module")

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        require_matches(pl_module, self.head, "LinearProbe: head")
        self.freezer.freeze(pl_module, trainable_modules=self.head)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"head": list(self.head)}  # (checkpoints name the stage that wrote them)
