"""TRSODEN used the way Lightning users use a module: every precision, load_from_checkpoint with
the path alone (Python- and CLI-written), predict from Python and the command line."""

import argparse
import functools
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from quiet_trainer import quiet_trainer
from tiny_data import TinyHarmonicDataModule
from torch.utils.data import DataLoader

from pl_pac_trs.apps.cli import main
from pl_pac_trs.trs import (
    RK4,
    TRSODEN,
    HODENField,
    KerasAdam,
    Leapfrog,
    ODENField,
    Reversal,
    RolloutWriter,
    trs_loss,
)
from pl_pac_trs.trs.specs import component_spec


def _trainer(tmp_path, epochs=2, **kw):
    return quiet_trainer(tmp_path, epochs, accelerator="cpu", **kw)


def _equal_modules(a: TRSODEN, b: TRSODEN) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert type(a.vector_field) is type(b.vector_field)
    assert component_spec(a.vector_field) == component_spec(b.vector_field)
    assert repr(a.integrator) == repr(b.integrator)
    assert torch.equal(a.reversal.signs, b.reversal.signs)
    assert a.trs_weight == b.trs_weight and a.time_weighted == b.time_weighted


# ---------------------------------------------------------------------------------- precision
FIELDS = {
    "oden": lambda: ODENField(2, hidden=(16,)),
    "hoden": lambda: HODENField(2, hidden=(8,)),
    "oden_rk4": lambda: ODENField(2, hidden=(16,), time_augmented=True),
}


@pytest.mark.parametrize("precision", ["32-true", "64-true", "bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_every_precision_fits_and_tests(tmp_path, precision, kind):
    torch.manual_seed(0)
    integrator = "rk4" if kind == "oden_rk4" else "leapfrog"
    model = TRSODEN(FIELDS[kind](), integrator=integrator, trs_weight=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _trainer(tmp_path, precision=precision)
    trainer.fit(model, datamodule=TinyHarmonicDataModule())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    results = trainer.test(model, datamodule=TinyHarmonicDataModule(), verbose=False)[0]
    assert np.isfinite(results["test/traj_mse"]) and np.isfinite(results["test/energy_mse"])
    expected = torch.float64 if precision == "64-true" else torch.float32
    assert model.vector_field.state_dict()[next(iter(model.vector_field.state_dict()))].dtype == (
        expected
    )


@pytest.mark.parametrize("precision", ["bf16-true", "16-true"])
def test_half_precision_true_is_refused_before_training(tmp_path, precision):
    model = TRSODEN(ODENField(2, hidden=(8,)), trs_weight=1.0)
    before = [p.detach().clone().float() for p in model.parameters()]
    with pytest.raises(ValueError, match=f"precision='{precision}' is not supported"):
        _trainer(tmp_path, precision=precision).fit(model, datamodule=TinyHarmonicDataModule())
    assert all(torch.equal(a, b.float()) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(
    ("kind", "integrator"),
    [("oden", Leapfrog()), ("oden", RK4()), ("oden_rk4", RK4()), ("hoden", Leapfrog())],
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_under_autocast_the_fused_fields_give_the_plain_paths_numbers(kind, integrator, dtype):
    """Under autocast the fused kernels step aside: loss and gradients equal the plain
    (``fused=False``) field's exactly; outside autocast the fused path is taken again."""
    torch.manual_seed(0)
    fused = FIELDS[kind]()
    plain = FIELDS[kind]()
    plain.load_state_dict(fused.state_dict())
    plain.fused = False
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(6, 2, generator=g) - 0.5
    t = torch.linspace(0, 1, 6).expand(6, 6)
    y = torch.rand(6, 5, 2, generator=g)
    R = Reversal.momentum_flip(2, 1)
    results = []
    for field in (fused, plain):
        field.zero_grad()
        with torch.autocast("cpu", dtype=dtype):
            out = trs_loss(field, integrator, x0, t, y, R, trs_weight=2.0)
        out.total.backward()
        results.append((out.total.detach(), [p.grad.clone() for p in field.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert torch.equal(a, b)
    # outside autocast the fused path is back (and agrees with the plain one to rounding)
    with torch.no_grad():
        a = integrator(fused, x0, t)
        b = integrator(plain, x0, t)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# -------------------------------------------------------------------------- load_from_checkpoint
@pytest.mark.parametrize(
    ("field", "integrator", "reversal"),
    [
        (lambda: ODENField(2, hidden=(16,), init="reference"), "leapfrog", None),
        (lambda: HODENField(2, hidden=(8,)), Leapfrog(), None),
        (lambda: ODENField(2, hidden=(8, 8), time_augmented=True), "rk4", Reversal([-1, -1])),
    ],
)
def test_load_from_checkpoint_with_the_path_alone(tmp_path, field, integrator, reversal):
    torch.manual_seed(0)
    model = TRSODEN(
        field(),
        integrator=integrator,
        trs_weight=1.0,
        time_weighted=True,
        reversal=reversal,
        optimizer=functools.partial(KerasAdam, lr=1e-3),
        lr_scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1),
    )
    trainer = _trainer(tmp_path)
    dm = TinyHarmonicDataModule()
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    for weights_only in (None, True):  # Lightning's default, and read as data
        loaded = TRSODEN.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=weights_only)
        _equal_modules(model, loaded)
        assert isinstance(loaded.configure_optimizers()["optimizer"], KerasAdam)
        batch = next(iter(dm.test_dataloader()))
        assert torch.equal(
            loaded.rollout(batch["x0"], batch["t"]), model.rollout(batch["x0"], batch["t"])
        )
    # what a checkpoint holds is data: no pickled module or function
    hparams = torch.load(tmp_path / "m.ckpt", weights_only=True)["hyper_parameters"]
    assert hparams["vector_field"]["class_path"].endswith(type(model.vector_field).__name__)


def test_a_field_that_keeps_no_record_of_its_arguments_is_passed_back(tmp_path):
    class Linear(torch.nn.Module):  # a user field: not importable, no saved arguments
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, t, x):
            return self.lin(x)

    model = TRSODEN(Linear(), trs_weight=1.0)
    assert "vector_field" not in model.hparams
    trainer = _trainer(tmp_path, epochs=1)
    trainer.fit(model, datamodule=TinyHarmonicDataModule())
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    with pytest.raises(argparse.ArgumentError, match=r"required: module\.vector_field"):
        TRSODEN.load_from_checkpoint(tmp_path / "m.ckpt")
    loaded = TRSODEN.load_from_checkpoint(tmp_path / "m.ckpt", vector_field=Linear())
    assert torch.equal(loaded.vector_field.lin.weight, model.vector_field.lin.weight)


CLI_CONFIG = {
    "seed_everything": 0,
    "model": {
        "class_path": "pl_pac_trs.trs.TRSODEN",
        "init_args": {
            "vector_field": {
                "class_path": "pl_pac_trs.trs.HODENField",
                "init_args": {"state_dim": 2, "hidden": [8]},
            },
            "integrator": "leapfrog",
            "trs_weight": 1.0,
            "optimizer": {"class_path": "pl_pac_trs.trs.KerasAdam", "init_args": {"lr": 1e-3}},
            "lr_scheduler": {
                "class_path": "torch.optim.lr_scheduler.StepLR",
                "init_args": {"step_size": 1, "gamma": 0.5},
            },
        },
    },
    "data": {
        "class_path": "pl_pac_trs.data.DuffingDataModule",
        "init_args": {
            "num_train": 4,
            "num_val": 2,
            "num_test": 3,
            "test_steps": 20,
            "test_span": 2.0,
        },
    },
}


def _cli_config(tmp_path):
    config = dict(CLI_CONFIG)
    config["trainer"] = {
        "max_epochs": 2,
        "logger": False,
        "accelerator": "cpu",
        "enable_progress_bar": False,
        "default_root_dir": str(tmp_path / "run"),
        "callbacks": [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True},
            },
            {"class_path": "pl_pac_trs.trs.RolloutWriter"},
        ],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_cli_checkpoint_loads_with_the_path_alone_and_predicts(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    caplog.set_level(logging.INFO)
    config = _cli_config(tmp_path)
    assert main(["fit", "--config", str(config)]) == 0
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    loaded = TRSODEN.load_from_checkpoint(ckpt)
    assert type(loaded.vector_field) is HODENField
    assert dict(loaded.vector_field.hparams)["hidden"] == [8]
    assert isinstance(loaded.configure_optimizers()["optimizer"], KerasAdam)
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    # the same rollouts from Python and from `pl-pac-trs predict --ckpt_path`
    from pl_pac_trs.data import DuffingDataModule

    dm = DuffingDataModule(**CLI_CONFIG["data"]["init_args"])
    writer = RolloutWriter(tmp_path / "python.npz")
    trainer = _trainer(tmp_path, callbacks=[writer])
    python = trainer.predict(loaded, datamodule=dm)
    caplog.clear()
    args = ["predict", "--config", str(config), "--ckpt_path", str(ckpt)]
    assert main([*args, "--model.init_args.predict_backward=true"]) == 0
    (said,) = re.findall(r"TRSODEN predictions .* written to (\S+)", caplog.text)
    written = Path(said)  # the predict run's own directory
    assert written.parent.parent == tmp_path / "run" and written.parent.name.startswith("version_")
    assert written.name == "predictions.npz"
    with np.load(written) as cli, np.load(tmp_path / "python.npz") as py:
        assert set(cli.files) == {"x0", "t", "forward", "backward"}
        assert set(py.files) == {"x0", "t", "forward"}
        for key in py.files:
            np.testing.assert_array_equal(cli[key], py[key])
        np.testing.assert_array_equal(cli["forward"], python[0]["forward"].numpy())
        assert cli["forward"].shape == (3, 20, 2) == cli["backward"].shape
    # `test --ckpt_path` tests the checkpoint's module: the metrics of the Python-loaded one
    caplog.clear()
    assert main(["test", "--config", str(config), "--ckpt_path", str(ckpt)]) == 0
    cli_out = caplog.text
    results = _trainer(tmp_path).test(loaded, datamodule=dm, verbose=False)[0]
    assert f"test/traj_mse={results['test/traj_mse']:.4g}" in cli_out


# -------------------------------------------------------------------------------------- predict
def test_predict_returns_forward_and_backward_rollouts(tmp_path):
    torch.manual_seed(0)
    model = TRSODEN(ODENField(2, hidden=(8,)), trs_weight=1.0, predict_backward=True)
    dm = TinyHarmonicDataModule()
    writer = RolloutWriter()
    trainer = _trainer(tmp_path, epochs=1, callbacks=[writer])
    trainer.fit(model, datamodule=dm)
    (out,) = trainer.predict(model, datamodule=dm)
    batch = next(iter(dm.predict_dataloader()))
    assert torch.equal(out["x0"], batch["x0"]) and torch.equal(out["t"], batch["t"])
    assert torch.equal(out["forward"], model.rollout(batch["x0"], batch["t"]))
    R = model.reversal
    assert torch.equal(out["backward"], model.rollout(R(batch["x0"]), -batch["t"]))
    assert writer.written == tmp_path / "predictions.npz"
    with np.load(writer.written) as saved:
        np.testing.assert_array_equal(saved["forward"], out["forward"].numpy())
        np.testing.assert_array_equal(saved["backward"], out["backward"].numpy())
    # a predict set of start states and grids only (no observations)
    starts = DataLoader([{"x0": batch["x0"][:2], "t": batch["t"][:2]}], batch_size=None)
    (only,) = trainer.predict(model, starts)
    torch.testing.assert_close(only["forward"], out["forward"][:2])
    # predict_backward is a setting of the predict run, not restored from a checkpoint
    assert "predict_backward" not in model.hparams


def test_rollout_writer_keeps_trajectories_of_different_lengths_apart(tmp_path):
    model = TRSODEN(ODENField(2, hidden=(4,)), reversal=Reversal([1, -1]))
    x0 = torch.zeros(1, 2)
    batches = [{"x0": x0, "t": torch.linspace(0, 1, n).unsqueeze(0)} for n in (3, 5)]
    writer = RolloutWriter(tmp_path / "out" / "r.npz")
    _trainer(tmp_path, callbacks=[writer]).predict(model, DataLoader(batches, batch_size=None))
    with np.load(tmp_path / "out" / "r.npz") as saved:
        assert saved["forward_0"].shape == (2, 2) and saved["forward_1"].shape == (4, 2)


# --------------------------------------------------------------------- --optimizer, --lr_scheduler
def test_cli_optimizer_and_lr_scheduler_are_the_models_own(tmp_path, monkeypatch):
    """LightningCLI's ``--optimizer`` / ``--lr_scheduler`` reach TRSODEN's own arguments: the
    checkpoint records them and ``load_from_checkpoint`` rebuilds them."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    config = _cli_config(tmp_path)
    args = ["fit", "--config", str(config), "--optimizer=SGD", "--optimizer.lr=0.1"]
    args += ["--lr_scheduler=StepLR", "--lr_scheduler.step_size=1", "--lr_scheduler.gamma=0.5"]
    assert main(args) == 0
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["optimizer"]["class_path"] == "torch.optim.SGD"
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.1 * 0.5**2)
    loaded = TRSODEN.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    out = loaded.configure_optimizers()
    assert type(out["optimizer"]) is torch.optim.SGD and out["optimizer"].defaults["lr"] == 0.1
    assert type(out["lr_scheduler"]["scheduler"]) is torch.optim.lr_scheduler.StepLR


def test_a_python_checkpoint_runs_under_cli_test(tmp_path, caplog, monkeypatch):
    """A checkpoint written from Python names the class as a config does
    (``pl_pac_trs.trs.TRSODEN``), so ``pl-pac-trs test --ckpt_path`` takes it."""
    from pl_pac_trs.data import DuffingDataModule

    monkeypatch.setenv("WANDB_MODE", "disabled")
    caplog.set_level(logging.INFO)
    torch.manual_seed(0)
    model = TRSODEN(HODENField(2, hidden=(8,)), trs_weight=1.0)
    assert model.hparams["_class_path"] == "pl_pac_trs.trs.TRSODEN"
    assert model.hparams["vector_field"]["class_path"] == "pl_pac_trs.trs.HODENField"
    dm = DuffingDataModule(**CLI_CONFIG["data"]["init_args"])
    trainer = _trainer(tmp_path, epochs=1)
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "python.ckpt")
    results = trainer.test(model, datamodule=dm, verbose=False)[0]
    caplog.clear()
    config = _cli_config(tmp_path)
    ckpt = str(tmp_path / "python.ckpt")
    assert main(["test", "--config", str(config), "--ckpt_path", ckpt]) == 0
    assert f"test/traj_mse={results['test/traj_mse']:.4g}" in caplog.text
