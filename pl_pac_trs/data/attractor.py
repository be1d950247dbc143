"""Strange attractor of the TRS-ODEN reference experiment VI.

``x' = 1 + y z``, ``y' = -x z``, ``z' = y^2 + 2 y z``; state ``(x, y, z)``, reversing operator
``R = -I`` (no position/momentum split, no energy).

Generation follows the reference code: trajectory ``i`` of a split with seed ``s`` draws, from
``numpy.random.RandomState(s + i)``, ``z0 ~ U(1, 3)`` (start ``(0, 0, z0)``), then standard normal
noise for x, y and z at every observed point (times ``noise_std``; the test split is clean).
Trajectories are solved in fixed blocks, so trajectory ``i`` does not depend on the count.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch
from typing_extensions import override

from pl_pac_trs.data.generated import GeneratedTrajectoryDataModule
from pl_pac_trs.data.integrate import simulate_noisy

__all__ = ["StrangeAttractorDataModule", "attractor_field", "generate_attractor"]

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def attractor_field(t: Any, x: ArrayT) -> ArrayT:
    """Vector field of the attractor for a batch of states ``(M, 3)`` (numpy or torch)."""
    a, b, c = x[:, 0], x[:, 1], x[:, 2]
    stack = torch.stack if isinstance(x, torch.Tensor) else np.stack
    return stack([1.0 + b * c, -a * c, b**2 + 2.0 * b * c], 1)


def generate_attractor(
    num: int, steps: int, span: float, noise_std: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate ``num`` attractor trajectories on ``linspace(0, span, steps + 1)``.

    Returns:
        ``(t, clean, observed)`` with states of shape ``(num, steps + 1, 3)`` (float64).
    """
    return simulate_noisy(attractor_field, _initial_state, 3, num, steps, span, noise_std, seed)


def _initial_state(rng: np.random.RandomState) -> np.ndarray:
    """The reference's start ``(0, 0, z0)`` with ``z0 ~ U(1, 3)``."""
    return np.array([0.0, 0.0, rng.uniform(1.0, 3.0, size=1)[0]])


class StrangeAttractorDataModule(GeneratedTrajectoryDataModule):
    """Noisy attractor trajectories cut into windows; clean test trajectories (experiment VI).

    Args:
        num_train: training trajectories (seeds ``train_seed + i``).
        train_steps: steps per training trajectory.
        train_span: training trajectories cover ``[0, train_span]``.
        noise_std: std of the Gaussian noise added to every coordinate of train and val data.
        num_val: validation trajectories (noisy; seeds ``val_seed + i``); 0: none.
        num_test: clean test trajectories (seeds ``test_seed + i``).
        test_steps: steps per test trajectory.
        test_span: test trajectories cover ``[0, test_span]``.
        time_horizon: steps per window.
        windows: ``"consecutive"`` (reference) or ``"sliding"``.
        train_seed: seed of training trajectory 0.
        val_seed: seed of validation trajectory 0.
        test_seed: seed of test trajectory 0 (reference: 2000).
        batch_size: windows per training batch (reference: 1024); ``None`` = full batch.
        test_batch_size: test trajectories per batch; ``None`` = all.
        cache_dir: directory for the ``.npz`` cache; ``None``: no cache.
        num_workers: DataLoader workers.
    """

    name = "attractor"
    state_dim = 3
    position_dim = None
    bodies = None
    energy = None

    def __init__(
        self,
        num_train: int = 1000,
        train_steps: int = 400,
        train_span: float = 20.0,
        noise_std: float = 0.05,
        num_val: int = 100,
        num_test: int = 50,
        test_steps: int = 400,
        test_span: float = 20.0,
        time_horizon: int = 10,
        windows: str = "consecutive",
        train_seed: int = 0,
        val_seed: int = 1500,
        test_seed: int = 2000,
        batch_size: int | None = 1024,
        test_batch_size: int | None = None,
        cache_dir: str | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(**self.base_arguments(locals()))
        self.save_hyperparameters()

    @staticmethod
    def true_field(t: Any, x: torch.Tensor) -> torch.Tensor:
        """The system's own vector field ``f(t, x)`` on torch states (e.g. the true Lyapunov
        curve of the test plots)."""
        return attractor_field(t, x)

    @override
    def simulate(
        self, num: int, steps: int, span: float, noise_std: float, seed: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return generate_attractor(num, steps, span, noise_std, seed)
