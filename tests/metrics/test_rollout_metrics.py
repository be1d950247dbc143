import pytest
import torch

from pl_pac_trs.metrics import RolloutMetrics, energy_mse, trajectory_mse


def _energy(x):
    return 0.5 * x.pow(2).sum(-1)


def test_compute_is_the_functional_mean_and_std_of_every_part():
    torch.manual_seed(0)
    pred, target = torch.randn(6, 5, 4), torch.randn(6, 5, 4)
    metrics = RolloutMetrics(energy=_energy, bodies={"body1": [0, 2], "body2": [1, 3]})
    metrics.update(pred[:4], target[:4])
    metrics.update(pred[4:], target[4:])  # accumulated over batches
    out = metrics.compute()
    assert list(out) == [
        "test/traj_mse",
        "test/traj_mse_std",
        "test/energy_mse",
        "test/energy_mse_std",
        "test/body1_mse",
        "test/body1_mse_std",
        "test/body2_mse",
        "test/body2_mse_std",
    ]
    expected = {
        "test/traj_mse": trajectory_mse(pred, target),
        "test/energy_mse": energy_mse(pred, target, _energy),
        "test/body1_mse": trajectory_mse(pred, target, [0, 2]),
        "test/body2_mse": trajectory_mse(pred, target, [1, 3]),
    }
    for key, (mean, std) in expected.items():
        assert float(out[key]) == pytest.approx(float(mean), rel=1e-6)
        assert float(out[f"{key}_std"]) == pytest.approx(float(std), rel=1e-6)


def test_repeated_indices_count_once_and_reset_forgets():
    pred, target = (
        torch.zeros(3, 2, 1),
        torch.tensor([1.0, 2.0, 1.0])[:, None, None].expand(3, 2, 1),
    )
    metrics = RolloutMetrics(prefix="val/", scale=1.0)
    metrics.update(pred, target, torch.tensor([0, 1, 0]))  # trajectory 0 padded in again
    out = metrics.compute()
    assert set(out) == {"val/traj_mse", "val/traj_mse_std"}  # no energy, no bodies
    assert (float(out["val/traj_mse"]), float(out["val/traj_mse_std"])) == (2.5, 1.5)
    metrics.reset()
    metrics.update(pred[:1], target[:1])
    assert float(metrics.compute()["val/traj_mse"]) == 1.0
