"""Transfer-learning baselines PAC-Net is compared with: L2-SP and linear probing.

Plain fine-tuning is a fit started by :class:`~pl_pac_trs.pac.LoadSourceWeights` with no other
callback; training from scratch is a fit without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from pl_pac_trs.pac.anchor import AnchorPenalty
from pl_pac_trs.pac.callback import PacCallback
from pl_pac_trs.pac.checks import check_strength
from pl_pac_trs.pac.freezing import FreezingCallback
from pl_pac_trs.pac.selection import DEFAULT_MODULE_TYPES, require_matches, select_parameters

__all__ = ["L2SP", "LinearProbe"]


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
