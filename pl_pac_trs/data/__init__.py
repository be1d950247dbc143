"""data subpackage."""

# Trajectory datamodules (TRS-ODEN).
from pl_pac_trs.data.attractor import StrangeAttractorDataModule
from pl_pac_trs.data.datamodule import TrajectoryDataModule
from pl_pac_trs.data.double_oscillator import DoubleOscillatorDataModule
from pl_pac_trs.data.duffing import DuffingDataModule
from pl_pac_trs.data.generated import GeneratedTrajectoryDataModule
from pl_pac_trs.data.systems import ODESystemDataModule
from pl_pac_trs.data.trajectory_file import TrajectoryFileDataModule

# What the datamodules' training loaders are made of.
from pl_pac_trs.data.full_batch import FullBatchLoader  # isort: skip
from pl_pac_trs.data.sampling import EpochSeededSampler  # isort: skip

__all__ = [
    "DoubleOscillatorDataModule",
    "DuffingDataModule",
    "EpochSeededSampler",
    "FullBatchLoader",
    "GeneratedTrajectoryDataModule",
    "ODESystemDataModule",
    "StrangeAttractorDataModule",
    "TrajectoryDataModule",
    "TrajectoryFileDataModule",
]

# Transfer-task datamodules (PAC-Net).
from pl_pac_trs.data.digits import DigitsTransferDataModule
from pl_pac_trs.data.friedman import FriedmanTransferDataModule
from pl_pac_trs.data.transfer import TransferDataModule

__all__ += ["DigitsTransferDataModule", "FriedmanTransferDataModule", "TransferDataModule"]
