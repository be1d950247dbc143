"""MLPRegressor: the network's shape and learning the Friedman task."""

import pytest
import torch
from lightning.pytorch import Trainer

from pl_pac_trs.data.friedman import FriedmanTransferDataModule
from pl_pac_trs.models import MLPRegressor


def test_network_shape():
    model = MLPRegressor(in_features=3, hidden=(5, 4), out_features=2)
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(5, 3), (5,), (4, 5), (4,), (2, 4), (2,)]
    assert model(torch.zeros(7, 3)).shape == (7, 2)
    with pytest.raises(ValueError, match="hidden"):
        MLPRegressor(hidden=())


def test_mlp_learns_friedman():
    torch.manual_seed(0)
    dm = FriedmanTransferDataModule(n_source=500, n_val=100, n_test=200, batch_size=32)
    model = MLPRegressor(hidden=(32, 32), lr=3e-3)
    kw = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    before = Trainer(**kw).test(model, dm, verbose=False)[0]["test/mse"]
    Trainer(max_epochs=8, enable_model_summary=False, **kw).fit(model, dm)
    after = Trainer(**kw).test(model, dm, verbose=False)[0]["test/mse"]
    assert after < 0.5 * before
