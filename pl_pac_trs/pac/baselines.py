"""Transfer-learning baselines PAC-Net is compared with: L2-SP and linear probing.

Plain fine-tuning is a fit started by :class:`~pl_pac_trs.pac.LoadSourceWeights` with no other
callback; training from scratch is a fit without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from pl_pac_trs.pac.targets import DEFAULT_MODULE_TYPES, matches_any, select_parameters

__all__ = ["L2SP", "LinearProbe"]


class L2SP(Callback):
    """L2-SP regularisation: ``lam * ||w - w_source||^2`` towards the starting-point weights.

    ``w_source`` is the weights at the start of the fit (load them with ``LoadSourceWeights``);
    they are kept in this callback's state so that a resumed fit uses the same anchor. The
    penalty is added to the gradients before clipping (like a loss term of every micro-batch).

    Args:
        lam: Penalty strength (paper's baseline: 0.01).
        module_types: Module classes whose ``weight`` is regularised (default Linear and conv).
        exclude: Name patterns left unregularised (e.g. a new head).
    """

    def __init__(
        self,
        lam: float = 0.01,
        module_types: Sequence[type[nn.Module] | str] = DEFAULT_MODULE_TYPES,
        exclude: Sequence[str] = (),
    ) -> None:
        if not isinstance(lam, (int, float)) or lam < 0:
            raise ValueError(f"L2SP: lam must be a number >= 0, got {lam!r}")
        self.lam = float(lam)
        self.module_types = tuple(module_types)
        self.exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
        self.anchor: dict[str, Tensor] = {}
        self._params: dict[str, nn.Parameter] = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._params = select_parameters(pl_module, self.module_types, exclude=self.exclude)
            if not self._params:
                raise ValueError("L2SP: no parameter matched module_types/exclude")

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.anchor:  # not restored from a resumed checkpoint
            self.anchor = {k: p.detach().clone() for k, p in self._params.items()}
        self.anchor = {k: v.to(self._params[k].device) for k, v in self.anchor.items()}

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        with torch.no_grad():
            for name, p in self._params.items():
                if p.grad is not None:
                    p.grad.add_(p - self.anchor[name], alpha=2 * self.lam)

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": self.anchor}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.anchor = dict(state_dict.get("anchor") or {})


class LinearProbe(Callback):
    """Trains only the head: every parameter outside ``head`` is frozen and batch norms run in
    eval mode (running statistics stay the source ones).

    Args:
        head: Name patterns of the trainable modules (default ``("head",)``).
    """

    def __init__(self, head: Sequence[str] = ("head",)) -> None:
        self.head = (head,) if isinstance(head, str) else tuple(head)
        if not self.head:
            raise ValueError("LinearProbe: head must name at least one module")
        self._frozen: list[nn.Parameter] = []
        self._norms: list[nn.Module] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        trainable = [n for n, _ in pl_module.named_parameters() if matches_any(n, self.head)]
        if not trainable:
            raise ValueError(f"LinearProbe: head {self.head} matches no parameter")
        for name, p in pl_module.named_parameters():
            if not matches_any(name, self.head) and p.requires_grad:
                p.requires_grad_(False)
                self._frozen.append(p)
        self._norms = [
            m
            for n, m in pl_module.named_modules()
            if isinstance(m, _BatchNorm) and not matches_any(n, self.head)
        ]

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        for m in self._norms:
            m.eval()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            for p in self._frozen:
                p.requires_grad_(True)
            self._frozen = []
