"""Tiny models, data and trainers shared by the PAC tests (imported as a module, not a test)."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, weight_decay=0.01),
    "rmsprop_centered": lambda p: torch.optim.RMSprop(p, lr=0.01, centered=True, momentum=0.5),
    "adam_amsgrad": lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True, weight_decay=0.01),
    "nadam": lambda p: torch.optim.NAdam(p, lr=0.01, weight_decay=0.01),
    "radam": lambda p: torch.optim.RAdam(p, lr=0.01, decoupled_weight_decay=True, weight_decay=0.1),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.05, weight_decay=0.01),
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    # one fused kernel per tensor (CPU support since torch 2.4)
    "adamw_fused": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1, fused=True),
    "adam_fused": lambda p: torch.optim.Adam(p, lr=0.01, fused=True),
}


class TinyNet(LightningModule):
    """MLP ``in -> hidden (-> BN) -> ... -> head``, configurable optimizer."""

    def __init__(
        self,
        in_features: int = 5,
        hidden: tuple[int, ...] = (8,),
        out_features: int = 1,
        batch_norm: bool = False,
        optimizer: str = "adam",
        manual: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.Tanh())
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_features)
        self.optimizer_name = optimizer
        self.automatic_optimization = not manual

    def forward(self, x):
        return self.head(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        if not self.automatic_optimization:
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        return loss

    def configure_optimizers(self):
        return OPTIMIZERS[self.optimizer_name](self.parameters())


class TinyData(LightningDataModule):
    def __init__(self, in_features: int = 5, out_features: int = 1, n: int = 48, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, in_features, generator=g)
        self.y = torch.sin(self.x[:, :out_features] * 2) + 0.1 * torch.randn(
            n, out_features, generator=g
        )

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=8, shuffle=False)


def trainer(tmp_path=None, **kwargs) -> Trainer:
    defaults = dict(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        max_epochs=2,
        default_root_dir=str(tmp_path) if tmp_path is not None else None,
    )
    defaults.update(kwargs)
    return Trainer(**defaults)
