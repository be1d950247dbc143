import functools

import lightning.pytorch as pl
import pytest
import torch
from quiet_trainer import quiet_trainer
from tiny_data import TinyHarmonicDataModule

from pl_pac_trs.metrics import energy_mse, trajectory_mse
from pl_pac_trs.trs import TRSODEN, HODENField, ODENField, Reversal, TrajectoryPlots

ADAM = functools.partial(torch.optim.Adam, lr=1e-2)


def _trainer(tmp_path, epochs=3, **kw):
    return quiet_trainer(tmp_path, epochs, accelerator="cpu", **kw)


@pytest.mark.parametrize(
    ("field", "weight"),
    [
        (ODENField(2, hidden=(16,)), 10.0),
        (HODENField(2, hidden=(8,)), 1.0),
        (ODENField(2, hidden=(16,)), 0.0),
    ],
)
def test_fit_and_test_logs_losses_metrics_and_plots(tmp_path, field, weight):
    torch.manual_seed(0)
    dm = TinyHarmonicDataModule()
    model = TRSODEN(field, integrator="leapfrog", trs_weight=weight, optimizer=ADAM)
    before = [p.detach().clone() for p in model.parameters()]
    plots = TrajectoryPlots(num_plot=2)
    trainer = _trainer(tmp_path, callbacks=[plots])
    trainer.fit(model, datamodule=dm)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    logged = trainer.callback_metrics
    assert {"train/loss", "train/ode", "val/loss", "val/ode", "val/trs"} <= set(logged)
    assert ("train/trs" in logged) == (weight > 0)
    assert torch.equal(model.reversal.signs, torch.tensor([1.0, -1.0]))

    results = trainer.test(model, datamodule=dm, verbose=False)[0]
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        pred = model.rollout(batch["x0"], batch["t"])
    mean, std = trajectory_mse(pred, batch["y"])
    emean, estd = energy_mse(pred, batch["y"], dm.energy)
    assert results["test/traj_mse"] == pytest.approx(float(mean), rel=1e-5)
    assert results["test/traj_mse_std"] == pytest.approx(float(std), rel=1e-4)
    assert results["test/energy_mse"] == pytest.approx(float(emean), rel=1e-5)
    assert results["test/energy_mse_std"] == pytest.approx(float(estd), rel=1e-4)
    assert set(results) == {
        "test/traj_mse",
        "test/traj_mse_std",
        "test/energy_mse",
        "test/energy_mse_std",
    }
    assert plots.paths == {
        "test/phase_portraits": tmp_path / "phase_portraits.png",
        "test/energy": tmp_path / "energy.png",
    }
    for path in plots.paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    preds = trainer.predict(model, datamodule=dm)
    torch.testing.assert_close(preds[0]["forward"], pred)


def test_validation_errors_before_training(tmp_path):
    dm = TinyHarmonicDataModule()
    with pytest.raises(ValueError, match="vector_field has state_dim=3 but the data has state"):
        _trainer(tmp_path).fit(TRSODEN(ODENField(3, hidden=(4,)), integrator="rk4"), dm)
    with pytest.raises(ValueError, match="reversal has 3 signs"):
        model = TRSODEN(ODENField(2, hidden=(4,)), trs_weight=1.0, reversal=Reversal([1, -1, 1]))
        _trainer(tmp_path).fit(model, dm)
    model = TRSODEN(ODENField(2, hidden=(4,)), trs_weight=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="time grid t is not strictly increasing"):
        _trainer(tmp_path, num_sanity_val_steps=0).fit(model, TinyHarmonicDataModule(bad_time=True))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="unknown integrator 'verlet'"):
        TRSODEN(ODENField(2), integrator="verlet")
    with pytest.raises(ValueError, match="trs_weight must be a finite number >= 0"):
        TRSODEN(ODENField(2), trs_weight=-1.0)
    with pytest.raises(ValueError, match="trs_weight must be a finite number >= 0, got nan"):
        TRSODEN(ODENField(2), trs_weight=float("nan"))


def test_trs_weight_positive_without_reversal_or_position_dim_is_an_error(tmp_path):
    dm = TinyHarmonicDataModule()
    dm.position_dim = None
    model = TRSODEN(ODENField(2, hidden=(4,)), integrator="rk4", trs_weight=1.0)
    with pytest.raises(ValueError, match="trs_weight > 0 needs a reversing operator"):
        _trainer(tmp_path).fit(model, dm)


def test_a_datamodule_without_the_trajectory_contract_is_named_before_training(tmp_path):
    class Bare(pl.LightningDataModule):  # batches, but no position_dim / bodies declared
        state_dim = 2

        def train_dataloader(self):
            return TinyHarmonicDataModule().train_dataloader()

    model = TRSODEN(ODENField(2, hidden=(4,)))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TypeError, match=r"Bare does not declare \['position_dim', 'bodies'\]"):
        _trainer(tmp_path).fit(model, Bare())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_each_test_run_uses_the_energy_of_its_own_datamodule(tmp_path):
    """A model tested on a second system (PAC-Net's source check) uses that system's energy."""

    class ScaledEnergy(TinyHarmonicDataModule):
        def energy(self, x):
            return 3.0 * super().energy(x) + 1.0

    torch.manual_seed(0)
    model = TRSODEN(ODENField(2, hidden=(8,)), integrator="leapfrog", optimizer=ADAM)
    trainer = _trainer(tmp_path, epochs=1)
    first, second = TinyHarmonicDataModule(), ScaledEnergy()
    trainer.fit(model, datamodule=first)
    trainer.test(model, datamodule=first, verbose=False)
    results = trainer.test(model, datamodule=second, verbose=False)[0]
    batch = next(iter(second.test_dataloader()))
    with torch.no_grad():
        pred = model.rollout(batch["x0"], batch["t"])
    expected, _ = energy_mse(pred, batch["y"], second.energy)
    assert results["test/energy_mse"] == pytest.approx(float(expected), rel=1e-5)


def test_state_dict_holds_the_field_once(tmp_path):
    torch.manual_seed(0)
    model = TRSODEN(ODENField(2, hidden=(16,)), trs_weight=10.0, optimizer=ADAM)
    trainer = _trainer(tmp_path, epochs=1)
    trainer.fit(model, datamodule=TinyHarmonicDataModule())
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    keys = set(torch.load(tmp_path / "m.ckpt", weights_only=True)["state_dict"])
    expected = {"vector_field.net.0.weight", "vector_field.net.0.bias", "vector_field.net.2.weight"}
    assert keys == set(model.state_dict()) == expected


@pytest.mark.parametrize("integrator", ["rk4", "leapfrog"])
def test_load_from_checkpoint_keeps_integrator_and_what_setup_resolved(tmp_path, integrator):
    """A reloaded model rolls out exactly like the trained one, without its datamodule."""
    torch.manual_seed(0)
    model = TRSODEN(
        ODENField(2, hidden=(16,)), integrator=integrator, trs_weight=1.0, optimizer=ADAM
    )
    trainer = _trainer(tmp_path, epochs=1)
    dm = TinyHarmonicDataModule()
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = TRSODEN.load_from_checkpoint(tmp_path / "m.ckpt")
    assert type(loaded.integrator) is type(model.integrator)
    assert torch.equal(loaded.reversal.signs, torch.tensor([1.0, -1.0]))
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        assert torch.equal(loaded(batch["x0"], batch["t"]), model(batch["x0"], batch["t"]))
