"""StrangeAttractorDataModule: shapes, reference initial states, accuracy, reproducibility."""

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from pl_pac_trs.data import StrangeAttractorDataModule
from pl_pac_trs.data.attractor import attractor_field

SMALL = {
    "num_train": 3,
    "train_steps": 40,
    "train_span": 2.0,
    "num_val": 2,
    "num_test": 2,
    "test_steps": 60,
    "test_span": 3.0,
    "batch_size": 5,
}


def test_shapes_and_attributes():
    dm = StrangeAttractorDataModule(**SMALL)
    assert dm.state_dim == 3 and dm.position_dim is None
    assert dm.energy is None and dm.bodies is None and dm.name == "attractor"
    dm.setup()
    assert len(dm.train_dataset) == 3 * 4 and len(dm.val_dataset) == 2 * 4
    batches = list(dm.train_dataloader())
    assert [len(b["x0"]) for b in batches] == [5, 5, 2]
    b = batches[0]
    assert b["x0"].shape == (5, 3) and b["t"].shape == (5, 11) and b["y"].shape == (5, 10, 3)
    assert all(v.dtype == torch.float32 for v in b.values())
    test = next(iter(dm.test_dataloader()))
    assert test["x0"].shape == (2, 3) and test["t"].shape == (2, 61)
    assert test["y"].shape == (2, 60, 3)


def test_reference_initial_states_clean_test_and_noise():
    dm = StrangeAttractorDataModule(**SMALL)
    dm.setup()
    test = next(iter(dm.test_dataloader()))
    z0 = [np.random.RandomState(2000 + i).uniform(1, 3, 1)[0] for i in range(2)]
    expected = torch.tensor([[0.0, 0.0, z] for z in z0], dtype=torch.float32)
    assert torch.equal(test["x0"], expected)
    arrays = dm.arrays()
    assert np.all(arrays["train_clean"][:, 0, :2] == 0.0)
    resid = arrays["train_x"] - arrays["train_clean"]
    assert 0.04 < resid.std() < 0.06
    rng = np.random.RandomState(1)
    rng.uniform(1, 3, 1)
    draws = np.stack([rng.randn(41) for _ in range(3)], axis=-1)  # x, y, z in this order
    np.testing.assert_allclose(resid[1], 0.05 * draws, rtol=0, atol=1e-13)


def test_accuracy_against_tight_solo_solve():
    dm = StrangeAttractorDataModule(**{**SMALL, "test_steps": 200, "test_span": 20.0})
    t, x = dm.trajectories("test")
    for ti, xi in zip(t, x, strict=True):
        ref = solve_ivp(
            lambda s, y: attractor_field(s, y[None])[0],
            (0.0, 20.0),
            xi[0],
            method="DOP853",
            t_eval=ti,
            rtol=1e-13,
            atol=1e-13,
        )
        np.testing.assert_allclose(xi, ref.y.T, rtol=0, atol=1e-7)


def test_reproducible_and_independent_of_count():
    a = StrangeAttractorDataModule(**SMALL)
    b = StrangeAttractorDataModule(**{**SMALL, "num_train": 5})
    c = StrangeAttractorDataModule(**SMALL)
    for dm in (a, b, c):
        dm.setup()
    for key in ("x0", "t", "y"):
        assert torch.equal(a.train_dataset.data[key], c.train_dataset.data[key])
        assert torch.equal(a.train_dataset.data[key], b.train_dataset.data[key][:12])


def test_reference_defaults():
    dm = StrangeAttractorDataModule()
    assert (dm.num_train, dm.train_steps, dm.train_span, dm.noise_std) == (1000, 400, 20.0, 0.05)
    assert (dm.test_steps, dm.test_span, dm.test_seed, dm.batch_size) == (400, 20.0, 2000, 1024)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"time_horizon": 50}, "time_horizon=50 exceeds train_steps=40"),
        ({"noise_std": -1.0}, "noise_std must be a finite number >= 0"),
        ({"windows": "random"}, "windows must be one of"),
        ({"val_seed": 2001}, "seed ranges overlap: val_seed=2001"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StrangeAttractorDataModule(**{**SMALL, **kwargs})
