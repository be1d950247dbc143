import pytest
import torch
from lightning.pytorch import Trainer

from pl_pac_trs.data.digits import DigitsTransferDataModule
from pl_pac_trs.data.friedman import FriedmanTransferDataModule
from pl_pac_trs.models import MLPRegressor, SmallCNN


def _trainer(**kw):
    return Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kw,
    )


def test_mlp_learns_friedman():
    torch.manual_seed(0)
    dm = FriedmanTransferDataModule(n_source=500, n_val=100, n_test=200, batch_size=32)
    model = MLPRegressor(hidden=(32, 32), lr=3e-3)
    before = _trainer().test(model, dm, verbose=False)[0]["test/mse"]
    _trainer(max_epochs=8).fit(model, dm)
    after = _trainer().test(model, dm, verbose=False)[0]["test/mse"]
    assert after < 0.5 * before


def test_cnn_learns_digits_and_accepts_other_head_size():
    torch.manual_seed(0)
    dm = DigitsTransferDataModule("source", source_classes=(0, 1, 2))
    model = SmallCNN(num_classes=3, channels=(8, 16), lr=1e-2)
    _trainer(max_epochs=6).fit(model, dm)
    acc = _trainer().test(model, dm, verbose=False)[0]["test/acc"]
    assert acc > 0.8
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        MLPRegressor(optimizer="lbfgs")
    with pytest.raises(ValueError, match="hidden"):
        MLPRegressor(hidden=())
    with pytest.raises(ValueError, match="num_classes"):
        SmallCNN(num_classes=1)
    with pytest.raises(ValueError, match=r"fused=True .* optimizer='rmsprop'"):
        MLPRegressor(optimizer="rmsprop", fused=True)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_fused_optimizer_flag(name):
    """``fused=True`` reaches the optimiser; the default stays the non-fused implementation."""
    fused = MLPRegressor(optimizer=name, fused=True).configure_optimizers()
    plain = MLPRegressor(optimizer=name).configure_optimizers()
    assert fused.defaults["fused"] is True
    assert not plain.defaults.get("fused")
    assert type(fused) is type(plain)
