"""Epoch-seeded shuffling: a resumed fit sees the batches of the uninterrupted one."""

from __future__ import annotations

import torch
from lightning.pytorch import seed_everything

from pl_pac_trs.data import DuffingDataModule
from pl_pac_trs.data.friedman import FriedmanTransferDataModule
from pl_pac_trs.data.sampling import EpochSeededSampler


def test_permutation_depends_on_seed_and_epoch_only():
    a, b = EpochSeededSampler(range(50), seed=7), EpochSeededSampler(range(50), seed=7)
    torch.manual_seed(123)  # the global RNG plays no part
    orders = []
    for epoch in (0, 1, 2):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        first = list(a)
        torch.rand(10)
        assert list(a) == first == list(b)
        assert sorted(first) == list(range(50)) and len(a) == 50
        orders.append(first)
    assert orders[0] != orders[1] != orders[2]
    c = EpochSeededSampler(range(50), seed=8)
    assert list(c) != orders[0]


def test_default_seed_is_the_runs_seed():
    seed_everything(11)
    assert EpochSeededSampler(range(3)).seed == 11


def test_datamodules_shuffle_with_it(tmp_path):
    seed_everything(3)
    friedman = FriedmanTransferDataModule(task="source", n_source=100, batch_size=16)
    friedman.setup("fit")
    # minibatches: a full batch needs no shuffle (FullBatchLoader, tests/data/test_full_batch.py)
    duffing = DuffingDataModule(
        alpha=1.0, num_train=4, num_test=2, batch_size=8, cache_dir=tmp_path
    )
    duffing.prepare_data()
    duffing.setup("fit")
    for dm in (friedman, duffing):
        loader = dm.train_dataloader()
        assert isinstance(loader.sampler, EpochSeededSampler) and loader.sampler.seed == 3
        loader.sampler.set_epoch(5)
        again = dm.train_dataloader()
        again.sampler.set_epoch(5)
        for x, y in zip(loader, again, strict=True):
            first = x[0] if isinstance(x, (list, tuple)) else next(iter(x.values()))
            second = y[0] if isinstance(y, (list, tuple)) else next(iter(y.values()))
            assert torch.equal(first, second)
