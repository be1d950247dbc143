"""The starting-point penalty ``lam * sum((w - w_anchor) ** 2)`` of L2-SP and of allocate.

:class:`AnchorPenalty` keeps the anchor (the weights when a phase starts, or those restored on
resume) and adds the penalty's gradient ``2 * lam * (w - w_anchor)`` to the parameters'
gradients before the optimizer step; ``L2SP`` and ``GradientMask(anchor_lam=...)`` use it. With
masks only the masked-in entries are penalised, and their anchor is stored compactly
(``w[mask]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

__all__ = ["AnchorPenalty"]


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
