"""Duffing oscillator family (TRS-ODEN reference experiments I-IV).

``q' = p``, ``p' = -alpha q - beta q^3 - gamma p + delta cos t``; state ``x = [q, p]``.

Generation follows the reference code: trajectory ``i`` of a split with seed ``s`` draws, from
``numpy.random.RandomState(s + i)``, the initial direction ``U([-1, 1]^2)`` (normalised to unit
length), the radius ``r ~ U(0.2, 1)``, then standard normal noise for ``q`` and ``p`` at every
observed point (multiplied by ``noise_std``; the test split is clean). Trajectories are solved
in fixed blocks (:func:`~pl_pac_trs.data.integrate.simulate_noisy`), so trajectory ``i`` is
bit-identical whatever ``num`` is. The draw order equals the
reference's, so initial states and noise match its data. ``steps`` counts intervals: a split with
``steps=30`` over ``span=3`` has the 31 points ``linspace(0, 3, 31)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import Tensor
from typing_extensions import override

from pl_pac_trs.data.generated import GeneratedTrajectoryDataModule
from pl_pac_trs.data.integrate import simulate_noisy
from pl_pac_trs.data.validation import check_finite

__all__ = ["DuffingDataModule", "duffing_energy", "duffing_field", "generate_duffing"]


def duffing_field(
    alpha: float, beta: float, gamma: float, delta: float
) -> Callable[[float, np.ndarray], np.ndarray]:
    """Vector field ``f(t, X)`` of the Duffing oscillator for a batch ``X`` of shape ``(M, 2)``."""

    def field(t: float, x: np.ndarray) -> np.ndarray:
        q, p = x[:, 0], x[:, 1]
        dp = -alpha * q - beta * q**3 - gamma * p + delta * np.cos(t)
        return np.stack([p, dp], axis=1)

    return field


def duffing_energy(x, alpha: float, beta: float):
    """Reference energy ``alpha q^2 + beta q^4 / 2 + p^2`` of states ``(..., 2)`` (tensor/array)."""
    q, p = x[..., 0], x[..., 1]
    return alpha * q**2 + beta * q**4 / 2 + p**2


def generate_duffing(
    num: int,
    steps: int,
    span: float,
    noise_std: float,
    seed: int,
    alpha: float,
    beta: float,
    gamma: float,
    delta: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate ``num`` Duffing trajectories (see the module docstring for the random draws).

    Returns:
        ``(t, clean, observed)``: the grid ``(steps + 1,)`` over ``[0, span]``, clean states and
        observed (clean + noise) states, both ``(num, steps + 1, 2)`` float64.
    """
    return simulate_noisy(
        duffing_field(alpha, beta, gamma, delta),
        _initial_state,
        2,
        num,
        steps,
        span,
        noise_std,
        seed,
    )


def _initial_state(rng: np.random.RandomState) -> np.ndarray:
    """The reference's draw: a direction in ``U([-1, 1]^2)`` normalised, a radius ``U(0.2, 1)``."""
    direction = rng.uniform(low=-1.0, high=1.0, size=2)
    direction = direction / np.sqrt(np.sum(direction**2))
    radius = rng.uniform(low=0.2, high=1.0, size=1)
    return radius * direction


class DuffingDataModule(GeneratedTrajectoryDataModule):
    """Noisy Duffing trajectories cut into windows; long clean test trajectories.

    Reference experiments (SPEC section 2): I ``alpha=1``; II ``alpha=-1, beta=1``; III
    ``alpha=-0.2, beta=0.2, delta=0.15`` with ``num_train=200, train_steps=50, train_span=5,
    noise_std=0.05, test_steps=100, test_span=10``; IV ``alpha=1, gamma=0.1``.

    Args:
        alpha: linear stiffness.
        beta: cubic stiffness.
        gamma: damping.
        delta: forcing amplitude (forcing ``delta cos t``).
        num_train: training trajectories (seeds ``train_seed + i``).
        train_steps: steps (intervals) per training trajectory.
        train_span: training trajectories cover ``[0, train_span]``.
        noise_std: std of the Gaussian noise added to q and p of train and val data.
        num_val: validation trajectories (noisy, like train; seeds ``val_seed + i``); 0: none.
        num_test: clean test trajectories (seeds ``test_seed + i``).
        test_steps: steps per test trajectory.
        test_span: test trajectories cover ``[0, test_span]``.
        time_horizon: steps per window.
        windows: ``"consecutive"`` (reference) or ``"sliding"``.
        train_seed: seed of trajectory 0 of the training split.
        val_seed: seed of trajectory 0 of the validation split.
        test_seed: seed of trajectory 0 of the test split.
        batch_size: windows per training batch; ``None`` = full batch (reference).
        test_batch_size: test trajectories per batch; ``None`` = all.
        cache_dir: directory for the ``.npz`` cache of the generated data; ``None``: no cache.
        num_workers: DataLoader workers.
    """

    name = "duffing"
    state_dim = 2
    position_dim = 1
    bodies = None

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 0.0,
        gamma: float = 0.0,
        delta: float = 0.0,
        num_train: int = 50,
        train_steps: int = 30,
        train_span: float = 3.0,
        noise_std: float = 0.1,
        num_val: int = 10,
        num_test: int = 50,
        test_steps: int = 200,
        test_span: float = 20.0,
        time_horizon: int = 10,
        windows: str = "consecutive",
        train_seed: int = 0,
        val_seed: int = 500,
        test_seed: int = 999,
        batch_size: int | None = None,
        test_batch_size: int | None = None,
        cache_dir: str | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(**self.base_arguments(locals()))
        self.save_hyperparameters()
        self.alpha = check_finite("alpha", alpha)
        self.beta = check_finite("beta", beta)
        self.gamma = check_finite("gamma", gamma)
        self.delta = check_finite("delta", delta)

    def energy(self, x: Tensor) -> Tensor:
        """Reference energy ``alpha q^2 + beta q^4 / 2 + p^2`` of states ``(..., 2)``."""
        return duffing_energy(x, self.alpha, self.beta)

    def _parameters(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "delta": self.delta}

    @override
    def generation_args(self) -> dict[str, Any]:
        return {**self._parameters(), **super().generation_args()}

    @override
    def simulate(
        self, num: int, steps: int, span: float, noise_std: float, seed: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return generate_duffing(num, steps, span, noise_std, seed, **self._parameters())
