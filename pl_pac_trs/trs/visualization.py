"""``TrajectoryPlots``: figures of a TRS-ODEN's test rollouts, as a Lightning callback.

Phase portraits and energy vs time of the first test trajectories, and optionally the
finite-time Lyapunov curve over every test trajectory; saved as PNGs in the run's directory
(:func:`output_dir`) and logged as images to W&B when a ``WandbLogger`` is attached.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from torch import Tensor
from typing_extensions import override

from pl_pac_trs.trs import plots
from pl_pac_trs.trs.data_contract import trajectory_data
from pl_pac_trs.trs.integrators import RK4

__all__ = ["RolloutModel", "TrajectoryPlots", "output_dir", "reference_rollout"]


@runtime_checkable
class RolloutModel(Protocol):
    """What :class:`TrajectoryPlots` needs of the module (:class:`~pl_pac_trs.trs.TRSODEN`)."""

    def rollout(self, x0: Tensor, t: Tensor) -> Tensor:
        """Test-time rollout ``(B, S, D)`` from ``x0`` ``(B, D)`` along ``t`` ``(B, S + 1)``."""


def reference_rollout(field: Any, x0: Tensor, t: Tensor, substeps: int = 8) -> Tensor:
    """RK4 with ``substeps`` steps per interval of ``t``: a reference solution on ``t``.

    Example:
        >>> t = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
        >>> x = reference_rollout(lambda t, x: -x, torch.ones(1, 1, dtype=torch.float64), t)
        >>> round(float(x[0, -1, 0]), 6)  # exp(-1) = 0.3678794...
        0.367879
    """
    frac = torch.linspace(0, 1, substeps + 1, dtype=t.dtype, device=t.device)[:-1]
    fine = (t[:, :-1, None] + frac * t.diff(dim=1)[:, :, None]).flatten(1)
    fine = torch.cat([fine, t[:, -1:]], dim=1)
    return RK4()(field, x0, fine)[:, substeps - 1 :: substeps]


def output_dir(trainer: pl.Trainer) -> Path:
    """The run's artefact directory (created if missing), with no collective call.

    On global rank zero with a live ``WandbLogger``: the W&B run's ``files`` directory; with a
    ``WandbLogger`` otherwise (``WANDB_MODE=disabled``, other ranks): ``default_root_dir``, not
    the ``save_dir`` every run shares. Else the logger's ``log_dir`` (TensorBoard, CSV), its
    ``save_dir``, or ``default_root_dir`` without a logger.
    """
    logger = trainer.logger
    wandb = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
    if wandb is not None:
        run = wandb.experiment if trainer.is_global_zero else None
        live = run is not None and not getattr(run, "disabled", False)
        path = getattr(run, "dir", None) if live else None
    elif isinstance(logger, (TensorBoardLogger, CSVLogger)):
        path = logger.log_dir
    else:
        path = getattr(logger, "save_dir", None)
    out = Path(path or trainer.default_root_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


class TrajectoryPlots(pl.Callback):
    """Figures of the test rollouts, on global rank zero: ``phase_portraits.png`` and
    ``energy.png`` (when the datamodule has ``energy``) of the first ``num_plot`` test
    trajectories, ``lyapunov.png`` with ``lyapunov`` (the model's finite-time Lyapunov curve
    over every test trajectory of rank zero, beside the system's own when the datamodule has
    ``true_field``). W&B keys: ``test/phase_portraits``, ``test/energy``, ``test/lyapunov``.

    After a test run, :attr:`paths` maps those keys to the PNGs and :attr:`lyapunov_curves`
    holds the mean curves ``(S,)`` (``"model"``, ``"true"``).

    Args:
        num_plot: test trajectories drawn in the phase-portrait and energy figures (0: none).
        lyapunov: also compute and plot the finite-time Lyapunov curve (strange attractor).
        dirpath: where the PNGs go; ``None``: :func:`output_dir`.

    Raises:
        ValueError: ``num_plot`` is negative or not an integer.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(callbacks=[TrajectoryPlots(num_plot=2)], logger=False)
    """

    def __init__(
        self, num_plot: int = 3, lyapunov: bool = False, dirpath: str | Path | None = None
    ) -> None:
        if isinstance(num_plot, bool) or not isinstance(num_plot, int) or num_plot < 0:
            raise ValueError(f"TrajectoryPlots: num_plot must be an int >= 0, got {num_plot!r}")
        self.num_plot = num_plot
        self.lyapunov = bool(lyapunov)
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.paths: dict[str, Path] = {}
        self.lyapunov_curves: dict[str, Tensor] = {}
        self._shown: dict[str, Tensor] | None = None
        self._starts: list[tuple[Tensor, Tensor]] = []

    @override
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(pl_module, RolloutModel):
            raise TypeError(
                f"TrajectoryPlots needs a module with rollout(x0, t), got {type(pl_module)}"
            )
        self._shown, self._starts, self.paths = None, [], {}

    @override
    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.is_global_zero:
            return
        x0, t, y = batch["x0"], batch["t"], batch["y"]
        if self.lyapunov:
            self._starts.append((x0.detach(), t.detach()))
        if self._shown is None and self.num_plot > 0:
            k = self.num_plot
            pred = outputs[:k] if isinstance(outputs, Tensor) else pl_module.rollout(x0[:k], t[:k])
            self._shown = {"x0": x0[:k], "t": t[:k], "y": y[:k], "pred": pred}
            self._shown = {key: v.detach().clone() for key, v in self._shown.items()}

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or (self._shown is None and not self._starts):
            return
        out = self.dirpath or output_dir(trainer)
        out.mkdir(parents=True, exist_ok=True)
        data = trajectory_data(trainer)
        name = data.name if data is not None else "system"
        weight = getattr(pl_module, "trs_weight", None)
        title = name if weight is None else f"{name} trs_weight={weight:g}"
        if self._shown is not None:
            self._draw_rollouts(pl_module, data, out, title)
        if self._starts:
            self._draw_lyapunov(pl_module, data, out, title)
        wandb = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        if wandb is not None:
            for key, path in self.paths.items():
                wandb.log_image(key=key, images=[str(path)])

    def _draw_rollouts(self, pl_module: Any, data: Any, out: Path, title: str) -> None:
        shown = self._shown
        true = torch.cat([shown["x0"][:, None], shown["y"]], dim=1)
        pred = torch.cat([shown["x0"][:, None], shown["pred"]], dim=1)
        position_dim = getattr(pl_module, "position_dim", None)
        bodies = data.bodies if data is not None else None
        pairs = plots.coordinate_pairs(true.shape[-1], position_dim, bodies)
        self.paths["test/phase_portraits"] = plots.plot_phase_portraits(
            true, pred, out / "phase_portraits.png", pairs, title=title
        )
        energy = data.energy if data is not None else None
        if energy is not None:
            self.paths["test/energy"] = plots.plot_energy(
                shown["t"], energy(true), energy(pred), out / "energy.png", title=title
            )

    def _draw_lyapunov(self, pl_module: Any, data: Any, out: Path, title: str) -> None:
        # every test trajectory of this process (all of them on one process), like the
        # reference's average over its 50 test trajectories
        steps = self._starts[0][1].shape[1]
        starts = [(x, t) for x, t in self._starts if t.shape[1] == steps]
        x0, t = torch.cat([x for x, _ in starts]), torch.cat([t for _, t in starts])
        curves = {"model": plots.finite_time_lyapunov(pl_module.rollout, x0, t)}
        true_field = data.true_field if data is not None else None
        if true_field is not None:
            curves["true"] = plots.finite_time_lyapunov(
                partial(reference_rollout, true_field), x0.double(), t.double()
            ).float()
        self.lyapunov_curves = {k: v.mean(0).cpu() for k, v in curves.items()}
        self.paths["test/lyapunov"] = plots.plot_lyapunov(
            t[:, 1:], curves, out / "lyapunov.png", title=title
        )
