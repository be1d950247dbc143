"""``TRSODEN``: a LightningModule training a neural ODE with the time-reversal symmetric loss.

``trs_weight = 0`` gives the ODEN (MLP field) or HODEN (Hamiltonian field) baselines,
``trs_weight > 0`` the TRS-ODEN / TRS-HODEN, so every condition of the reference experiments is
one config. Figures of the test rollouts: the :class:`~pl_pac_trs.trs.TrajectoryPlots` callback.
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from typing_extensions import override

from pl_pac_trs.metrics import RolloutMetrics
from pl_pac_trs.trs.data_contract import (
    DataInfo,
    TrajectoryData,
    trajectory_data,
    unpack_batch,
    unpack_start,
)
from pl_pac_trs.trs.integrator_names import make_integrator
from pl_pac_trs.trs.integrators import Integrator, Leapfrog
from pl_pac_trs.trs.loss import TRSLoss, trs_loss
from pl_pac_trs.trs.model_checks import check_model, rollout_mode
from pl_pac_trs.trs.optim import default_optimizer
from pl_pac_trs.trs.reversal import Reversal
from pl_pac_trs.trs.specs import component_spec

__all__ = ["TRSODEN"]

#: The constructor arguments saved as ``class_path`` specs (:meth:`TRSODEN._save_components`).
_COMPONENTS = ("vector_field", "integrator", "reversal", "optimizer", "lr_scheduler")
#: How Lightning rebuilds a module from specs (LightningCLI writes the same into its checkpoints).
_INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"
#: Trainer precisions refused: the time grids would be cast to half precision.
_HALF_TRUE = ("bf16-true", "16-true", "bf16", "16", "half")


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
        optimizer: ``parameters -> optimizer`` (LightningCLI's ``OptimizerCallable``): a
            class such as ``torch.optim.SGD``, ``functools.partial(torch.optim.Adam, lr=1e-3)``,
            or :class:`~pl_pac_trs.trs.KerasAdam` (the reference code's legacy Keras Adam; the
            exp V reproduction configs use it). Default: :func:`~pl_pac_trs.trs.default_optimizer`
            (Adam, lr 2e-4, the reference's).
        lr_scheduler: ``optimizer -> scheduler`` (``LRSchedulerCallable``), stepped every
            epoch; ``None``: a constant learning rate.
        batched_rollout: forward and backward rollouts in one integrator call (default) or two.
        predict_backward: :meth:`predict_step` also returns the backward rollout from ``R x0``.

    Every argument is saved as a hyper-parameter, the components as ``class_path`` specs, so
    ``TRSODEN.load_from_checkpoint(path)`` rebuilds the module from a checkpoint alone (a field
    of your own: when it saves its arguments, e.g. by mixing in Lightning's
    ``HyperparametersMixin`` and calling ``self.save_hyperparameters()``; otherwise pass it:
    ``load_from_checkpoint(path, vector_field=...)``).

    Precision: every Lightning precision except the half-precision ``*-true`` ones (the time
    grids would lose their steps; refused at set-up). Under ``bf16-mixed`` / ``16-mixed`` the
    fields leave their fused kernels for the plain autograd path, which autocast handles.

    Raises:
        TypeError: ``vector_field`` is not a module, ``reversal`` not a :class:`Reversal`, or
            ``optimizer`` / ``lr_scheduler`` not callable.
        ValueError: ``trs_weight`` negative or not finite, an unknown ``integrator``.

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
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        batched_rollout: bool = True,
        predict_backward: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(vector_field, nn.Module):
            raise TypeError(
                f"TRSODEN: vector_field must be an nn.Module f(t, x), got {type(vector_field)}"
            )
        ok = isinstance(trs_weight, (int, float)) and not isinstance(trs_weight, bool)
        if not (ok and math.isfinite(trs_weight) and trs_weight >= 0):
            raise ValueError(
                f"TRSODEN: trs_weight must be a finite number >= 0, got {trs_weight!r}"
            )
        for name, value in (("optimizer", optimizer), ("lr_scheduler", lr_scheduler)):
            if value is not None and not callable(value):
                raise TypeError(
                    f"TRSODEN: {name} must be a callable (e.g. a torch.optim class), got "
                    f"{type(value).__name__}"
                )
        if reversal is not None and not isinstance(reversal, Reversal):
            raise TypeError(f"TRSODEN: reversal must be a Reversal, got {type(reversal)}")
        self._save_components()
        self.vector_field = vector_field
        self.integrator = make_integrator(integrator)
        self.trs_weight = float(trs_weight)
        self.time_weighted = bool(time_weighted)
        self.reversal = reversal
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.batched_rollout = bool(batched_rollout)
        self.predict_backward = bool(predict_backward)
        self._state_dim: int | None = None
        self._checked: set[str] = set()
        self.test_metrics = RolloutMetrics()

    def _save_components(self) -> None:
        """Saves the constructor arguments as hyper-parameters, the components (field,
        integrator, R, optimizer, scheduler) as ``class_path`` specs
        (:func:`~pl_pac_trs.trs.specs.component_spec`; the form LightningCLI writes), so that
        ``load_from_checkpoint(path)`` rebuilds the module alone. A component without a spec
        (e.g. a field that keeps no record of its arguments) is left out: it must then be passed
        to ``load_from_checkpoint``."""
        frame = inspect.currentframe()
        with warnings.catch_warnings():
            # the field is replaced by its spec right below
            warnings.filterwarnings("ignore", message=r".*is an instance of `nn.Module`")
            self.save_hyperparameters(frame=frame.f_back if frame is not None else None)
        hparams = self.hparams
        # a setting of the predict run, not of the model: not restored from a checkpoint (where
        # it would override the command line's --model.predict_backward)
        hparams.pop("predict_backward", None)
        specs = False
        for key in _COMPONENTS:
            if key not in hparams:
                continue
            spec = hparams[key] if isinstance(hparams[key], dict) else component_spec(hparams[key])
            if spec is None and hparams[key] is not None:
                del hparams[key]
                continue
            hparams[key] = spec
            named = key == "integrator" and isinstance(spec, str)  # a name, not an import path
            specs = specs or (spec is not None and not named)
        if specs:  # the specs are instantiated as LightningCLI does (a checkpoint of the CLI's)
            hparams.setdefault("_instantiator", _INSTANTIATOR)
            hparams.setdefault("_class_path", component_spec(type(self)))
        self.save_hyperparameters(dict(hparams))

    # ------------------------------------------------------------------ set-up and validation
    def _data(self) -> DataInfo | None:
        return trajectory_data(self._trainer)

    @override
    def setup(self, stage: str) -> None:
        data = self._data()
        state_dim = (data.state_dim if data is not None else None) or getattr(
            self.vector_field, "state_dim", None
        )
        precision = str(getattr(self._trainer, "precision", "32-true"))
        if precision in _HALF_TRUE:
            raise ValueError(
                f"TRSODEN: precision={precision!r} is not supported: half-precision time grids "
                "cannot hold the steps (t = 20 is 0.125 from its bf16 neighbours); use "
                "'bf16-mixed' or '16-mixed' (autocast keeps the states and times in float32)"
            )
        if state_dim:
            self._resolve(int(state_dim))

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
        return self.integrator(self.vector_field, x0, t)

    def loss(self, batch: dict[str, Tensor], compute_trs: bool | None = None) -> TRSLoss:
        """``L_ODE + trs_weight L_TRS`` of a batch (see :func:`~pl_pac_trs.trs.trs_loss`)."""
        x0, t, y = batch["x0"], batch["t"], batch["y"]
        return trs_loss(
            self.vector_field,
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
            return self.integrator(self.vector_field, x0.clone(), t.clone())

    # ------------------------------------------------------------------ checkpoints
    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Stores what ``setup`` resolved from the data (R, leapfrog's split), for reloading."""
        position_dim = getattr(self.integrator, "position_dim", None)
        checkpoint["trs_resolved"] = {
            "reversal": None if self.reversal is None else self.reversal.arguments(),
            "position_dim": position_dim,
        }

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        resolved = checkpoint.get("trs_resolved") or {}
        if self.reversal is None and resolved.get("reversal"):
            self.reversal = Reversal(**resolved["reversal"]).to(self.device)
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
    def predict_step(
        self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Tensor]:
        """Rollouts of a predict batch (``{"x0", "t"}``; a ``"y"`` is not needed).

        Returns:
            ``{"x0", "t", "forward"}``: the start states ``(B, D)``, the grids ``(B, S + 1)``
            and the rollout at ``t[:, 1:]``, ``(B, S, D)``; with ``predict_backward`` also
            ``"backward"``: the rollout from ``R x0`` along ``-t`` (the TRS loss's backward
            rollout, at times ``-t[:, 1:]``). :class:`~pl_pac_trs.trs.RolloutWriter` writes
            them to a file.
        """
        x0, t = unpack_start(batch, "predict", check="predict" not in self._checked)
        if "predict" not in self._checked:
            self._resolve(x0.shape[1])
            self._checked.add("predict")
        out = {"x0": x0, "t": t, "forward": self.rollout(x0, t)}
        if self.predict_backward:
            if self.reversal is None:
                raise ValueError(
                    "TRSODEN: predict_backward=True needs a reversing operator: pass "
                    "reversal=Reversal([...]) or use a datamodule with position_dim"
                )
            out["backward"] = self.rollout(self.reversal(x0), -t)
        return out

    @override
    def configure_optimizers(self) -> Any:
        """``optimizer(parameters)`` and, when given, ``lr_scheduler(optimizer)`` (stepped once
        per epoch; a plateau scheduler monitors its ``monitor`` attribute, else ``val/loss``)."""
        optimizer = self.optimizer(self.vector_field.parameters())
        if self.lr_scheduler is None:
            return optimizer
        scheduler = self.lr_scheduler(optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = getattr(scheduler, "monitor", "val/loss")
        return {"optimizer": optimizer, "lr_scheduler": config}
