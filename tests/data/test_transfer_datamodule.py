"""TransferDataModule: task and batch-size checks, capped and epoch-seeded training batches."""

import pytest
import torch
from torch.utils.data import TensorDataset

from pl_pac_trs.data.sampling import EpochSeededSampler
from pl_pac_trs.data.transfer import TransferDataModule


class Ramp(TransferDataModule):
    def setup(self, stage=None):
        x = torch.arange(1000.0)[:, None]
        self.sets = {
            "train": TensorDataset(x[:40]),
            "val": TensorDataset(x),
            "test": TensorDataset(x[:3]),
        }


def test_loaders():
    dm = Ramp("target", batch_size=16)
    dm.setup()
    train = dm.train_dataloader()
    assert isinstance(train.sampler, EpochSeededSampler)
    assert [len(b[0]) for b in train] == [16, 16, 8]
    assert sorted(torch.cat([b[0] for b in train]).flatten().tolist()) == list(range(40))
    assert [len(b[0]) for b in dm.val_dataloader()] == [512, 488]
    assert [len(b[0]) for b in dm.test_dataloader()] == [3]
    capped = Ramp("source", batch_size=64)
    capped.setup()
    assert [len(b[0]) for b in capped.train_dataloader()] == [40]


def test_errors():
    with pytest.raises(ValueError, match="task must be 'source' or 'target', got 'other'"):
        Ramp("other")
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        Ramp(batch_size=0)
