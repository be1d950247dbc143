"""TRS-ODEN: time-reversal symmetric neural ODEs (fields, integrators, reversal, loss, module,
the data contract, the figures callback and the predictions writer)."""

from pl_pac_trs.trs.data_contract import DataInfo, TrajectoryData, trajectory_data, unpack_batch
from pl_pac_trs.trs.fields import DEFAULT_INIT, INITS, HODENField, ODENField, init_linear, mlp
from pl_pac_trs.trs.integrator_names import make_integrator
from pl_pac_trs.trs.integrators import (
    RK4,
    Euler,
    FixedGridIntegrator,
    Integrator,
    Leapfrog,
)
from pl_pac_trs.trs.loss import TRSLoss, paired_rollout, trs_loss, trs_terms
from pl_pac_trs.trs.module import TRSODEN
from pl_pac_trs.trs.optim import KerasAdam, default_optimizer
from pl_pac_trs.trs.prediction_writer import RolloutWriter
from pl_pac_trs.trs.reversal import Reversal
from pl_pac_trs.trs.torchdiffeq_integrator import TorchDiffEq
from pl_pac_trs.trs.vector_field import VectorField
from pl_pac_trs.trs.visualization import TrajectoryPlots, output_dir, reference_rollout

__all__ = [
    "DEFAULT_INIT",
    "INITS",
    "RK4",
    "TRSODEN",
    "DataInfo",
    "Euler",
    "FixedGridIntegrator",
    "HODENField",
    "Integrator",
    "KerasAdam",
    "Leapfrog",
    "ODENField",
    "Reversal",
    "RolloutWriter",
    "TRSLoss",
    "TorchDiffEq",
    "TrajectoryData",
    "TrajectoryPlots",
    "VectorField",
    "default_optimizer",
    "init_linear",
    "make_integrator",
    "mlp",
    "output_dir",
    "paired_rollout",
    "reference_rollout",
    "trajectory_data",
    "trs_loss",
    "trs_terms",
    "unpack_batch",
]
