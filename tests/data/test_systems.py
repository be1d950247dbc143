"""The study systems: their claimed reversing operators hold numerically, data generation."""

import numpy as np
import pytest
import torch
from quiet_trainer import quiet_trainer

from pl_pac_trs.data.integrate import solve_trajectories
from pl_pac_trs.data.systems import SYSTEM_NAMES, ODESystemDataModule, ode_system
from pl_pac_trs.trs import Reversal


def _flow(system, x0, span, backward=False):
    """``phi_{+-span}(x0)`` of a batch: backward in time via ``z(s) = x(-s)``,
    ``z' = -f(-s, z)``."""
    field = system.field
    if backward:

        def field(s, z):
            return -system.field(-s, z)

    return solve_trajectories(field, x0, np.linspace(0.0, span, 11))[:, -1]


def _starts(system, n=16, seed=3):
    return np.stack([system.initial_state(np.random.RandomState(seed + i)) for i in range(n)])


@pytest.mark.parametrize("name", [n for n in SYSTEM_NAMES if ode_system(n).reversible])
def test_reversible_systems_satisfy_r_phi_t_equals_phi_minus_t_r(name):
    system = ode_system(name)
    x0 = _starts(system)
    for span in (0.7, 3.0):
        lhs = system.reverse(_flow(system, x0, span))
        rhs = _flow(system, system.reverse(x0), span, backward=True)
        np.testing.assert_allclose(lhs, rhs, atol=1e-7)


@pytest.mark.parametrize(
    ("name", "signs", "permutation"),
    [
        ("damped_pendulum", (1.0, -1.0), None),  # dissipation breaks the momentum flip
        ("lotka_volterra", (1.0, -1.0), None),  # its R is the swap, not the momentum flip
        ("lotka_volterra", (1.0, 1.0), None),  # nor the identity
    ],
)
def test_the_check_fails_for_operators_that_are_not_reversing(name, signs, permutation):
    system = ode_system(name)
    R = Reversal(signs, permutation)

    def rev(x):
        return R(torch.as_tensor(x)).numpy()

    x0 = _starts(system)
    gap = np.abs(rev(_flow(system, x0, 3.0)) - _flow(system, rev(x0), 3.0, backward=True))
    assert gap.max() > 1e-2


@pytest.mark.parametrize("name", [n for n in SYSTEM_NAMES if ode_system(n).reversible])
def test_the_torch_reversal_is_the_systems_operator(name):
    system = ode_system(name)
    R = Reversal(system.reversal_signs, system.reversal_permutation)
    x = _starts(system, n=4)
    assert np.array_equal(R(torch.as_tensor(x)).numpy(), system.reverse(x))
    assert torch.equal(R(R(torch.as_tensor(x))), torch.as_tensor(x))


@pytest.mark.parametrize("name", SYSTEM_NAMES)
def test_datamodule_generates_finite_bounded_data(name):
    dm = ODESystemDataModule(name, num_train=3, num_val=2, num_test=2, noise_std=0.1)
    arrays = dm.arrays()
    assert arrays["train_x"].shape == (3, 31, dm.state_dim)
    assert arrays["test_x"].shape == (2, 101, dm.state_dim)
    assert np.all(np.isfinite(arrays["test_x"])) and np.abs(arrays["test_x"]).max() < 10
    noise = arrays["train_x"] - arrays["train_clean"]
    assert 0.05 < noise.std() < 0.2
    assert np.array_equal(arrays["test_x"][:, 0], dm.arrays()["test_x"][:, 0])
    if dm.energy is not None:  # conservative systems keep their energy on the clean test split
        e = dm.energy(arrays["test_x"])
        np.testing.assert_allclose(e, e[:, :1].repeat(e.shape[1], 1), atol=1e-7)


def test_unknown_system_is_named():
    with pytest.raises(ValueError, match="unknown system 'spring'"):
        ODESystemDataModule("spring")


def test_reversal_permutation_is_checked_and_applied():
    R = Reversal([1, 1, -1], permutation=[1, 0, 2])
    x = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.equal(R(x), torch.tensor([[2.0, 1.0, -3.0]]))
    assert torch.equal(R(R(x)), x)
    assert "permutation=[1, 0, 2]" in repr(R) and "permutation" not in repr(Reversal([1, -1]))
    with pytest.raises(ValueError, match=r"each of 0\.\.1 once"):
        Reversal([1, 1], permutation=[0, 0])
    with pytest.raises(ValueError, match="not an involution"):
        Reversal([1, 1, 1], permutation=[1, 2, 0])  # a 3-cycle: R o R != I
    with pytest.raises(ValueError, match="not an involution"):
        Reversal([1, -1], permutation=[1, 0])  # (u, v) -> (-v, u): R o R = -I


def test_the_swap_survives_a_checkpoint():
    from pl_pac_trs.trs import TRSODEN, ODENField

    R = Reversal([1, 1], permutation=[1, 0])
    model = TRSODEN(ODENField(2, hidden=(4,)), integrator="rk4", trs_weight=1.0, reversal=R)
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    fresh = TRSODEN(ODENField(2, hidden=(4,)), integrator="rk4", trs_weight=1.0)
    fresh.on_load_checkpoint(checkpoint)
    x = torch.randn(3, 2)
    assert torch.equal(fresh.reversal(x), x[:, [1, 0]])


def test_load_from_checkpoint_rebuilds_the_swap(tmp_path):

    from pl_pac_trs.trs import TRSODEN, Leapfrog, ODENField

    dm = ODESystemDataModule("lotka_volterra", num_train=2, num_val=1, num_test=1)
    R = Reversal([1, 1], permutation=[1, 0])
    model = TRSODEN(ODENField(2, hidden=(4,)), Leapfrog(position_dim=1), trs_weight=1.0, reversal=R)
    trainer = quiet_trainer(tmp_path, 1, enable_checkpointing=True)
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "lv.ckpt")
    loaded = TRSODEN.load_from_checkpoint(tmp_path / "lv.ckpt")
    x = torch.randn(3, 2)
    assert torch.equal(loaded.reversal(x), x[:, [1, 0]])
