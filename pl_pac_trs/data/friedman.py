"""Friedman #1 transfer regression (Pardoe & Stone, ICML 2010 variant used by PAC-Net).

``y = a1*10*sin(pi*(b1*x1+c1)*(b2*x2+c2)) + a2*20*(b3*x3+c3-0.5)**2 + a3*10*(b4*x4+c4)
+ a4*5*(b5*x5+c5) + eps`` with ``x ~ U[0,1]^10`` (x6..x10 irrelevant), ``eps ~ N(0, noise**2)``.
Each task draws its own ``a_i, b_i ~ N(1, 0.1**2)`` and ``c_i ~ N(0, 0.05**2)`` from its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import TensorDataset
from typing_extensions import override

from pl_pac_trs.data.transfer import TransferDataModule

__all__ = ["FriedmanTask", "FriedmanTransferDataModule", "friedman1"]


@dataclass(frozen=True)
class FriedmanTask:
    """Coefficients of one related Friedman #1 task."""

    a: tuple[float, ...]
    b: tuple[float, ...]
    c: tuple[float, ...]

    @classmethod
    def draw(cls, seed: int) -> FriedmanTask:
        """Draws ``a_i, b_i ~ N(1, 0.1^2)`` (4 and 5 of them) and ``c_i ~ N(0, 0.05^2)`` (5)."""
        g = torch.Generator().manual_seed(seed)
        a = 1 + 0.1 * torch.randn(4, generator=g, dtype=torch.float64)
        b = 1 + 0.1 * torch.randn(5, generator=g, dtype=torch.float64)
        c = 0.05 * torch.randn(5, generator=g, dtype=torch.float64)
        return cls(tuple(a.tolist()), tuple(b.tolist()), tuple(c.tolist()))


def friedman1(x: Tensor, task: FriedmanTask) -> Tensor:
    """Noise-free response of ``task`` at inputs ``x`` of shape ``(n, >=5)``; returns ``(n,)``."""
    a, b, c = task.a, task.b, task.c
    u = [b[i] * x[:, i] + c[i] for i in range(5)]
    return (
        a[0] * 10 * torch.sin(math.pi * u[0] * u[1])
        + a[1] * 20 * (u[2] - 0.5) ** 2
        + a[2] * 10 * u[3]
        + a[3] * 5 * u[4]
    )


class FriedmanTransferDataModule(TransferDataModule):
    """Source or target split of the Friedman #1 transfer problem.

    The source task has many training samples, the target task few; validation and test sets
    are drawn from the selected task. Targets are standardised by the fixed constants
    ``y_mean``/``y_std`` (the same for both tasks, so errors are comparable); metrics are in these
    standardised units (multiply an RMSE by ``y_std`` for the original scale).

    Args:
        task: ``"source"`` or ``"target"``.
        n_source: Source training samples.
        n_target: Target training samples (the paper's regime: 10-100).
        n_val: Validation samples of the selected task.
        n_test: Test samples of the selected task.
        source_seed: Seed of the source task's coefficients.
        target_seed: Seed of the target task's coefficients.
        noise: Standard deviation of ``eps``.
        data_seed: Seed of the inputs and noise.
        batch_size: Training batch size (capped at the training-set size).
        y_mean: Standardisation offset.
        y_std: Standardisation scale.

    Raises:
        ValueError: for another ``task``, a sample count below 1, a negative ``noise``, a
            ``y_std`` that is not positive or a ``batch_size`` below 1.

    Example:
        >>> dm = FriedmanTransferDataModule("target", n_target=20, n_val=10, n_test=10)
        >>> dm.setup()
        >>> [len(dm.train_set), len(dm.val_set)], tuple(dm.train_set.tensors[0].shape)
        ([20, 10], (20, 10))
    """

    def __init__(
        self,
        task: Literal["source", "target"] = "source",
        n_source: int = 2000,
        n_target: int = 50,
        n_val: int = 500,
        n_test: int = 1000,
        source_seed: int = 0,
        target_seed: int = 1,
        noise: float = 1.0,
        data_seed: int = 0,
        batch_size: int = 64,
        y_mean: float = 14.4,
        y_std: float = 5.0,
    ) -> None:
        super().__init__(task, batch_size)
        for name, value in (("n_source", n_source), ("n_target", n_target), ("n_val", n_val)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if noise < 0 or y_std <= 0:
            raise ValueError(f"noise must be >= 0 and y_std > 0, got noise={noise}, y_std={y_std}")
        self.save_hyperparameters()
        self.coefficients = FriedmanTask.draw(source_seed if task == "source" else target_seed)

    def _sample(self, n: int, offset: int) -> TensorDataset:
        hp = self.hparams
        seed = hp.data_seed * 1000 + offset + (0 if self.task == "source" else 500)
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(n, 10, generator=g, dtype=torch.float64)
        y = friedman1(x, self.coefficients) + hp.noise * torch.randn(n, generator=g).double()
        y = (y - hp.y_mean) / hp.y_std
        return TensorDataset(x.float(), y.float().unsqueeze(1))

    @override
    def setup(self, stage: str | None = None) -> None:
        n_train = self.hparams.n_source if self.task == "source" else self.hparams.n_target
        self.sets = {
            "train": self._sample(n_train, 1),
            "val": self._sample(self.hparams.n_val, 2),
            "test": self._sample(self.hparams.n_test, 3),
        }

    @property
    def train_set(self) -> TensorDataset:
        """The training samples (``sets["train"]``)."""
        return self.sets["train"]

    @property
    def val_set(self) -> TensorDataset:
        """The validation samples (``sets["val"]``)."""
        return self.sets["val"]

    @property
    def test_set(self) -> TensorDataset:
        """The test samples (``sets["test"]``)."""
        return self.sets["test"]
