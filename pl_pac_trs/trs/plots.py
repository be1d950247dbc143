"""Figures of test rollouts: phase portraits, energy vs time, finite-time Lyapunov exponents.

All functions draw with matplotlib's non-interactive Agg backend, save a PNG and return its path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import Tensor

__all__ = [
    "coordinate_pairs",
    "finite_time_lyapunov",
    "plot_energy",
    "plot_lyapunov",
    "plot_phase_portraits",
]


def coordinate_pairs(
    state_dim: int,
    position_dim: int | None = None,
    bodies: dict[str, list[int]] | None = None,
) -> list[tuple[str, int, int]]:
    """Which coordinate pairs to draw: each body's ``(q, p)``, else ``(q_i, p_i)``, else
    consecutive coordinates ``(x_i, x_{i+1})`` for non-mechanical systems."""
    if bodies:
        return [(name, idx[0], idx[1]) for name, idx in bodies.items() if len(idx) >= 2]
    if position_dim:
        n = min(position_dim, state_dim - position_dim)
        return [(f"(q{i + 1}, p{i + 1})", i, position_dim + i) for i in range(n)]
    if state_dim == 1:
        return [("x", 0, 0)]
    return [(f"(x{i + 1}, x{i + 2})", i, i + 1) for i in range(state_dim - 1)]


def _np(x: Tensor):
    return x.detach().float().cpu().numpy()


def _save(fig, path: str | Path, ax=None, ylabel: str = "", title: str = "") -> Path:
    """Label a curve-vs-time axis (when given), save the figure as a PNG and close it."""
    if ax is not None:
        ax.set_xlabel("t")
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_phase_portraits(
    true: Tensor,
    pred: Tensor,
    path: str | Path,
    pairs: Sequence[tuple[str, int, int]],
    title: str = "",
) -> Path:
    """Phase portraits, true (solid) vs predicted (dashed), one column per trajectory.

    Args:
        true: true trajectories ``(N, S, D)`` (including the start state if wanted).
        pred: predicted trajectories ``(N, S, D)``.
        path: output PNG.
        pairs: ``(label, i, j)`` coordinate pairs, one row each.
        title: figure title.
    """
    true, pred = _np(true), _np(pred)
    n = true.shape[0]
    fig, axes = plt.subplots(
        len(pairs), n, figsize=(3.2 * n, 3.0 * len(pairs)), squeeze=False, constrained_layout=True
    )
    for row, (label, i, j) in enumerate(pairs):
        for col in range(n):
            ax = axes[row][col]
            ax.plot(true[col, :, i], true[col, :, j], "k-", lw=1.2, label="true")
            ax.plot(pred[col, :, i], pred[col, :, j], "r--", lw=1.2, label="predicted")
            ax.set_title(f"trajectory {col} {label}", fontsize=9)
            ax.set_xlabel(f"x[{i}]")
            ax.set_ylabel(f"x[{j}]")
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_energy(
    t: Tensor, true_energy: Tensor, pred_energy: Tensor, path: str | Path, title: str = ""
) -> Path:
    """Energy vs time, true (solid) vs predicted (dashed); ``t`` and energies ``(N, S)``."""
    t, true_energy, pred_energy = _np(t), _np(true_energy), _np(pred_energy)
    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    for i in range(true_energy.shape[0]):
        (line,) = ax.plot(t[i], true_energy[i], "-", lw=1.2, label=f"true {i}")
        ax.plot(t[i], pred_energy[i], "--", lw=1.2, color=line.get_color(), label=f"pred {i}")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path, ax, "energy", title)


@torch.no_grad()
def finite_time_lyapunov(
    rollout: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    t: Tensor,
    eps: float = 1e-5,
    coordinate: int = -1,
) -> Tensor:
    """Finite-time Lyapunov exponent ``lambda(t_k) = log(|dx(t_k)| / eps) / (t_k - t_0)``.

    Args:
        rollout: ``rollout(x0, t) -> (N, S, D)``, e.g. ``lambda x, t: integrator(field, x, t)``.
        x0: start states ``(N, D)``.
        t: time grids ``(N, S + 1)``.
        eps: perturbation of ``x0[:, coordinate]`` (reference: ``1e-5`` on ``z0``).
        coordinate: perturbed coordinate.

    Returns:
        ``(N, S)`` exponents at ``t[:, 1:]``.
    """
    perturbed = x0.clone()
    perturbed[:, coordinate] += eps
    base = rollout(x0, t)
    other = rollout(perturbed, t)
    dist = (other - base).norm(dim=-1).clamp_min(torch.finfo(base.dtype).tiny)
    actual = (perturbed - x0).norm(dim=-1, keepdim=True)
    return torch.log(dist / actual) / (t[:, 1:] - t[:, :1])


def plot_lyapunov(t: Tensor, curves: dict[str, Tensor], path: str | Path, title: str = "") -> Path:
    """Mean (± std over trajectories) finite-time Lyapunov curves; ``curves`` name -> ``(N, S)``."""
    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    tt = _np(t[0])
    for name, curve in curves.items():
        c = _np(curve)
        mean, std = c.mean(axis=0), c.std(axis=0)
        ax.plot(tt, mean, label=name)
        ax.fill_between(tt, mean - std, mean + std, alpha=0.2)
    ax.legend(fontsize=8)
    return _save(fig, path, ax, "finite-time Lyapunov exponent", title)
