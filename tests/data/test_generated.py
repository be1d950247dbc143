"""GeneratedTrajectoryDataModule, driven through a minimal system: the split triple, the sizes,
the cache key, the older subclass protocol and the deprecated module alias."""

import numpy as np
import pytest

from pl_pac_trs.data import GeneratedTrajectoryDataModule

SIZES = {
    "num_train": 2,
    "train_steps": 10,
    "train_span": 1.0,
    "noise_std": 0.5,
    "num_val": 1,
    "num_test": 3,
    "test_steps": 20,
    "test_span": 4.0,
    "train_seed": 0,
    "val_seed": 10,
    "test_seed": 20,
}


class Ramp(GeneratedTrajectoryDataModule):
    """Trajectory ``i`` of seed ``s``: ``x = (s + i) * t``; observed adds ``noise_std``."""

    name, state_dim = "ramp", 1

    def __init__(self, slope_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.slope_scale = slope_scale
        self.calls = []

    def generation_args(self):
        return {"slope_scale": self.slope_scale, **super().generation_args()}

    def simulate(self, num, steps, span, noise_std, seed):
        self.calls.append((num, steps, span, noise_std, seed))
        t = np.linspace(0.0, span, steps + 1)
        slopes = self.slope_scale * (seed + np.arange(num, dtype=float))
        clean = slopes[:, None, None] * t[None, :, None]
        return t, clean, clean + noise_std


def test_train_val_noisy_test_clean():
    dm = Ramp(**SIZES)
    arrays = dm.arrays()
    assert dm.calls == [(2, 10, 1.0, 0.5, 0), (1, 10, 1.0, 0.5, 10), (3, 20, 4.0, 0.0, 20)]
    assert sorted(arrays) == [
        "test_t",
        "test_x",
        "train_clean",
        "train_t",
        "train_x",
        "val_t",
        "val_x",
    ]
    assert np.array_equal(arrays["train_x"], arrays["train_clean"] + 0.5)
    assert arrays["train_clean"][1, -1, 0] == 1.0  # seed 1, t = 1
    assert arrays["val_x"][0, -1, 0] == 10.5
    assert arrays["test_x"][:, -1, 0].tolist() == [80.0, 84.0, 88.0]  # clean, seeds 20..22
    assert dm.arrays() is arrays and len(dm.calls) == 3  # kept in memory


def test_cache_key_holds_the_sizes_and_the_systems_parameters(tmp_path):
    a = Ramp(cache_dir=str(tmp_path), **SIZES)
    assert a.generation_args() == {"slope_scale": 1.0, **SIZES}
    names = {
        Ramp(cache_dir=str(tmp_path), **{**SIZES, "noise_std": 0.1}).cache_file.name,
        Ramp(cache_dir=str(tmp_path), slope_scale=2.0, **SIZES).cache_file.name,
        a.cache_file.name,
    }
    assert len(names) == 3 and all(n.startswith("ramp-") for n in names)
    assert Ramp(cache_dir=str(tmp_path), time_horizon=5, **SIZES).cache_file == a.cache_file
    assert Ramp(**SIZES).cache_file is None


def test_sizes_are_checked():
    with pytest.raises(ValueError, match="time_horizon=11 exceeds train_steps=10"):
        Ramp(time_horizon=11, **SIZES)
    with pytest.raises(ValueError, match="seed ranges overlap: train_seed=0"):
        Ramp(**{**SIZES, "val_seed": 1})
    with pytest.raises(ValueError, match="test_span must be a finite number > 0"):
        Ramp(**{**SIZES, "test_span": -1.0})


def test_older_subclasses_that_store_their_sizes_still_work():
    class Older(Ramp):
        def __init__(self):
            super().__init__(cache_dir=None, time_horizon=5)
            self._set_sizes(**SIZES)

    dm = Older()
    dm.setup()
    assert len(dm.train_dataset) == 4 and dm.num_test == 3
