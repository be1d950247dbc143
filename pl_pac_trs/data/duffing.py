"""Duffing oscillator family (TRS-ODEN reference experiments I-IV).

``q' = p``, ``p' = -alpha q - beta q^3 - gamma p + delta cos t``; state ``x = [q, p]``.

Generation follows the reference code: trajectory ``i`` of a split with seed ``s`` draws, from
``numpy.random.RandomState(s + i)``, the initial direction ``U([-1, 1]^2)`` (normalised to unit
length), the radius ``r ~ U(0.2, 1)``, then standard normal noise for ``q`` and ``p`` at every
observed point (multiplied by ``noise_std``; the test split is clean). Trajectories are solved
in fixed blocks (:func:`~pl_pac_trs.data.integrate.solve_in_blocks`), so trajectory ``i`` is
bit-identical whatever ``num`` is. The draw order equals the
reference's, so initial states and noise match its data. ``steps`` counts intervals: a split with
``steps=30`` over ``span=3`` has the 31 points ``linspace(0, 3, 31)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import Tensor

from pl_pac_trs.data.integrate import padded_count, solve_in_blocks
from pl_pac_trs.data.trajectories import (
    GeneratedTrajectoryDataModule,
)

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
    n = steps + 1
    t = np.linspace(0.0, span, n)
    padded = padded_count(num)
    x0 = np.empty((padded, 2))
    noise = np.empty((num, n, 2))
    for i in range(padded):
        rng = np.random.RandomState(seed + i)
        direction = rng.uniform(low=-1.0, high=1.0, size=2)
        direction = direction / np.sqrt(np.sum(direction**2))
        radius = rng.uniform(low=0.2, high=1.0, size=1)
        x0[i] = radius * direction
        if i < num:
            noise[i, :, 0] = rng.randn(n)
            noise[i, :, 1] = rng.randn(n)
    field = duffing_field(alpha, beta, gamma, delta)
    clean = solve_in_blocks(field, x0, t)[:num]
    observed = clean + noise_std * noise if noise_std > 0 else clean.copy()
    return t, clean, observed


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
        super().__init__(
            cache_dir=cache_dir,
            time_horizon=time_horizon,
            windows=windows,
            batch_size=batch_size,
            test_batch_size=test_batch_size,
            num_workers=num_workers,
        )
        self.save_hyperparameters()
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma), ("delta", delta)):
            if not np.isfinite(float(value)):
                raise ValueError(f"{name} must be finite, got {value!r}")
        self.alpha, self.beta, self.gamma, self.delta = (
            float(alpha),
            float(beta),
            float(gamma),
            float(delta),
        )
        self._set_sizes(
            num_train=num_train,
            num_val=num_val,
            num_test=num_test,
            train_steps=train_steps,
            test_steps=test_steps,
            train_span=train_span,
            test_span=test_span,
            noise_std=noise_std,
            train_seed=train_seed,
            val_seed=val_seed,
            test_seed=test_seed,
        )

    def energy(self, x: Tensor) -> Tensor:
        """Reference energy ``alpha q^2 + beta q^4 / 2 + p^2`` of states ``(..., 2)``."""
        return duffing_energy(x, self.alpha, self.beta)

    def generation_args(self) -> dict[str, Any]:
        params = {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "delta": self.delta}
        return {**params, **super().generation_args()}

    def generate(self) -> dict[str, np.ndarray]:
        params = {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "delta": self.delta}
        t, clean, noisy = generate_duffing(
            self.num_train,
            self.train_steps,
            self.train_span,
            self.noise_std,
            self.train_seed,
            **params,
        )
        vt, _, vnoisy = generate_duffing(
            self.num_val,
            self.train_steps,
            self.train_span,
            self.noise_std,
            self.val_seed,
            **params,
        )
        tt, tclean, _ = generate_duffing(
            self.num_test, self.test_steps, self.test_span, 0.0, self.test_seed, **params
        )
        return {
            "train_t": t,
            "train_x": noisy,
            "train_clean": clean,
            "val_t": vt,
            "val_x": vnoisy,
            "test_t": tt,
            "test_x": tclean,
        }
