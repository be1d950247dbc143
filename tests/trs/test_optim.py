"""KerasAdam: the reference code's legacy Keras / TF 1 Adam (``ApplyAdam``), and its use."""

import functools
import math

import numpy as np
import pytest
import torch
from quiet_trainer import quiet_trainer

from pl_pac_trs.trs import TRSODEN, HODENField, KerasAdam, ODENField


def _apply_adam(var, grads, lr, b1=0.9, b2=0.999, eps=1e-7):
    """TF's ApplyAdam kernel in NumPy float64: eps on the uncorrected sqrt(v)."""
    m, v = np.zeros_like(var), np.zeros_like(var)
    for t, g in enumerate(grads, start=1):
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        var = var - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return var


def test_first_step_puts_eps_on_the_uncorrected_second_moment():
    # g = 1e-6: m = 1e-7, v = 1e-15, sqrt(v) = 3.1623e-8; step size lr sqrt(1e-3) / 0.1
    # update = 0.1 * 0.316228 * 1e-7 / (3.1623e-8 + 1e-7) = 0.0240253 (torch's Adam: 0.0990099)
    p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = KerasAdam([p], lr=0.1)
    p.grad = torch.tensor([1e-6], dtype=torch.float64)
    opt.step()
    assert float(1.0 - p.item()) == pytest.approx(0.0240253, rel=1e-5)

    q = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    torch_adam = torch.optim.Adam([q], lr=0.1)
    q.grad = torch.tensor([1e-6], dtype=torch.float64)
    torch_adam.step()
    assert float(1.0 - q.item()) == pytest.approx(0.0990099, rel=1e-5)


def test_steps_equal_tf_apply_adam_for_tiny_and_large_gradients():
    rng = np.random.default_rng(0)
    scales = np.array([1e-8, 1e-7, 1e-6, 1e-4, 1.0])  # the exp V HODEN's are 1e-7 .. 1e-4
    grads = [rng.standard_normal(5) * scales for _ in range(30)]
    var0 = rng.standard_normal(5)
    expected = _apply_adam(var0, grads, lr=2e-4)
    p = torch.nn.Parameter(torch.tensor(var0))
    opt = KerasAdam([p], lr=2e-4)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=0, atol=1e-15)
    # torch's Adam moves the small-gradient coordinates much further (50x, 8.5x, 1.9x for
    # gradients of 1e-8, 1e-7, 1e-6), the large-gradient ones alike
    q = torch.nn.Parameter(torch.tensor(var0))
    torch_adam = torch.optim.Adam([q], lr=2e-4)
    for g in grads:
        q.grad = torch.tensor(g)
        torch_adam.step()
    ratio = np.abs(q.detach().numpy() - var0) / np.abs(expected - var0)
    np.testing.assert_allclose(ratio, [49.887, 8.4542, 1.8551, 0.93850, 1.0], rtol=1e-3)


def test_weight_decay_and_errors():
    p = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = KerasAdam([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.tensor([0.0], dtype=torch.float64)
    opt.step()  # g = 0.5 * 2 = 1: update 0.1 * sqrt(1e-3) / 0.1 * 0.1 / (sqrt(1e-3) + 1e-7)
    assert float(2.0 - p.item()) == pytest.approx(0.1 / (1 + 1e-7 / math.sqrt(1e-3)), rel=1e-9)
    for bad in ({"lr": 0.0}, {"eps": -1.0}, {"betas": (1.0, 0.9)}, {"weight_decay": -1.0}):
        with pytest.raises(ValueError):
            KerasAdam([p], **bad)


def test_trsoden_optimizer_and_scheduler_arguments():
    default = TRSODEN(ODENField(2, (4,))).configure_optimizers()
    assert type(default) is torch.optim.Adam and default.defaults["lr"] == 2e-4  # the reference's
    keras = functools.partial(KerasAdam, lr=2e-4, weight_decay=0.1)
    model = TRSODEN(HODENField(4, (4,)), optimizer=keras)
    opt = model.configure_optimizers()
    assert isinstance(opt, KerasAdam)
    assert opt.defaults["lr"] == 2e-4 and opt.defaults["eps"] == 1e-7
    assert opt.defaults["weight_decay"] == 0.1
    assert model.hparams.optimizer == {
        "class_path": "pl_pac_trs.trs.KerasAdam",
        "init_args": {"lr": 2e-4, "weight_decay": 0.1},
    }
    step = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=3, gamma=0.5)
    config = TRSODEN(ODENField(2, (4,)), optimizer=torch.optim.SGD, lr_scheduler=step)
    assert config.hparams.optimizer == "torch.optim.SGD"
    out = config.configure_optimizers()
    assert type(out["optimizer"]) is torch.optim.SGD
    assert type(out["lr_scheduler"]["scheduler"]) is torch.optim.lr_scheduler.StepLR
    assert out["lr_scheduler"]["interval"] == "epoch"
    plateau = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=2)
    out = TRSODEN(ODENField(2, (4,)), lr_scheduler=plateau).configure_optimizers()
    assert out["lr_scheduler"]["monitor"] == "val/loss"
    with pytest.raises(TypeError, match="optimizer must be a callable"):
        TRSODEN(ODENField(2, (4,)), optimizer="keras_adam")


def test_a_scheduler_changes_the_learning_rate_in_a_fit(tmp_path):
    from tiny_data import TinyHarmonicDataModule

    step = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    model = TRSODEN(ODENField(2, (4,)), lr_scheduler=step)
    trainer = quiet_trainer(tmp_path, 3)
    trainer.fit(model, datamodule=TinyHarmonicDataModule())
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(2e-4 * 0.5**3)
