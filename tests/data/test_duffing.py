"""DuffingDataModule: reproducibility, windows, noise, clean test states, accuracy, errors."""

import math

import numpy as np
import pytest
import torch

from pl_pac_trs.data import DuffingDataModule
from pl_pac_trs.data.duffing import generate_duffing

SMALL = {"num_train": 4, "num_val": 2, "num_test": 3, "test_steps": 40, "test_span": 4.0}


def _all_batches(dm):
    dm.setup()
    return {
        "train": [dict(b) for b in dm.train_dataloader()],
        "test": [dict(b) for b in dm.test_dataloader()],
    }


def _reference_initial_state(seed):
    rng = np.random.RandomState(seed)
    d = rng.uniform(-1.0, 1.0, size=2)
    d = d / np.sqrt(np.sum(d**2))
    return rng.uniform(0.2, 1.0, size=1) * d


def test_reproducible_by_seed():
    a = DuffingDataModule(alpha=-1.0, beta=1.0, **SMALL)
    b = DuffingDataModule(alpha=-1.0, beta=1.0, **SMALL)
    a.setup(), b.setup()
    ta, tb = a.train_dataset.data, b.train_dataset.data
    for key in ("x0", "t", "y"):
        assert torch.equal(ta[key], tb[key])
        assert torch.equal(a.test_dataset[2][key], b.test_dataset[2][key])
    c = DuffingDataModule(alpha=-1.0, beta=1.0, train_seed=7, **SMALL)
    c.setup()
    assert not torch.equal(ta["x0"], c.train_dataset.data["x0"])


def test_trajectory_independent_of_num_train():
    _, clean3, obs3 = generate_duffing(3, 30, 3.0, 0.1, 0, 1.0, 0.0, 0.0, 0.0)
    _, clean6, obs6 = generate_duffing(6, 30, 3.0, 0.1, 0, 1.0, 0.0, 0.0, 0.0)
    _, clean200, _ = generate_duffing(200, 30, 3.0, 0.1, 0, 1.0, 0.0, 0.0, 0.0)
    assert np.array_equal(clean3, clean6[:3]) and np.array_equal(obs3, obs6[:3])
    assert np.array_equal(clean3, clean200[:3])  # 200 spans two solver blocks
    a = DuffingDataModule(num_train=3, num_val=0, num_test=2)
    b = DuffingDataModule(num_train=6, num_val=0, num_test=2)
    a.setup(), b.setup()
    for key in ("x0", "t", "y"):
        assert torch.equal(a.train_dataset.data[key], b.train_dataset.data[key][:9])


def test_reference_initial_states_and_clean_test_x0():
    dm = DuffingDataModule(**SMALL)
    dm.setup()
    test = next(iter(dm.test_dataloader()))
    expected = np.stack([_reference_initial_state(999 + i) for i in range(3)])
    assert torch.equal(test["x0"], torch.as_tensor(expected, dtype=torch.float32))
    radii = np.linalg.norm(expected, axis=1)
    assert np.all((radii >= 0.2) & (radii <= 1.0))
    # The test targets are the clean solution (no noise): energy is conserved for alpha=1.
    e = dm.energy(test["y"].double())
    e0 = dm.energy(test["x0"].double())
    torch.testing.assert_close(e, e0[:, None].expand_as(e), atol=1e-6, rtol=0)


def test_exp1_window_counts_and_contents():
    dm = DuffingDataModule()  # reference exp I: 50 trajectories x 30 steps, T = 10
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == 1 and batches[0]["x0"].shape == (150, 2)  # full batch
    assert batches[0]["t"].shape == (150, 11) and batches[0]["y"].shape == (150, 10, 2)
    t, x = dm.trajectories("train")
    windows = dm.train_dataset.data
    for i in (0, 17, 49):
        for j in range(3):
            w = 3 * i + j
            seg = torch.as_tensor(x[i][10 * j : 10 * j + 11], dtype=torch.float32)
            assert torch.equal(windows["x0"][w], seg[0])
            assert torch.equal(windows["y"][w], seg[1:])
            expected_t = torch.as_tensor(t[i][10 * j : 10 * j + 11], dtype=torch.float32)
            assert torch.equal(windows["t"][w], expected_t)
    # Absolute times: window j starts at t = j (span 3 over 30 steps).
    torch.testing.assert_close(windows["t"][:3, 0], torch.tensor([0.0, 1.0, 2.0]))
    assert len(dm.val_dataset) == 30
    test = next(iter(dm.test_dataloader()))
    assert test["x0"].shape == (50, 2) and test["t"].shape == (50, 201)
    assert test["y"].shape == (50, 200, 2)
    assert float(test["t"][0, -1]) == pytest.approx(20.0)


def test_sliding_windows_and_batch_size():
    dm = DuffingDataModule(windows="sliding", batch_size=32, **SMALL)
    dm.setup()
    assert len(dm.train_dataset) == 4 * 21
    sizes = [len(b["x0"]) for b in dm.train_dataloader()]
    assert sizes == [32, 32, 20]
    _, x = dm.trajectories("train")
    w = dm.train_dataset.data
    assert torch.equal(w["x0"][5], torch.as_tensor(x[0][5], dtype=torch.float32))
    assert torch.equal(w["y"][21 + 3], torch.as_tensor(x[1][4:14], dtype=torch.float32))


def test_noise_only_on_train_and_val():
    dm = DuffingDataModule(num_train=50, num_val=5, num_test=5, noise_std=0.1)
    arrays = dm.arrays()
    resid = arrays["train_x"] - arrays["train_clean"]
    assert 0.09 < resid.std() < 0.11
    assert abs(resid.mean()) < 0.01
    # The noise is the reference's draw order: after the initial state, randn for q then for p.
    rng = np.random.RandomState(7)
    rng.uniform(-1.0, 1.0, size=2), rng.uniform(0.2, 1.0, size=1)
    expected = 0.1 * np.stack([rng.randn(31), rng.randn(31)], axis=-1)
    np.testing.assert_allclose(resid[7], expected, rtol=0, atol=1e-14)
    clean = DuffingDataModule(num_train=50, num_val=5, num_test=5, noise_std=0.0).arrays()
    assert np.array_equal(clean["train_x"], clean["train_clean"])
    assert np.array_equal(clean["test_x"], arrays["test_x"])  # test never noisy
    # Validation data are noisy too (regenerate the clean val split to compare).
    _, vclean, _ = generate_duffing(5, 30, 3.0, 0.0, 500, 1.0, 0.0, 0.0, 0.0)
    assert 0.05 < (arrays["val_x"] - vclean).std() < 0.15


def _analytic(kind, q0, p0, t):
    if kind == "harmonic":  # alpha = 1
        q = q0 * np.cos(t) + p0 * np.sin(t)
        p = -q0 * np.sin(t) + p0 * np.cos(t)
    elif kind == "forced":  # alpha = 1, delta = 0.15: resonant forcing
        d = 0.15
        q = q0 * np.cos(t) + p0 * np.sin(t) + 0.5 * d * t * np.sin(t)
        p = -q0 * np.sin(t) + p0 * np.cos(t) + 0.5 * d * (np.sin(t) + t * np.cos(t))
    else:  # damped: alpha = 1, gamma = 0.1
        g = 0.1
        w = math.sqrt(1 - g**2 / 4)
        a, b = q0, (p0 + g * q0 / 2) / w
        q = np.exp(-g * t / 2) * (a * np.cos(w * t) + b * np.sin(w * t))
        p = np.exp(-g * t / 2) * (
            -g / 2 * (a * np.cos(w * t) + b * np.sin(w * t))
            + w * (-a * np.sin(w * t) + b * np.cos(w * t))
        )
    return np.stack([q, p], axis=-1)


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("harmonic", {"alpha": 1.0}),
        ("forced", {"alpha": 1.0, "delta": 0.15}),
        ("damped", {"alpha": 1.0, "gamma": 0.1}),
    ],
)
def test_accuracy_against_analytic_solution(kind, params):
    dm = DuffingDataModule(**params, num_train=2, num_val=0, num_test=4)
    t, x = dm.trajectories("test")
    for ti, xi in zip(t, x, strict=True):
        exact = _analytic(kind, xi[0, 0], xi[0, 1], ti)
        np.testing.assert_allclose(xi, exact, rtol=0, atol=1e-8)


def test_energy_values():
    dm = DuffingDataModule(alpha=-1.0, beta=1.0, num_train=1, num_val=0, num_test=1)
    x = torch.tensor([[2.0, 3.0], [0.5, -1.0]])
    assert torch.equal(dm.energy(x), torch.tensor([-4.0 + 8.0 + 9.0, -0.25 + 0.03125 + 1.0]))
    assert dm.energy(torch.zeros(5, 7, 2)).shape == (5, 7)
    assert dm.state_dim == 2 and dm.position_dim == 1 and dm.bodies is None
    assert dm.name == "duffing"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"time_horizon": 31}, "time_horizon=31 exceeds train_steps=30"),
        ({"time_horizon": 0}, "time_horizon must be an integer >= 1"),
        ({"noise_std": -0.1}, "noise_std must be a finite number >= 0"),
        ({"windows": "overlapping"}, "windows must be one of"),
        ({"num_train": 0}, "num_train must be an integer >= 1"),
        ({"train_span": 0.0}, "train_span must be a finite number > 0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"num_train": 600}, "seed ranges overlap: train_seed=0"),
        ({"alpha": float("nan")}, "alpha must be finite"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DuffingDataModule(**kwargs)


def test_hyperparameters_saved():
    dm = DuffingDataModule(alpha=-0.2, beta=0.2, delta=0.15, num_train=3)
    assert dm.hparams["delta"] == 0.15 and dm.hparams["num_train"] == 3
