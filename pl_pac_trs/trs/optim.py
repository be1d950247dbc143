"""The reference code's optimiser: Keras' (legacy, TF 1 style) Adam, as a PyTorch optimiser,
and :func:`default_optimizer`, the default of :class:`~pl_pac_trs.trs.TRSODEN`.

:class:`KerasAdam` is an ordinary optimizer class: ``TRSODEN(..., optimizer=partial(KerasAdam,
lr=2e-4))`` in Python, ``--model.optimizer=pl_pac_trs.trs.KerasAdam --model.optimizer.lr=2e-4``
(or a ``class_path`` in a config) on the command line.

The TRS-ODEN reference code compiles its models with ``keras.optimizers.Adam(lr=2e-4)``: the
TF 1 / legacy Keras Adam (``tf.raw_ops.ApplyAdam``). It differs from :class:`torch.optim.Adam` in
where the epsilon sits: after ``t`` steps it updates

``p -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)``, ``eps = 1e-7``,

with ``m``, ``v`` the *uncorrected* moment estimates, i.e. PyTorch's Adam with the step-dependent
epsilon ``eps / sqrt(1 - beta2^t)`` (about ``3.2e-6`` at the first step, ``1.3e-7`` after 1000)
instead of the constant ``1e-8``. The two agree where gradients are much larger than that and
part where they are not: the exp V HODEN (real double oscillator) starts with small gradients at
the reference initialisation, and its fit depends on the optimiser's path. The measurements
(same initial weights in both codes, and the spread over seeds) are in ``docs/trs.md``
("Optimiser").
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["KerasAdam", "default_optimizer"]


class KerasAdam(torch.optim.Optimizer):
    """Adam as the legacy Keras / TF 1 ``ApplyAdam`` computes it (the TRS-ODEN reference code's).

    Step ``t`` (from 1): ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``p -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``. With ``weight_decay`` the
    gradient gets ``weight_decay * p`` added first (L2, as :class:`torch.optim.Adam`).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (Keras default 1e-3; the reference uses 2e-4).
        betas: ``(beta1, beta2)``.
        eps: Keras' epsilon (default ``1e-7``, Keras' default), added to ``sqrt(v)`` of the
            uncorrected second moment.
        weight_decay: L2 penalty added to the gradient.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-7,
        weight_decay: float = 0.0,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"KerasAdam: lr must be > 0, got {lr!r}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"KerasAdam: betas must be in [0, 1), got {betas!r}")
        if not eps >= 0:
            raise ValueError(f"KerasAdam: eps must be >= 0, got {eps!r}")
        if not weight_decay >= 0:
            raise ValueError(f"KerasAdam: weight_decay must be >= 0, got {weight_decay!r}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("KerasAdam does not support sparse gradients")
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
                p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-step_size)
        return loss


def default_optimizer(params: Iterable[Tensor] | Iterable[dict]) -> torch.optim.Optimizer:
    """:class:`torch.optim.Adam` with the reference code's learning rate ``2e-4``: the default
    ``optimizer`` of :class:`~pl_pac_trs.trs.TRSODEN` (an ``OptimizerCallable``: parameters in,
    optimizer out)."""
    return torch.optim.Adam(params, lr=2e-4)
