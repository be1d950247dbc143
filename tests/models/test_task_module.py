"""TaskModule: optimiser set-up, forward through body and head, logged values and names."""

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, TensorDataset

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


def _loader(x, y, batch_size):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def test_logged_test_values_are_the_metrics_over_all_batches():
    """A regressor whose head outputs its bias: test/mse is the mean over every sample."""
    model = MLPRegressor(in_features=2, hidden=(3,))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(1.0)
    y = torch.tensor([[0.0], [1.0], [3.0], [5.0], [-1.0]])
    result = _trainer().test(model, _loader(torch.zeros(5, 2), y, 2), verbose=False)[0]
    assert result == {"test/mse": pytest.approx((1 + 0 + 4 + 16 + 4) / 5)}


def test_classifier_logs_accuracy_and_loss():
    model = SmallCNN(num_classes=2, channels=(2,))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 1.0]))  # always class 1
    y = torch.tensor([1, 1, 0, 1])
    result = _trainer().test(model, _loader(torch.zeros(4, 1, 8, 8), y, 3), verbose=False)[0]
    logits = torch.tensor([0.0, 1.0])
    loss = -torch.log_softmax(logits, 0)
    expected_loss = float((3 * loss[1] + loss[0]) / 4)
    assert result == {"test/acc": 0.75, "test/loss": pytest.approx(expected_loss)}


def test_training_step_logs_and_returns_the_loss():
    model = MLPRegressor(in_features=2, hidden=(3,), optimizer="sgd", lr=0.1)
    x, y = torch.randn(4, 2), torch.randn(4, 1)
    trainer = _trainer(max_epochs=1)
    before = torch.nn.functional.mse_loss(model(x), y).item()
    trainer.fit(model, _loader(x, y, 4))
    assert trainer.callback_metrics["train/loss"].item() == pytest.approx(before)


def test_bad_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        MLPRegressor(optimizer="lbfgs")
    with pytest.raises(ValueError, match="lr must be > 0"):
        SmallCNN(lr=0.0)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        MLPRegressor(weight_decay=-1.0)
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


def test_optimizer_settings_and_trainable_parameters_only():
    model = MLPRegressor(hidden=(4,), optimizer="sgd", lr=0.05, weight_decay=0.01)
    model.body.requires_grad_(False)
    optimizer = model.configure_optimizers()
    (group,) = optimizer.param_groups
    assert (group["lr"], group["weight_decay"], group["momentum"]) == (0.05, 0.01, 0.9)
    assert [p.shape for p in group["params"]] == [(1, 4), (1,)]
