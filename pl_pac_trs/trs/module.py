"""``TRSODEN``: a LightningModule training a neural ODE with the time-reversal symmetric loss.

``trs_weight = 0`` gives the ODEN (MLP field) or HODEN (Hamiltonian field) baselines,
``trs_weight > 0`` the TRS-ODEN / TRS-HODEN, so every condition of the reference experiments is
one config. Figures of the test rollouts: the :class:`~pl_pac_trs.trs.TrajectoryPlots` callback.
"""

from __future__ import annotations

import copy
import math
import warnings
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from typing_extensions import override

from pl_pac_trs.metrics import RolloutMetrics
from pl_pac_trs.trs.data_contract import DataInfo, TrajectoryData, trajectory_data, unpack_batch
from pl_pac_trs.trs.deprecation import renamed_argument
from pl_pac_trs.trs.integrator_names import make_integrator
from pl_pac_trs.trs.integrators import Integrator, Leapfrog
from pl_pac_trs.trs.loss import TRSLoss, trs_loss
from pl_pac_trs.trs.model_checks import check_model, rollout_mode
from pl_pac_trs.trs.optim import OPTIMIZERS, make_optimizer
from pl_pac_trs.trs.reversal import Reversal
from pl_pac_trs.trs.visualization import TrajectoryPlots

__all__ = ["TRSODEN"]


class TRSODEN(pl.LightningModule):
    """Neural ODE trained with ``L = L_ODE + trs_weight * L_TRS`` on batches ``{"x0", "t", "y"}``.

    What it reads off its datamodule (``state_dim``, ``position_dim``, ``bodies``, optionally
    ``energy``) is declared by :class:`~pl_pac_trs.trs.TrajectoryData`. Logs ``train/loss``,
    ``train/ode``, ``train/trs``, ``val/*`` alike, and at test the
    :class:`~pl_pac_trs.metrics.RolloutMetrics` (``test/traj_mse``, ``test/energy_mse``,
    ``test/<body>_mse``, each with ``_std``).

    Args:
        vector_field: the field ``f(t, x)`` (e.g. :class:`~pl_pac_trs.trs.ODENField`,
            :class:`~pl_pac_trs.trs.HODENField`, or any module with that signature).
        integrator: ``"leapfrog"``, ``"rk4"``, ``"euler"``, ``"torchdiffeq:<method>"`` or an
            :class:`~pl_pac_trs.trs.Integrator`.
        trs_weight: weight of the TRS term (``0``: ODEN/HODEN baseline).
        time_weighted: weight the TRS error of step ``k`` by ``t_k / max t`` (damped systems).
        reversal: the reversing operator ``R``; ``None``: ``(q, p) -> (q, -p)`` using the
            datamodule's (or the field's) ``position_dim``.
        lr: learning rate (reference: 2e-4).
        weight_decay: weight decay.
        batched_rollout: forward and backward rollouts in one integrator call (default) or two.
        compile_field: wrap the field in :func:`torch.compile` (off by default).
        num_plot: deprecated, use the callback ``TrajectoryPlots(num_plot=...)``; when given
            (or ``lyapunov``), the module adds that callback itself (0: no figures).
        lyapunov: deprecated, use ``TrajectoryPlots(lyapunov=True)``.
        optimizer: ``"adam"`` (:class:`torch.optim.Adam`, eps 1e-8) or ``"keras_adam"``
            (:class:`~pl_pac_trs.trs.KerasAdam`: the reference code's legacy Keras Adam, eps
            1e-7 on the uncorrected second moment; the exp V reproduction configs use it).
        lam: deprecated alias of ``trs_weight`` (it wins when given).

    Raises:
        TypeError: ``vector_field`` is not a module, or ``reversal`` not a :class:`Reversal`.
        ValueError: ``trs_weight`` negative or not finite, ``lr <= 0``, an unknown
            ``optimizer`` or ``integrator``, a negative ``num_plot``.

    Example:
        >>> from pl_pac_trs.trs import ODENField
        >>> model = TRSODEN(ODENField(2, hidden=(16,)), integrator="leapfrog", trs_weight=10.0)
        >>> model(torch.zeros(3, 2), torch.linspace(0, 1, 6).expand(3, 6)).shape
        torch.Size([3, 5, 2])
    """

    def __init__(
        self,
        vector_field: nn.Module,
        integrator: str | Integrator = "leapfrog",
        trs_weight: float = 0.0,
        time_weighted: bool = False,
        reversal: Reversal | None = None,
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        batched_rollout: bool = True,
        compile_field: bool = False,
        num_plot: int | None = None,
        lyapunov: bool | None = None,
        optimizer: str = "adam",
        lam: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(vector_field, nn.Module):
            raise TypeError(
                f"TRSODEN: vector_field must be an nn.Module f(t, x), got {type(vector_field)}"
            )
        weight_name = "trs_weight" if lam is None else "lam"
        trs_weight = renamed_argument("TRSODEN", "lam", "trs_weight", lam, trs_weight)
        ok = isinstance(trs_weight, (int, float)) and not isinstance(trs_weight, bool)
        if not (ok and math.isfinite(trs_weight) and trs_weight >= 0):
            raise ValueError(
                f"TRSODEN: {weight_name} must be a finite number >= 0, got {trs_weight!r}"
            )
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"TRSODEN: lr must be > 0, got {lr!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"TRSODEN: optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}"
            )
        if num_plot is not None and int(num_plot) < 0:
            raise ValueError(f"TRSODEN: num_plot must be >= 0, got {num_plot!r}")
        if reversal is not None and not isinstance(reversal, Reversal):
            raise TypeError(f"TRSODEN: reversal must be a Reversal, got {type(reversal)}")
        # modules are not hyper-parameters; an integrator *name* is (load_from_checkpoint)
        ignore = ["vector_field", "reversal", "lam"]
        ignore += [] if isinstance(integrator, str) else ["integrator"]
        ignore += [k for k, v in (("num_plot", num_plot), ("lyapunov", lyapunov)) if v is None]
        self.save_hyperparameters(ignore=ignore)
        self.vector_field = vector_field
        self.integrator = make_integrator(integrator)
        self.trs_weight = float(trs_weight)
        self.time_weighted = bool(time_weighted)
        self.reversal = reversal
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.optimizer_name = optimizer
        self.batched_rollout = bool(batched_rollout)
        self.compile_field = bool(compile_field)
        self._plots = _deprecated_plots(num_plot, lyapunov)
        # the torch.compile'd field, kept out of the module tree (a registered alias would put
        # the weights twice into every state_dict and checkpoint)
        self.__dict__["_compiled_field"] = None
        self._state_dim: int | None = None
        self._checked: set[str] = set()
        self.test_metrics = RolloutMetrics()

    @property
    def lam(self) -> float:
        """Deprecated alias of :attr:`trs_weight`."""
        warnings.warn("TRSODEN.lam is deprecated; use trs_weight", FutureWarning, stacklevel=2)
        return self.trs_weight

    # ------------------------------------------------------------------ set-up and validation
    def _data(self) -> DataInfo | None:
        return trajectory_data(self._trainer)

    @override
    def setup(self, stage: str) -> None:
        data = self._data()
        state_dim = (data.state_dim if data is not None else None) or getattr(
            self.vector_field, "state_dim", None
        )
        if state_dim:
            self._resolve(int(state_dim))
        if self.compile_field and self._compiled_field is None:
            self.__dict__["_compiled_field"] = torch.compile(self.vector_field)

    def check_data(self, datamodule: Any) -> None:
        """Check the field, ``R`` and the integrator against ``datamodule``'s state dimension
        before any ``Trainer`` runs; :meth:`setup` applies the same checks.

        ``pl-pac-trs`` calls this before it creates a run directory or a W&B run, so a
        mismatch costs nothing on disk. The model is not changed. A datamodule that does not
        declare its dimensions (:class:`~pl_pac_trs.trs.TrajectoryData`) is checked at setup.

        Raises:
            ValueError: the field's ``state_dim``, ``R``'s length or a leapfrog split disagrees
                with the data, or the field does not map ``(B, D)`` to ``(B, D)``.
        """
        if not isinstance(datamodule, TrajectoryData):
            return
        data = trajectory_data(SimpleNamespace(datamodule=datamodule))
        if data is None or not data.state_dim:
            return
        if self._state_dim is not None and self._state_dim != data.state_dim:
            raise ValueError(
                f"TRSODEN: data has state dimension {data.state_dim} but the model was set up "
                f"for {self._state_dim}"
            )
        sources = (data, self.vector_field, self.integrator)
        position_dim = next((int(v) for s in sources if (v := getattr(s, "position_dim", 0))), None)
        check_model(
            self.vector_field,
            copy.deepcopy(self.integrator),  # check_model may fill in a leapfrog's split
            self.reversal,
            int(data.state_dim),
            position_dim,
            needs_reversal=self.trs_weight > 0,
        )

    @override
    def configure_callbacks(self) -> list[pl.Callback]:
        """The :class:`TrajectoryPlots` of the deprecated ``num_plot`` / ``lyapunov``, if any."""
        return [] if self._plots is None else [self._plots]

    @property
    def _field(self) -> nn.Module:
        """The field the rollouts call: ``vector_field``, or its compiled wrapper."""
        compiled = self.__dict__.get("_compiled_field")
        return self.vector_field if compiled is None else compiled

    @property
    def position_dim(self) -> int | None:
        """The number of position coordinates: the datamodule's, else the field's, else the
        integrator's (``None``: unknown)."""
        for source in (self._data(), self.vector_field, self.integrator):
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
        self.reversal = check_model(
            self.vector_field,
            self.integrator,
            self.reversal,
            state_dim,
            self.position_dim,
            needs_reversal=self.trs_weight > 0,
            device=self.device,
        )
        self._state_dim = state_dim

    def _unpack(self, batch: dict[str, Tensor], stage: str) -> tuple[Tensor, Tensor, Tensor]:
        """``(x0, t, y)``, the batch checked (and the model resolved) on a stage's first one."""
        x0, t, y = unpack_batch(batch, stage, check=stage not in self._checked)
        if stage not in self._checked:
            self._resolve(x0.shape[1])
            self._checked.add(stage)
        return x0, t, y

    # ------------------------------------------------------------------ computation
    @override
    def forward(self, x0: Tensor, t: Tensor) -> Tensor:
        """Roll out from ``x0`` ``(B, D)`` along ``t`` ``(B, S + 1)``; returns ``(B, S, D)``."""
        return self.integrator(self._field, x0, t)

    def loss(self, batch: dict[str, Tensor], compute_trs: bool | None = None) -> TRSLoss:
        """``L_ODE + trs_weight L_TRS`` of a batch (see :func:`~pl_pac_trs.trs.trs_loss`)."""
        x0, t, y = batch["x0"], batch["t"], batch["y"]
        return trs_loss(
            self._field,
            self.integrator,
            x0,
            t,
            y,
            self.reversal,
            trs_weight=self.trs_weight,
            time_weighted=self.time_weighted,
            batched=self.batched_rollout,
            compute_trs=compute_trs,
        )

    @override
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._unpack(batch, "train")
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
        Each ``self.log`` costs Lightning bookkeeping, a sizeable share of a full-batch epoch
        (docs/trs.md, "Performance"), so the steps whose values Lightning would not send skip it."""
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

    @override
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._unpack(batch, "val")
        with rollout_mode():
            batch = {k: v.clone() for k, v in batch.items()}
            out = self.loss(batch, compute_trs=self.reversal is not None)
        bs = batch["x0"].shape[0]
        self.log("val/loss", out.total, prog_bar=True, batch_size=bs, sync_dist=True)
        self.log("val/ode", out.ode, batch_size=bs, sync_dist=True)
        if out.trs is not None:
            self.log("val/trs", out.trs, batch_size=bs, sync_dist=True)

    def rollout(self, x0: Tensor, t: Tensor) -> Tensor:
        """Test-time rollout without gradients (works for Hamiltonian fields too)."""
        with rollout_mode():
            return self.integrator(self._field, x0.clone(), t.clone())

    # ------------------------------------------------------------------ checkpoints
    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Stores what ``setup`` resolved from the data (R, leapfrog's split), for reloading."""
        position_dim = getattr(self.integrator, "position_dim", None)
        checkpoint["trs_resolved"] = {
            "reversal_signs": None if self.reversal is None else self.reversal.signs.tolist(),
            "position_dim": position_dim,
        }

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        resolved = checkpoint.get("trs_resolved") or {}
        if self.reversal is None and resolved.get("reversal_signs"):
            self.reversal = Reversal(resolved["reversal_signs"]).to(self.device)
        position_dim = resolved.get("position_dim")
        if isinstance(self.integrator, Leapfrog) and self.integrator.position_dim is None:
            self.integrator.position_dim = position_dim

    # ------------------------------------------------------------------ test
    @override
    def on_test_start(self) -> None:
        # rebuilt for every test run: the model may be tested on another system (e.g. the
        # source task after PAC-Net calibration), whose energy and bodies differ
        data = self._data()
        energy, bodies = (data.energy, data.bodies) if data is not None else (None, None)
        self.test_metrics = RolloutMetrics(energy, bodies).to(self.device)

    @override
    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Updates the test metrics; returns the rollout ``(B, S, D)`` (for callbacks)."""
        x0, t, y = self._unpack(batch, "test")
        pred = self.rollout(x0, t)
        # repeated trajectories (DDP sampler padding) count once
        self.test_metrics.update(pred, y.clone(), batch.get("index"))
        return pred

    @override
    def on_test_epoch_end(self) -> None:
        results = {k: v.to(self.device) for k, v in self.test_metrics.compute().items()}
        self.test_metrics.reset()
        self.log_dict(results, sync_dist=True)
        if self.trainer.is_global_zero:
            rank_zero_info(
                "TRSODEN test (x1e2): "
                + ", ".join(f"{k}={float(v):.4g}" for k, v in results.items())
            )

    # ------------------------------------------------------------------ predict / optim
    @override
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        x0, t, _ = self._unpack(batch, "predict")
        return self.rollout(x0, t)

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return make_optimizer(
            self.optimizer_name,
            self.vector_field.parameters(),
            lr=self.lr,
            weight_decay=self.weight_decay,
        )


def _deprecated_plots(num_plot: int | None, lyapunov: bool | None) -> TrajectoryPlots | None:
    """The callback the deprecated ``TRSODEN(num_plot=..., lyapunov=...)`` stands for."""
    if num_plot is None and lyapunov is None:
        return None
    warnings.warn(
        "TRSODEN: num_plot and lyapunov are deprecated and will be removed in the next release; "
        "add the callback pl_pac_trs.trs.TrajectoryPlots(num_plot=..., lyapunov=...) to the "
        "trainer instead",
        FutureWarning,
        stacklevel=3,
    )
    num = 3 if num_plot is None else int(num_plot)  # the former default
    return TrajectoryPlots(num, bool(lyapunov)) if num > 0 else None
