"""Task ``LightningModule``s: an MLP regressor and two CNN classifiers (PAC-Net tasks)."""

from pl_pac_trs.models.base import TaskModule
from pl_pac_trs.models.classification import SmallCNN
from pl_pac_trs.models.regression import MLPRegressor
from pl_pac_trs.models.resnet import ResNetClassifier

__all__ = ["MLPRegressor", "ResNetClassifier", "SmallCNN", "TaskModule"]
