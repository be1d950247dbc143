"""TRS-ODEN: time-reversal symmetric neural ODEs (fields, integrators, reversal, loss, module)."""

from pl_pac_trs.trs.fields import DEFAULT_INIT, INITS, HODENField, ODENField, init_linear, mlp
from pl_pac_trs.trs.integrators import (
    RK4,
    Euler,
    Integrator,
    Leapfrog,
    TorchDiffEq,
    make_integrator,
)
from pl_pac_trs.trs.loss import TRSLoss, paired_rollout, trs_loss, trs_terms
from pl_pac_trs.trs.module import TRSODEN
from pl_pac_trs.trs.optim import OPTIMIZERS, KerasAdam, make_optimizer
from pl_pac_trs.trs.reversal import Reversal

__all__ = [
    "DEFAULT_INIT",
    "INITS",
    "OPTIMIZERS",
    "RK4",
    "TRSODEN",
    "Euler",
    "HODENField",
    "Integrator",
    "KerasAdam",
    "Leapfrog",
    "ODENField",
    "Reversal",
    "TRSLoss",
    "TorchDiffEq",
    "init_linear",
    "make_integrator",
    "make_optimizer",
    "mlp",
    "paired_rollout",
    "trs_loss",
    "trs_terms",
]
