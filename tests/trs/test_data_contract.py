from types import SimpleNamespace

import pytest
import torch

from pl_pac_trs.data import (
    DoubleOscillatorDataModule,
    DuffingDataModule,
    StrangeAttractorDataModule,
)
from pl_pac_trs.trs import DataInfo, TrajectoryData, trajectory_data, unpack_batch


def _info(dm):
    return trajectory_data(SimpleNamespace(datamodule=dm))


def test_the_shipped_datamodules_follow_the_contract():
    duffing = DuffingDataModule(alpha=1.0, beta=0.0)
    info = _info(duffing)
    assert isinstance(duffing, TrajectoryData)
    assert (info.name, info.state_dim, info.position_dim, info.bodies) == ("duffing", 2, 1, None)
    x = torch.tensor([[1.0, 2.0]])
    assert torch.equal(info.energy(x), duffing.energy(x)) and info.true_field is None
    attractor = _info(StrangeAttractorDataModule())
    assert (attractor.state_dim, attractor.position_dim, attractor.energy) == (3, None, None)
    assert attractor.true_field is not None
    double = _info(DoubleOscillatorDataModule.__new__(DoubleOscillatorDataModule))
    assert double.bodies == {"body1": [0, 2], "body2": [1, 3]} and double.position_dim == 2


def test_no_datamodule_is_no_info_and_a_partial_one_is_named():
    assert trajectory_data(None) is None
    assert trajectory_data(SimpleNamespace(datamodule=None)) is None
    partial = SimpleNamespace(state_dim=2, position_dim=1)
    with pytest.raises(TypeError, match=r"SimpleNamespace does not declare \['bodies'\]"):
        _info(partial)
    unknown = _info(SimpleNamespace(state_dim=0, position_dim=None, bodies={}))
    assert unknown == DataInfo(state_dim=None, position_dim=None, bodies=None)


def test_unpack_batch_checks_shapes_and_time_order():
    x0, t, y = torch.zeros(4, 2), torch.linspace(0, 1, 6).expand(4, 6), torch.zeros(4, 5, 2)
    assert unpack_batch({"x0": x0, "t": t, "y": y, "index": None}, "train") == (x0, t, y)
    with pytest.raises(ValueError, match="train batches must be dicts with keys"):
        unpack_batch((x0, t, y), "train")
    with pytest.raises(ValueError, match=r"\(val\): inconsistent batch shapes"):
        unpack_batch({"x0": x0, "t": t, "y": y[:, :4]}, "val")
    with pytest.raises(ValueError, match=r"\(test\): expected x0 \(B, D\)"):
        unpack_batch({"x0": x0[0], "t": t, "y": y}, "test")
    with pytest.raises(ValueError, match="not strictly increasing"):
        unpack_batch({"x0": x0, "t": t.flip(1), "y": y}, "train")
    # unchecked: only the keys are read (the per-step path after the first batch)
    assert (
        unpack_batch({"x0": x0, "t": t.flip(1), "y": y}, "train", check=False)[1].shape == t.shape
    )
