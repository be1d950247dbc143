"""A tiny in-test trajectory datamodule yielding the TRS batch dicts (harmonic oscillator)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset


class _Dicts(Dataset):
    def __init__(self, x0, t, y):
        self.x0, self.t, self.y = x0, t, y

    def __len__(self):
        return self.x0.shape[0]

    def __getitem__(self, i):
        return {"x0": self.x0[i], "t": self.t[i], "y": self.y[i]}


def harmonic(n: int, steps: int, span: float, seed: int, start: float = 0.0, noise: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, 2, generator=g) * 2 - 1
    t = torch.linspace(start, start + span, steps + 1).expand(n, steps + 1).clone()
    tt = t[:, 1:] - start
    q = x0[:, :1] * torch.cos(tt) + x0[:, 1:] * torch.sin(tt)
    p = -x0[:, :1] * torch.sin(tt) + x0[:, 1:] * torch.cos(tt)
    y = torch.stack([q, p], dim=-1)
    return x0, t, y + noise * torch.randn(y.shape, generator=g)


class TinyHarmonicDataModule(pl.LightningDataModule):
    """Harmonic oscillator windows; attributes per the TRS contract."""

    name = "harmonic"
    state_dim = 2
    position_dim = 1
    bodies = None

    def __init__(self, num_train=16, num_test=4, horizon=5, test_steps=20, bad_time=False):
        super().__init__()
        self.train = _Dicts(*harmonic(num_train, horizon, 0.5, 0, start=0.3, noise=0.01))
        self.val = _Dicts(*harmonic(4, horizon, 0.5, 1))
        self.test = _Dicts(*harmonic(num_test, test_steps, 4.0, 2))
        if bad_time:
            self.train.t = self.train.t.flip(1).clone()

    def energy(self, x):
        return x[..., 0] ** 2 + x[..., 1] ** 2

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=8, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=4)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=len(self.test))

    def predict_dataloader(self):
        return self.test_dataloader()
