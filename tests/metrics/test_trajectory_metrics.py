import numpy as np
import pytest
import torch

from pl_pac_trs.metrics import (
    EnergyMSE,
    TrajectoryMSE,
    energy_mse,
    per_trajectory_mse,
    trajectory_mse,
)


def _data():
    pred = torch.tensor(
        [[[1.0, 2.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]], [[0.0, 3.0], [2.0, 0.0]]]
    )
    target = torch.zeros_like(pred)
    return pred, target


def test_per_trajectory_mse_by_hand():
    pred, target = _data()
    # trajectory 0: (1 + 4 + 0 + 0)/4 = 1.25; 1: 1; 2: (9 + 4)/4 = 3.25
    assert torch.equal(per_trajectory_mse(pred, target), torch.tensor([1.25, 1.0, 3.25]))
    # body with coordinate 0 only: (1+0)/2, (1+1)/2, (0+4)/2
    assert torch.equal(per_trajectory_mse(pred, target, [0]), torch.tensor([0.5, 1.0, 2.0]))
    mean, std = trajectory_mse(pred, target)
    values = np.array([1.25, 1.0, 3.25]) * 100
    assert float(mean) == pytest.approx(values.mean())
    assert float(std) == pytest.approx(values.std())  # population std, like numpy


def test_metric_accumulates_over_batches_like_functional():
    pred, target = _data()
    metric = TrajectoryMSE()
    metric.update(pred[:1], target[:1])
    metric.update(pred[1:], target[1:])
    mean, std = metric.compute_mean_std()
    fmean, fstd = trajectory_mse(pred, target)
    assert float(mean) == pytest.approx(float(fmean), rel=1e-6)
    assert float(std) == pytest.approx(float(fstd), rel=1e-5)
    assert float(metric.compute()) == pytest.approx(float(fmean), rel=1e-6)
    metric.reset()
    assert torch.isnan(metric.compute())


def test_per_body_metric_and_energy():
    pred, target = _data()
    body = TrajectoryMSE(indices=[1], scale=1.0)
    body.update(pred, target)
    # coordinate 1: (4+0)/2, (1+1)/2, (9+0)/2
    assert float(body.compute()) == pytest.approx((2.0 + 1.0 + 4.5) / 3)

    def energy(x):
        return x[..., 0] ** 2 + x[..., 1] ** 2

    e = EnergyMSE(energy, scale=1.0)
    e.update(pred, target)
    # energies of pred: traj0 [5, 0], traj1 [2, 2], traj2 [9, 4]; target energy 0
    per_traj = np.array([(25 + 0) / 2, (4 + 4) / 2, (81 + 16) / 2])
    mean, std = e.compute_mean_std()
    assert float(mean) == pytest.approx(per_traj.mean())
    assert float(std) == pytest.approx(per_traj.std(), rel=1e-5)
    fmean, _ = energy_mse(pred, target, energy, scale=1.0)
    assert float(fmean) == pytest.approx(per_traj.mean())


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        per_trajectory_mse(torch.zeros(2, 3, 2), torch.zeros(2, 4, 2))
    with pytest.raises(TypeError, match="energy must be callable"):
        EnergyMSE(energy=3)
