"""``TRSODEN``: a LightningModule training a neural ODE with the time-reversal symmetric loss.

``lam = 0`` gives the ODEN (MLP field) or HODEN (Hamiltonian field) baselines, ``lam > 0`` the
TRS-ODEN / TRS-HODEN, so every condition of the reference experiments is one config.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from pl_pac_trs.metrics import EnergyMSE, TrajectoryMSE
from pl_pac_trs.trs.integrators import RK4, Integrator, Leapfrog, make_integrator
from pl_pac_trs.trs.loss import TRSLoss, trs_loss
from pl_pac_trs.trs.optim import OPTIMIZERS, make_optimizer
from pl_pac_trs.trs.reversal import Reversal

__all__ = ["TRSODEN"]


@contextlib.contextmanager
def _rollout_mode() -> Iterator[None]:
    """No gradients, but outside inference mode, so Hamiltonian fields can use autograd."""
    with torch.inference_mode(False), torch.no_grad():
        yield


def _fine_rk4(field: Any, x0: Tensor, t: Tensor, substeps: int = 8) -> Tensor:
    """RK4 with ``substeps`` steps per interval of ``t`` (a reference solution on ``t``)."""
    frac = torch.linspace(0, 1, substeps + 1, dtype=t.dtype, device=t.device)[:-1]
    fine = (t[:, :-1, None] + frac * t.diff(dim=1)[:, :, None]).flatten(1)
    fine = torch.cat([fine, t[:, -1:]], dim=1)
    return RK4()(field, x0, fine)[:, substeps - 1 :: substeps]


class TRSODEN(pl.LightningModule):
    """Neural ODE trained with ``L = L_ODE + lam * L_TRS`` on batches ``{"x0", "t", "y"}``.

    Args:
        vector_field: the field ``f(t, x)`` (e.g. :class:`~pl_pac_trs.trs.ODENField`,
            :class:`~pl_pac_trs.trs.HODENField`, or any module with that signature).
        integrator: ``"leapfrog"``, ``"rk4"``, ``"euler"``, ``"torchdiffeq:<method>"`` or an
            :class:`~pl_pac_trs.trs.Integrator`.
        lam: weight of the TRS term (``0``: ODEN/HODEN baseline).
        time_weighted: weight the TRS error of step ``k`` by ``t_k / max t`` (damped systems).
        reversal: the reversing operator ``R``; ``None``: ``(q, p) -> (q, -p)`` using the
            datamodule's (or the field's) ``position_dim``.
        lr: Adam learning rate (reference: 2e-4).
        weight_decay: Adam weight decay.
        batched_rollout: forward and backward rollouts in one integrator call (default) or two.
        compile_field: wrap the field in :func:`torch.compile` (off by default).
        num_plot: test trajectories drawn in the phase-portrait / energy figures (0: no plots).
        lyapunov: also compute and plot the finite-time Lyapunov curve at test time (attractor).
        optimizer: ``"adam"`` (:class:`torch.optim.Adam`, eps 1e-8) or ``"keras_adam"``
            (:class:`~pl_pac_trs.trs.KerasAdam`: the reference code's legacy Keras Adam, eps
            1e-7 on the uncorrected second moment; the exp V reproduction configs use it).
    """

    def __init__(
        self,
        vector_field: nn.Module,
        integrator: str | Integrator = "leapfrog",
        lam: float = 0.0,
        time_weighted: bool = False,
        reversal: Reversal | None = None,
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        batched_rollout: bool = True,
        compile_field: bool = False,
        num_plot: int = 3,
        lyapunov: bool = False,
        optimizer: str = "adam",
    ) -> None:
        super().__init__()
        if not isinstance(vector_field, nn.Module):
            raise TypeError(
                f"TRSODEN: vector_field must be an nn.Module f(t, x), got {type(vector_field)}"
            )
        if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
            raise ValueError(f"TRSODEN: lam must be a finite number >= 0, got {lam!r}")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"TRSODEN: lr must be > 0, got {lr!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"TRSODEN: optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}"
            )
        if int(num_plot) < 0:
            raise ValueError(f"TRSODEN: num_plot must be >= 0, got {num_plot!r}")
        if reversal is not None and not isinstance(reversal, Reversal):
            raise TypeError(f"TRSODEN: reversal must be a Reversal, got {type(reversal)}")
        # modules are not hyper-parameters; an integrator *name* is (load_from_checkpoint)
        ignore = ["vector_field", "reversal"] + (
            [] if isinstance(integrator, str) else ["integrator"]
        )
        self.save_hyperparameters(ignore=ignore)
        self.vector_field = vector_field
        self.integrator = make_integrator(integrator)
        self.lam = float(lam)
        self.time_weighted = bool(time_weighted)
        self.reversal = reversal
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.optimizer_name = optimizer
        self.batched_rollout = bool(batched_rollout)
        self.compile_field = bool(compile_field)
        self.num_plot = int(num_plot)
        self.lyapunov = bool(lyapunov)
        # the torch.compile'd field, kept out of the module tree (a registered alias would put
        # the weights twice into every state_dict and checkpoint)
        self.__dict__["_compiled_field"] = None
        self._state_dim: int | None = None
        self._checked: set[str] = set()
        self.test_mse = TrajectoryMSE()
        self.test_energy: EnergyMSE | None = None
        self.test_bodies = nn.ModuleDict()
        self._plot_batch: dict[str, Tensor] | None = None
        self._lyapunov_items: list[tuple[Tensor, Tensor]] = []

    # ------------------------------------------------------------------ set-up and validation
    def _datamodule(self) -> Any:
        trainer = self._trainer
        return getattr(trainer, "datamodule", None) if trainer is not None else None

    def setup(self, stage: str) -> None:
        dm = self._datamodule()
        state_dim = getattr(dm, "state_dim", None) or getattr(self.vector_field, "state_dim", None)
        if state_dim:
            self._resolve(int(state_dim))
        if self.compile_field and self._compiled_field is None:
            self.__dict__["_compiled_field"] = torch.compile(self.vector_field)

    @property
    def _field(self) -> nn.Module:
        """The field the rollouts call: ``vector_field``, or its compiled wrapper."""
        compiled = self.__dict__.get("_compiled_field")
        return self.vector_field if compiled is None else compiled

    def _position_dim(self) -> int | None:
        for source in (self._datamodule(), self.vector_field, self.integrator):
            value = getattr(source, "position_dim", None)
            if value:
                return int(value)
        return None

    def _resolve(self, state_dim: int) -> None:
        """Check the field, R and the integrator against the state dimension (once)."""
        if self._state_dim == state_dim:
            return
        if self._state_dim is not None:
            raise ValueError(
                f"TRSODEN: data has state dimension {state_dim} but the model was set up for "
                f"{self._state_dim}"
            )
        field_dim = getattr(self.vector_field, "state_dim", None)
        if field_dim is not None and int(field_dim) != state_dim:
            raise ValueError(
                f"TRSODEN: vector_field has state_dim={field_dim} but the data has state "
                f"dimension {state_dim}"
            )
        position_dim = self._position_dim()
        if self.reversal is None and position_dim is not None:
            self.reversal = Reversal.momentum_flip(state_dim, position_dim).to(self.device)
        if self.reversal is not None:
            self.reversal.check_state_dim(state_dim, "the data")
        elif self.lam > 0:
            raise ValueError(
                "TRSODEN: lam > 0 needs a reversing operator: pass reversal=Reversal([...]) or use "
                "a datamodule with position_dim (the default R is (q, p) -> (q, -p))"
            )
        if isinstance(self.integrator, Leapfrog):
            if self.integrator.position_dim is None and position_dim is not None:
                self.integrator.position_dim = position_dim
            self.integrator._split(state_dim)
            field_pd = getattr(self.vector_field, "position_dim", None)
            if field_pd is not None and field_pd != self.integrator._split(state_dim):
                raise ValueError(
                    f"TRSODEN: the field's position_dim={field_pd} differs from the leapfrog's "
                    f"{self.integrator._split(state_dim)}"
                )
        probe = torch.zeros(2, state_dim, device=self.device)
        try:
            with _rollout_mode():
                out = self.vector_field(torch.zeros((), device=self.device), probe)
        except Exception as err:
            raise ValueError(
                f"TRSODEN: vector_field does not accept states of dimension {state_dim}: {err}"
            ) from err
        if tuple(out.shape) != (2, state_dim):
            raise ValueError(
                f"TRSODEN: vector_field maps (2, {state_dim}) states to shape {tuple(out.shape)}, "
                f"expected (2, {state_dim})"
            )
        self._state_dim = state_dim

    def _check_batch(self, batch: dict[str, Tensor], stage: str) -> tuple[Tensor, Tensor, Tensor]:
        try:
            x0, t, y = batch["x0"], batch["t"], batch["y"]
        except (KeyError, TypeError) as err:
            raise ValueError(
                f"TRSODEN: {stage} batches must be dicts with keys 'x0', 't', 'y'; "
                f"got {type(batch).__name__}"
            ) from err
        if stage in self._checked:
            return x0, t, y
        if x0.dim() != 2 or y.dim() != 3 or t.dim() != 2:
            raise ValueError(
                f"TRSODEN ({stage}): expected x0 (B, D), t (B, S+1), y (B, S, D); got "
                f"{tuple(x0.shape)}, {tuple(t.shape)}, {tuple(y.shape)}"
            )
        b, d = x0.shape
        if t.shape[0] != b or y.shape[0] != b or y.shape[2] != d or t.shape[1] != y.shape[1] + 1:
            raise ValueError(
                f"TRSODEN ({stage}): inconsistent batch shapes x0 {tuple(x0.shape)}, t "
                f"{tuple(t.shape)}, y {tuple(y.shape)} (expected (B, D), (B, S+1), (B, S, D))"
            )
        if not bool(torch.all(t.diff(dim=1) > 0)):
            raise ValueError(
                f"TRSODEN ({stage}): the time grid t is not strictly increasing along each sample"
            )
        self._resolve(d)
        self._checked.add(stage)
        return x0, t, y

    # ------------------------------------------------------------------ computation
    def forward(self, x0: Tensor, t: Tensor) -> Tensor:
        """Roll out from ``x0`` ``(B, D)`` along ``t`` ``(B, S + 1)``; returns ``(B, S, D)``."""
        return self.integrator(self._field, x0, t)

    def loss(self, batch: dict[str, Tensor], compute_trs: bool | None = None) -> TRSLoss:
        """``L_ODE + lam L_TRS`` of a batch (see :func:`~pl_pac_trs.trs.trs_loss`)."""
        x0, t, y = batch["x0"], batch["t"], batch["y"]
        return trs_loss(
            self._field,
            self.integrator,
            x0,
            t,
            y,
            self.reversal,
            lam=self.lam,
            time_weighted=self.time_weighted,
            batched=self.batched_rollout,
            compute_trs=compute_trs,
        )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._check_batch(batch, "train")
        out = self.loss(batch)
        if self._logs_this_step():
            bs = batch["x0"].shape[0]
            self.log("train/loss", out.total, prog_bar=True, batch_size=bs)
            self.log("train/ode", out.ode, batch_size=bs)
            if out.trs is not None:
                self.log("train/trs", out.trs, batch_size=bs)
        return out.total

    def _logs_this_step(self) -> bool:
        """Whether the training metrics of this step reach the logger: every
        ``log_every_n_steps``-th optimizer step (Lightning's cadence) and the fit's last step.
        Each ``self.log`` costs about a millisecond of Lightning bookkeeping, a sizeable share
        of a full-batch epoch, so the steps whose values Lightning would not send are skipped."""
        trainer = self._trainer
        if trainer is None or trainer.log_every_n_steps <= 1:
            return True
        step = trainer.global_step + 1
        if step % trainer.log_every_n_steps == 0 or trainer.should_stop:
            return True
        if trainer.max_steps is not None and 0 < trainer.max_steps <= step:
            return True
        last_epoch = trainer.max_epochs is not None and self.current_epoch + 1 >= trainer.max_epochs
        return bool(last_epoch and trainer.is_last_batch)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._check_batch(batch, "val")
        with _rollout_mode():
            batch = {k: v.clone() for k, v in batch.items()}
            out = self.loss(batch, compute_trs=self.reversal is not None)
        bs = batch["x0"].shape[0]
        self.log("val/loss", out.total, prog_bar=True, batch_size=bs, sync_dist=True)
        self.log("val/ode", out.ode, batch_size=bs, sync_dist=True)
        if out.trs is not None:
            self.log("val/trs", out.trs, batch_size=bs, sync_dist=True)

    def rollout(self, x0: Tensor, t: Tensor) -> Tensor:
        """Test-time rollout without gradients (works for Hamiltonian fields too)."""
        with _rollout_mode():
            return self.integrator(self._field, x0.clone(), t.clone())

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Stores what ``setup`` resolved from the data (R, leapfrog's split), for reloading."""
        position_dim = getattr(self.integrator, "position_dim", None)
        checkpoint["trs_resolved"] = {
            "reversal_signs": None if self.reversal is None else self.reversal.signs.tolist(),
            "position_dim": position_dim,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        resolved = checkpoint.get("trs_resolved") or {}
        if self.reversal is None and resolved.get("reversal_signs"):
            self.reversal = Reversal(resolved["reversal_signs"]).to(self.device)
        position_dim = resolved.get("position_dim")
        if isinstance(self.integrator, Leapfrog) and self.integrator.position_dim is None:
            self.integrator.position_dim = position_dim

    # ------------------------------------------------------------------ test
    def on_test_start(self) -> None:
        dm = self._datamodule()
        # rebuilt for every test run: the model may be tested on another system (e.g. the
        # source task after PAC-Net calibration), whose energy and bodies differ
        energy = getattr(dm, "energy", None)
        self.test_energy = EnergyMSE(energy).to(self.device) if callable(energy) else None
        bodies = getattr(dm, "bodies", None) or {}
        self.test_bodies = nn.ModuleDict(
            {name: TrajectoryMSE(indices=idx).to(self.device) for name, idx in bodies.items()}
        )
        self._plot_batch = None
        self._lyapunov_items = []

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        x0, t, y = self._check_batch(batch, "test")
        pred = self.rollout(x0, t)
        y = y.clone()
        index = batch.get("index")  # repeated trajectories (DDP sampler padding) count once
        self.test_mse.update(pred, y, index)
        if self.test_energy is not None:
            self.test_energy.update(pred, y, index)
        for metric in self.test_bodies.values():
            metric.update(pred, y, index)
        if self.lyapunov:
            self._lyapunov_items.append((x0.detach(), t.detach()))
        if self._plot_batch is None and self.num_plot > 0:
            k = self.num_plot
            self._plot_batch = {
                "x0": x0[:k].clone(),
                "t": t[:k].clone(),
                "y": y[:k],
                "pred": pred[:k],
            }

    def on_test_epoch_end(self) -> None:
        results: dict[str, Tensor] = {}
        named = [("test/traj_mse", self.test_mse)]
        if self.test_energy is not None:
            named.append(("test/energy_mse", self.test_energy))
        named += [(f"test/{name}_mse", m) for name, m in self.test_bodies.items()]
        for key, metric in named:
            mean, std = metric.compute_mean_std()
            results[key], results[f"{key}_std"] = mean, std
            metric.reset()
        for key, value in results.items():
            self.log(key, value.to(self.device), sync_dist=True)
        if self.num_plot > 0:
            from pl_pac_trs.runs import run_dir

            # on every rank: trainer.log_dir (used by run_dir) broadcasts, a collective call
            out_dir = run_dir(self.trainer)
            if self.trainer.is_global_zero and self._plot_batch is not None:
                self._make_plots(out_dir)
        if self.trainer.is_global_zero:
            rank_zero_info(
                "TRSODEN test (x1e2): "
                + ", ".join(f"{k}={float(v):.4g}" for k, v in results.items())
            )

    def _make_plots(self, out_dir) -> None:
        from pl_pac_trs.runs import find_wandb_logger
        from pl_pac_trs.trs import plots

        dm = self._datamodule()
        data = self._plot_batch
        true = torch.cat([data["x0"][:, None], data["y"]], dim=1)
        pred = torch.cat([data["x0"][:, None], data["pred"]], dim=1)
        d = true.shape[-1]
        name = getattr(dm, "name", "system")
        tag = f"{name} lam={self.lam:g}"
        paths = {
            "test/phase_portraits": plots.plot_phase_portraits(
                true,
                pred,
                out_dir / "phase_portraits.png",
                plots.coordinate_pairs(d, self._position_dim(), getattr(dm, "bodies", None)),
                title=tag,
            )
        }
        energy = getattr(dm, "energy", None)
        if callable(energy):
            paths["test/energy"] = plots.plot_energy(
                data["t"], energy(true), energy(pred), out_dir / "energy.png", title=tag
            )
        if self.lyapunov and self._lyapunov_items:
            # every test trajectory of this process (all of them on one process), like the
            # reference's average over its 50 test trajectories; the system's own curve beside
            # it when the datamodule exposes its field (``true_field``)
            steps = self._lyapunov_items[0][1].shape[1]
            items = [(x, t) for x, t in self._lyapunov_items if t.shape[1] == steps]
            x0, t = torch.cat([x for x, _ in items]), torch.cat([t for _, t in items])
            curves = {"model": plots.finite_time_lyapunov(self.rollout, x0, t)}
            true_field = getattr(dm, "true_field", None)
            if callable(true_field):
                curves["true"] = plots.finite_time_lyapunov(
                    partial(_fine_rk4, true_field), x0.double(), t.double()
                ).float()
            self.lyapunov_curves = {k: v.mean(0).cpu() for k, v in curves.items()}
            paths["test/lyapunov"] = plots.plot_lyapunov(
                t[:, 1:], curves, out_dir / "lyapunov.png", title=tag
            )
        logger = find_wandb_logger(self.trainer)
        if logger is not None:
            for key, path in paths.items():
                logger.log_image(key=key, images=[str(path)])
        self.plot_paths = {k: str(v) for k, v in paths.items()}

    # ------------------------------------------------------------------ predict / optim
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        x0, t, _ = self._check_batch(batch, "predict")
        return self.rollout(x0, t)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return make_optimizer(
            self.optimizer_name,
            self.vector_field.parameters(),
            lr=self.lr,
            weight_decay=self.weight_decay,
        )
