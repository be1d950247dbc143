"""A system we do not ship, as a user brings it: a 2-DOF coupled spring written to CSV (noisy
training file, clean test file), its Hamiltonian as the energy, from Python and the CLI."""

import logging
import textwrap

import numpy as np
import pytest
import torch
import yaml
from quiet_trainer import quiet_trainer
from scipy.linalg import expm

from pl_pac_trs.apps.cli import main
from pl_pac_trs.data import TrajectoryFileDataModule
from pl_pac_trs.metrics import energy_mse
from pl_pac_trs.trs import TRSODEN, ODENField, TrajectoryPlots

ENERGY_MODULE = '''
import torch


class CoupledSpringEnergy:
    """H = (p1^2 + p2^2)/2 + k1 q1^2/2 + k2 (q2 - q1)^2/2 + k3 q2^2/2, x = [q1, q2, p1, p2]."""

    def __init__(self, k1: float = 1.0, k2: float = 0.5, k3: float = 1.0):
        self.k1, self.k2, self.k3 = k1, k2, k3

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        q1, q2, p1, p2 = x.unbind(-1)
        return (
            0.5 * (p1**2 + p2**2)
            + 0.5 * self.k1 * q1**2 + 0.5 * self.k2 * (q2 - q1) ** 2 + 0.5 * self.k3 * q2**2
        )
'''


def _spring(k1=1.0, k2=0.5, k3=1.0):
    stiffness = np.array([[k1 + k2, -k2], [-k2, k2 + k3]])
    a = np.zeros((4, 4))
    a[:2, 2:] = np.eye(2)
    a[2:, :2] = -stiffness
    return a


def _write_csv(path, m, n, span, noise, seed):
    rng = np.random.default_rng(seed)
    a = _spring()
    t = np.linspace(0.0, span, n)
    rows = ["trajectory,t,q1,q2,p1,p2"]
    clean = []
    for i in range(m):
        x0 = rng.uniform(-1, 1, 4)
        x = np.stack([expm(a * tk) @ x0 for tk in t])
        clean.append(x)
        x = x + noise * rng.normal(size=x.shape)
        for tk, xk in zip(t, x, strict=True):
            rows.append(f"{i},{float(tk)!r}," + ",".join(repr(float(v)) for v in xk))
    path.write_text("\n".join(rows) + "\n")
    return t, np.stack(clean)


@pytest.fixture
def spring_files(tmp_path, monkeypatch):
    (tmp_path / "my_spring.py").write_text(textwrap.dedent(ENERGY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    train = tmp_path / "spring_train.csv"
    test = tmp_path / "spring_test.csv"
    _write_csv(train, m=8, n=31, span=3.0, noise=0.05, seed=0)
    t, clean = _write_csv(test, m=3, n=61, span=6.0, noise=0.0, seed=1)
    return train, test, t, clean


def test_own_system_with_energy_and_a_clean_test_file(tmp_path, spring_files):
    from my_spring import CoupledSpringEnergy

    train, test, _, clean = spring_files
    energy = CoupledSpringEnergy()
    dm = TrajectoryFileDataModule(
        str(train),
        test_path=str(test),
        val_fraction=0.25,
        position_dim=2,
        energy=energy,
        time_horizon=10,
    )
    dm.setup()
    # 8 noisy trajectories: 6 train (3 windows each), 2 val; the 3 clean ones test
    assert len(dm.train_dataset) == 18 and len(dm.val_dataset) == 6 and len(dm.test_dataset) == 3
    batch = next(iter(dm.test_dataloader()))
    assert torch.equal(batch["y"], torch.as_tensor(clean[:, 1:], dtype=torch.float32))
    assert torch.equal(batch["x0"], torch.as_tensor(clean[:, 0], dtype=torch.float32))
    assert "energy" not in dm.hparams and dm.hparams["test_path"] == str(test)

    torch.manual_seed(0)
    model = TRSODEN(ODENField(4, hidden=(16,)), trs_weight=1.0)
    plots = TrajectoryPlots(num_plot=2)
    trainer = quiet_trainer(tmp_path, 2, callbacks=[plots])
    trainer.fit(model, datamodule=dm)
    results = trainer.test(model, datamodule=dm, verbose=False)[0]
    pred = model.rollout(batch["x0"], batch["t"])
    expected, _ = energy_mse(pred, batch["y"], energy)
    assert results["test/energy_mse"] == pytest.approx(float(expected), rel=1e-5)
    assert plots.paths["test/energy"].is_file()


def test_own_system_errors_name_the_file(tmp_path, spring_files):
    train, _, _, _ = spring_files
    other = tmp_path / "three.npz"
    np.savez(other, t=np.linspace(0, 1, 11), x=np.zeros((11, 3)))
    with pytest.raises(ValueError, match=r"three\.npz: test trajectories have state dimension 3"):
        TrajectoryFileDataModule(str(train), test_path=str(other))
    with pytest.raises(FileNotFoundError, match=r"no_such\.csv"):
        TrajectoryFileDataModule(str(train), test_path=str(tmp_path / "no_such.csv"))
    with pytest.raises(TypeError, match="energy must be a callable"):
        TrajectoryFileDataModule(str(train), energy=3.0)


def test_own_system_from_the_cli(tmp_path, spring_files, caplog, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    caplog.set_level(logging.INFO)
    train, test, _, _ = spring_files
    config = {
        "model": {
            "class_path": "pl_pac_trs.trs.TRSODEN",
            "init_args": {
                "vector_field": {
                    "class_path": "pl_pac_trs.trs.ODENField",
                    "init_args": {"state_dim": 4, "hidden": [16]},
                },
                "trs_weight": 1.0,
            },
        },
        "data": {
            "class_path": "pl_pac_trs.data.TrajectoryFileDataModule",
            "init_args": {
                "path": str(train),
                "test_path": str(test),
                "val_fraction": 0.25,
                "position_dim": 2,
                "energy": {"class_path": "my_spring.CoupledSpringEnergy", "init_args": {"k2": 0.5}},
            },
        },
        "trainer": {"max_epochs": 1, "logger": False, "default_root_dir": str(tmp_path / "run")},
    }
    path = tmp_path / "spring.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["test", "--config", str(path), "--trainer.enable_progress_bar=false"]) == 0
    assert "test/energy_mse=" in caplog.text


def test_time_split_with_a_test_file_keeps_every_point_for_train_and_val(tmp_path, spring_files):
    _, test, _, _ = spring_files
    t = np.linspace(0, 5, 51)
    x = np.stack([np.sin(t), np.cos(t), -np.cos(t), np.sin(t)], axis=1)
    np.savez(tmp_path / "one.npz", t=t, x=x)
    dm = TrajectoryFileDataModule(
        str(tmp_path / "one.npz"), split="time", val_fraction=0.2, test_path=str(test)
    )
    splits = dm.load_splits()
    (train_t, train_x), (val_t, _) = splits["train"][0], splits["val"][0]
    assert np.array_equal(train_t, t[:41]) and np.array_equal(train_x, x[:41])
    assert np.array_equal(val_t, t[41:])
    assert len(splits["test"]) == 3
