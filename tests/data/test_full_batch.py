"""FullBatchLoader: a full batch in one process is the stored set, fresh each epoch; anything
else (minibatches, workers, DDP) stays a shuffling DataLoader."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pl_pac_trs.data import TrajectoryDataModule
from pl_pac_trs.data.full_batch import FullBatchLoader
from pl_pac_trs.data.sampling import EpochSeededSampler
from pl_pac_trs.trs import Leapfrog, ODENField, Reversal, trs_loss


class Spiral(TrajectoryDataModule):
    state_dim, position_dim = 2, 1

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def load_splits(self, write_cache=False):
        t = np.linspace(0.0, 6.0, 61)

        def traj(a):
            return t, np.stack([np.cos(a + t), -np.sin(a + t)], axis=1) * np.exp(-0.1 * t)[:, None]

        return {
            "train": [traj(a) for a in (0.0, 0.5, 1.0)],
            "val": [traj(2.0)],
            "test": [traj(3.0), traj(4.0)],
        }


def _dm(**kwargs):
    dm = Spiral(time_horizon=10, **kwargs)
    dm.setup()
    return dm


def test_a_full_batch_is_the_stored_set_in_order_fresh_each_epoch():
    dm = _dm()
    loader = dm.train_dataloader()
    assert isinstance(loader, FullBatchLoader) and len(loader) == 1
    data = dm.train_dataset.data
    (first,) = list(loader)
    assert first.keys() == data.keys()
    assert all(torch.equal(first[k], data[k]) for k in data)
    first["y"].mul_(0.0)  # a hook editing its batch in place ...
    (second,) = list(loader)  # ... does not reach the next epoch, nor the dataset
    assert all(torch.equal(second[k], data[k]) for k in data)
    assert second["y"].abs().sum() > 0
    assert isinstance(dm.val_dataloader(), FullBatchLoader)
    test = next(iter(dm.test_dataloader()))
    assert test["index"].tolist() == [0, 1]


def test_the_full_batch_loss_is_the_shuffled_batch_loss():
    # a permutation of the one batch only reorders its rows: the mean loss and its gradient agree
    dm = _dm()
    (batch,) = list(dm.train_dataloader())
    shuffled = DataLoader(
        dm.train_dataset,
        batch_size=len(dm.train_dataset),
        sampler=EpochSeededSampler(dm.train_dataset, seed=5),
        collate_fn=lambda items: items,
    )
    (permuted,) = list(shuffled)
    order = torch.as_tensor(list(shuffled.sampler))
    assert not torch.equal(order, torch.arange(len(order)))
    torch.manual_seed(0)
    field = ODENField(2, (16,)).double()
    grads = []
    for b in (batch, permuted):
        b = {k: v.double() for k, v in b.items()}
        field.zero_grad()
        out = trs_loss(
            field, Leapfrog(), b["x0"], b["t"], b["y"], Reversal.momentum_flip(2, 1), 1.0
        )
        out.total.backward()
        grads.append((out.total.detach(), [p.grad.clone() for p in field.parameters()]))
    (la, ga), (lb, gb) = grads
    torch.testing.assert_close(la, lb, rtol=1e-12, atol=0)
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    ("kwargs", "trainer"),
    [
        ({"batch_size": 4}, None),  # minibatches: shuffled per epoch
        ({"num_workers": 1}, None),  # worker processes load through a DataLoader
        ({}, SimpleNamespace(world_size=2)),  # DDP: Lightning deals the rows out to the ranks
    ],
    ids=["minibatches", "workers", "ddp"],
)
def test_anything_but_one_local_full_batch_stays_a_shuffling_dataloader(kwargs, trainer):
    dm = _dm(**kwargs)
    dm.trainer = trainer
    loader = dm.train_dataloader()
    assert isinstance(loader, DataLoader) and isinstance(loader.sampler, EpochSeededSampler)


def test_a_batch_size_covering_the_set_is_a_full_batch():
    dm = _dm(batch_size=1000)
    assert isinstance(dm.train_dataloader(), FullBatchLoader)
    dm.trainer = SimpleNamespace(world_size=1)
    assert isinstance(dm.train_dataloader(), FullBatchLoader)


def test_an_empty_set_has_no_batch():
    from pl_pac_trs.data.windows import BatchDictDataset, collate_batch

    assert list(FullBatchLoader(BatchDictDataset([]), collate_batch)) == []
    assert len(FullBatchLoader(BatchDictDataset([]), collate_batch)) == 0
