"""Task ``LightningModule``s: an MLP regressor and a small CNN classifier (PAC-Net tasks)."""

from pl_pac_trs.models.base import TaskModule
from pl_pac_trs.models.classification import SmallCNN
from pl_pac_trs.models.regression import MLPRegressor

__all__ = ["MLPRegressor", "SmallCNN", "TaskModule"]
