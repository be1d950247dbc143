"""A user's own LightningModule / DataModule, imported by class_path from outside the package."""

import os
import signal

import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule
from torch.utils.data import DataLoader, TensorDataset


class TinyRegressor(LightningModule):
    def __init__(self, in_features: int = 4, lr: float = 0.05) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"TinyRegressor: lr must be > 0, got {lr}")
        self.save_hyperparameters()
        self.net = torch.nn.Linear(in_features, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.net(x), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class TinyData(LightningDataModule):
    def __init__(self, n: int = 64, in_features: int = 4, batch_size: int = 16) -> None:
        super().__init__()
        self.n, self.in_features, self.batch_size = n, in_features, batch_size

    def setup(self, stage: str) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(self.n, self.in_features, generator=g)
        y = x.sum(dim=1, keepdim=True)
        self.dataset = TensorDataset(x, y)

    def train_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size)

    def val_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size)


class KillAtEpoch(Callback):
    """Kills its own process (SIGKILL, as an out-of-memory killer or a pre-empted job would) at
    the end of training epoch ``epoch`` (1-based), before any checkpoint of that epoch."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
