"""Five more simulated systems for TRS-ODEN, beside the reference experiments' Duffing family.

Each :class:`ODESystem` is a vector field, an initial-state draw and what a model needs to know
about it (position split, reversing operator, whether a separable Hamiltonian exists);
:class:`ODESystemDataModule` simulates one of them with the package's generator
(:func:`~pl_pac_trs.data.integrate.simulate_noisy`: per-trajectory seeds, accurate DOP853 solves,
Gaussian observation noise on train and val, clean test trajectories).

=====================  ===========================================  ======================
name                   dynamics (state)                             reversing operator R
=====================  ===========================================  ======================
``pendulum``           ``q' = p, p' = -sin q`` (q, p)               ``(q, p) -> (q, -p)``
``damped_pendulum``    ``p' = -sin q - 0.1 p``                      none (dissipative)
``forced_pendulum``    ``p' = -sin q + 0.2 cos(0.5 t)``             ``(q, p, t) -> (q, -p, -t)``
``henon_heiles``       ``H = |p|^2/2 + |q|^2/2 + x^2 y - y^3/3``     ``(q, p) -> (q, -p)``
``lotka_volterra``     ``u' = 1 - e^v, v' = e^u - 1`` (u, v)         ``(u, v) -> (v, u)``
=====================  ===========================================  ======================

``lotka_volterra`` is the predator-prey model ``x' = x (1 - y)``, ``y' = y (x - 1)`` in log
coordinates ``u = ln x``, ``v = ln y``. It is reversible under the swap ``R (u, v) = (v, u)``
(``R f(x) = -f(R x)``), not under the momentum flip, and Hamiltonian with the separable
``H = e^u - u + e^v - v`` (position ``u``, momentum ``v``, up to the sign of time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from typing_extensions import override

from pl_pac_trs.data.generated import GeneratedTrajectoryDataModule
from pl_pac_trs.data.integrate import simulate_noisy

__all__ = ["SYSTEM_NAMES", "ODESystem", "ODESystemDataModule", "ode_system"]

Field = Callable[[float, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ODESystem:
    """One simulated system.

    Attributes:
        name: short name.
        field: ``f(t, X)`` for a batch ``X`` of shape ``(M, D)`` (numpy).
        initial_state: draws one initial state ``(D,)`` from a ``RandomState``.
        state_dim: ``D``.
        position_dim: number of position coordinates of a ``[q, p]`` state (the leapfrog split;
            also a HODEN's), or ``None``.
        reversal_signs: the signs of the reversing operator ``R x = signs * x[permutation]``,
            or ``None`` when the system is not time-reversal symmetric.
        reversal_permutation: the coordinate permutation of ``R`` (``None``: identity).
        time_dependent: whether ``f`` depends on ``t`` (reversal then also maps ``t -> -t``).
        separable_hamiltonian: whether ``H = K(p) + V(q)`` exists in the ``[q, p]`` split.
        energy: ``energy(x)`` of states ``(..., D)`` (numpy or torch), or ``None``.
    """

    name: str
    field: Field
    initial_state: Callable[[np.random.RandomState], np.ndarray]
    state_dim: int
    position_dim: int | None
    reversal_signs: tuple[float, ...] | None
    reversal_permutation: tuple[int, ...] | None = None
    time_dependent: bool = False
    separable_hamiltonian: bool = False
    energy: Callable[[Any], Any] | None = None

    @property
    def reversible(self) -> bool:
        """Whether the system has a reversing operator."""
        return self.reversal_signs is not None

    def reverse(self, x: np.ndarray) -> np.ndarray:
        """``R x`` of states ``(..., D)`` (numpy)."""
        if self.reversal_signs is None:
            raise ValueError(f"{self.name} is not time-reversal symmetric")
        perm = self.reversal_permutation or tuple(range(self.state_dim))
        return np.asarray(x)[..., list(perm)] * np.asarray(self.reversal_signs)


def _cos(x):
    return torch.cos(x) if isinstance(x, Tensor) else np.cos(x)


def _exp(x):
    return torch.exp(x) if isinstance(x, Tensor) else np.exp(x)


def _ring(rng: np.random.RandomState, dim: int, low: float, high: float) -> np.ndarray:
    """A direction uniform in ``[-1, 1]^dim`` normalised, times a radius ``U(low, high)``."""
    direction = rng.uniform(-1.0, 1.0, size=dim)
    return direction / np.linalg.norm(direction) * rng.uniform(low, high)


def _pendulum(damping: float = 0.0, forcing: float = 0.0, frequency: float = 0.5) -> Field:
    def field(t: float, x: np.ndarray) -> np.ndarray:
        q, p = x[:, 0], x[:, 1]
        return np.stack([p, -np.sin(q) - damping * p + forcing * np.cos(frequency * t)], 1)

    return field


def _pendulum_energy(x):
    return x[..., 1] ** 2 / 2 + 1 - _cos(x[..., 0])


def _henon_heiles(t: float, x: np.ndarray) -> np.ndarray:
    qx, qy, px, py = x.T
    return np.stack([px, py, -qx - 2 * qx * qy, -qy - qx**2 + qy**2], 1)


def _henon_heiles_energy(x):
    qx, qy, px, py = x[..., 0], x[..., 1], x[..., 2], x[..., 3]
    return (px**2 + py**2 + qx**2 + qy**2) / 2 + qx**2 * qy - qy**3 / 3


def _lotka_volterra(t: float, x: np.ndarray) -> np.ndarray:
    u, v = x[:, 0], x[:, 1]
    return np.stack([1 - np.exp(v), np.exp(u) - 1], 1)


def _lotka_volterra_energy(x):
    u, v = x[..., 0], x[..., 1]
    return _exp(u) - u + _exp(v) - v


def ode_system(name: str) -> ODESystem:
    """The system called ``name`` (one of :data:`SYSTEM_NAMES`; see the module docstring).

    Raises:
        ValueError: unknown name.
    """
    flip = (1.0, -1.0)
    if name == "pendulum":  # libration only: |x0| <= 1.8 keeps the energy below the separatrix
        return ODESystem(
            name,
            _pendulum(),
            lambda rng: _ring(rng, 2, 0.3, 1.8),
            2,
            1,
            flip,
            separable_hamiltonian=True,
            energy=_pendulum_energy,
        )
    if name == "damped_pendulum":
        return ODESystem(
            name, _pendulum(damping=0.1), lambda rng: _ring(rng, 2, 0.3, 1.8), 2, 1, None
        )
    if name == "forced_pendulum":
        return ODESystem(
            name,
            _pendulum(forcing=0.2),
            lambda rng: _ring(rng, 2, 0.3, 1.5),
            2,
            1,
            flip,
            time_dependent=True,
        )
    if name == "henon_heiles":  # energies below ~0.08, far from the escape energy 1/6
        return ODESystem(
            name,
            _henon_heiles,
            lambda rng: _ring(rng, 4, 0.1, 0.4),
            4,
            2,
            (1.0, 1.0, -1.0, -1.0),
            separable_hamiltonian=True,
            energy=_henon_heiles_energy,
        )
    if name == "lotka_volterra":
        return ODESystem(
            name,
            _lotka_volterra,
            lambda rng: _ring(rng, 2, 0.2, 1.0),
            2,
            1,
            (1.0, 1.0),
            reversal_permutation=(1, 0),
            separable_hamiltonian=True,
            energy=_lotka_volterra_energy,
        )
    raise ValueError(f"unknown system {name!r}; choose from {list(SYSTEM_NAMES)}")


#: The names :func:`ode_system` knows.
SYSTEM_NAMES = ("pendulum", "damped_pendulum", "forced_pendulum", "henon_heiles", "lotka_volterra")


class ODESystemDataModule(GeneratedTrajectoryDataModule):
    """Noisy trajectories of one of :data:`SYSTEM_NAMES`, cut into windows; clean test ones.

    ``position_dim`` is the system's ``[q, p]`` split only when its reversing operator is the
    momentum flip (TRSODEN builds that ``R`` from it); for ``lotka_volterra`` it is ``None``, so
    a model with ``trs_weight > 0`` must be given ``reversal=Reversal([1, 1], permutation=[1,
    0])`` and a leapfrog ``Leapfrog(position_dim=1)``.

    Args:
        system: one of :data:`SYSTEM_NAMES`.
        num_train: training trajectories (seeds ``train_seed + i``).
        train_steps: steps (intervals) per training trajectory.
        train_span: training trajectories cover ``[0, train_span]``.
        noise_std: std of the Gaussian noise added to every coordinate of train and val data.
        num_val: validation trajectories (noisy; seeds ``val_seed + i``); 0: none.
        num_test: clean test trajectories (seeds ``test_seed + i``).
        test_steps: steps per test trajectory.
        test_span: test trajectories cover ``[0, test_span]``.
        time_horizon: steps per window.
        windows: ``"consecutive"`` or ``"sliding"``.
        train_seed: seed of training trajectory 0.
        val_seed: seed of validation trajectory 0.
        test_seed: seed of test trajectory 0.
        batch_size: windows per training batch; ``None`` = full batch.
        test_batch_size: test trajectories per batch; ``None`` = all.
        cache_dir: directory for the ``.npz`` cache; ``None``: no cache.
        num_workers: DataLoader workers.

    Example:
        >>> dm = ODESystemDataModule("lotka_volterra", num_train=2, num_val=1, num_test=1)
        >>> dm.setup()
        >>> dm.state_dim, dm.position_dim, dm.arrays()["train_x"].shape
        (2, None, (2, 31, 2))
    """

    bodies = None

    def __init__(
        self,
        system: str = "pendulum",
        num_train: int = 25,
        train_steps: int = 30,
        train_span: float = 3.0,
        noise_std: float = 0.05,
        num_val: int = 10,
        num_test: int = 20,
        test_steps: int = 100,
        test_span: float = 10.0,
        time_horizon: int = 10,
        windows: str = "consecutive",
        train_seed: int = 0,
        val_seed: int = 5000,
        test_seed: int = 9000,
        batch_size: int | None = None,
        test_batch_size: int | None = None,
        cache_dir: str | None = None,
        num_workers: int = 0,
    ) -> None:
        spec = ode_system(system)
        super().__init__(**self.base_arguments(locals()))
        self.save_hyperparameters()
        self.system = spec
        self.name = spec.name
        self.state_dim = spec.state_dim
        momentum_flip = spec.reversal_signs is not None and spec.reversal_permutation is None
        self.position_dim = spec.position_dim if momentum_flip or not spec.reversible else None
        if spec.energy is not None:
            self.energy = spec.energy

    @override
    def generation_args(self) -> dict[str, Any]:
        return {"system": self.system.name, **super().generation_args()}

    @override
    def simulate(
        self, num: int, steps: int, span: float, noise_std: float, seed: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        spec = self.system
        return simulate_noisy(
            spec.field, spec.initial_state, spec.state_dim, num, steps, span, noise_std, seed
        )
