"""TrajectoryDataModule, driven through a minimal subclass: windows, rollouts, loaders, errors."""

import numpy as np
import pytest
import torch

from pl_pac_trs.data import TrajectoryDataModule


class Lines(TrajectoryDataModule):
    """Straight lines ``x = (t, -t)`` offset by the trajectory number; test: two lengths."""

    name, state_dim = "lines", 2

    def __init__(self, test_points=(21, 21), **kwargs):
        super().__init__(**kwargs)
        self.test_points = test_points
        self.loads = 0

    def load_splits(self, write_cache=False):
        self.loads += 1

        def line(i, n):
            t = np.linspace(0.0, 1.0, n) + i
            return t, np.stack([t, -t], axis=1)

        return {
            "train": [line(i, 21) for i in range(2)],
            "val": [line(10, 21)],
            "test": [line(20 + i, n) for i, n in enumerate(self.test_points)],
        }


def test_windows_rollouts_and_full_batches():
    dm = Lines(time_horizon=5)
    dm.setup()
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (8, 4, 2)
    (batch,) = list(dm.train_dataloader())  # batch_size=None: one full batch
    starts = sorted(batch["t"][:, 0].tolist())
    np.testing.assert_allclose(starts, [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75], atol=1e-6)
    torch.testing.assert_close(batch["y"][..., 1], -batch["y"][..., 0], rtol=0, atol=0)
    test = next(iter(dm.test_dataloader()))
    assert test["index"].tolist() == [0, 1] and test["y"].shape == (2, 20, 2)
    assert torch.equal(test["x0"], torch.tensor([[20.0, -20.0], [21.0, -21.0]]))
    predict = next(iter(dm.predict_dataloader()))
    assert all(torch.equal(predict[k], test[k]) for k in test)
    dm.setup()  # a second setup reuses the datasets and loads nothing again
    assert dm.loads == 1


def test_batch_sizes_and_trajectories_helper():
    dm = Lines(time_horizon=5, batch_size=3, windows="sliding")
    assert [len(b["x0"]) for b in dm.train_dataloader()] == [3] * 10 + [2]  # 2 x 16 windows
    t, x = dm.trajectories("val")
    assert len(t) == 1 and t[0][0] == 10.0 and x[0].shape == (21, 2)
    with pytest.raises(ValueError, match="split must be one of"):
        dm.trajectories("train+val")


def test_test_trajectories_of_different_lengths():
    dm = Lines(test_points=(21, 31))
    dm.setup()
    assert dm.test_batch_size == 1 and [len(b["t"][0]) for b in dm.test_dataloader()] == [21, 31]
    with pytest.raises(ValueError, match=r"Lines: test trajectories have different lengths"):
        Lines(test_points=(21, 31), test_batch_size=2).setup()


def test_no_window_fits():
    with pytest.raises(ValueError, match="Lines: no training window of time_horizon=25"):
        Lines(time_horizon=25).setup()


def test_base_arguments_picks_the_base_parameters():
    local = {"self": None, "alpha": 1.0, "time_horizon": 5, "windows": "sliding", "num_workers": 0}
    assert TrajectoryDataModule.base_arguments(local) == {
        "time_horizon": 5,
        "windows": "sliding",
        "num_workers": 0,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"time_horizon": 0}, "time_horizon must be an integer >= 1"),
        ({"windows": "random"}, "windows must be one of"),
        ({"test_batch_size": 0}, "test_batch_size must be an integer >= 1"),
        ({"num_workers": -1}, "num_workers must be an integer >= 0"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Lines(**kwargs)
