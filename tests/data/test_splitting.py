"""split_trajectories: whole trajectories or leading points, in order, with clear errors."""

import numpy as np
import pytest

from pl_pac_trs.data.splitting import check_fractions, split_trajectories


def _numbered(m, n):
    ts = [np.arange(n, dtype=float) + 100 * i for i in range(m)]
    xs = [t[:, None] * np.ones((1, 2)) for t in ts]
    return ts, xs


def test_by_trajectory_in_order():
    ts, xs = _numbered(10, 5)
    splits = split_trajectories(ts, xs, "trajectory", 0.7, 0.1, where="w")
    first = {k: [t[0] for t, _ in v] for k, v in splits.items()}
    assert first == {
        "train": [0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0],
        "val": [700.0],
        "test": [800.0, 900.0],
    }
    assert splits["test"][1][1] is xs[9]


def test_by_time_leading_points():
    ts, xs = _numbered(2, 20)
    splits = split_trajectories(ts, xs, "time", 0.5, 0.25, where="w")
    assert [len(t) for t, _ in splits["train"]] == [10, 10]
    assert splits["val"][1][0].tolist() == [110.0, 111.0, 112.0, 113.0, 114.0]
    assert splits["test"][0][0].tolist() == [15.0, 16.0, 17.0, 18.0, 19.0]
    assert np.array_equal(splits["test"][0][1][:, 0], splits["test"][0][0])
    no_val = split_trajectories(ts, xs, "time", 0.5, 0.05, where="w")  # 1 val point: no window
    assert no_val["val"] == [] and no_val["test"][1][0].tolist() == [111.0 + k for k in range(9)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("trajectory", 0.2, 0.1, 3), r"w: 3 trajectories give 0 training and 3 test"),
        (("time", 0.5, 0.4, 1), r"w: trajectory 0 has 10 points, too few to split by time"),
        (("random", 0.5, 0.1, 3), r"split must be one of \('trajectory', 'time'\)"),
        (("time", 0.7, 0.3, 3), r"train_fraction \+ val_fraction must be < 1"),
    ],
)
def test_errors(args, message):
    split, train, val, m = args
    ts, xs = _numbered(m, 10)
    with pytest.raises(ValueError, match=message):
        split_trajectories(ts, xs, split, train, val, where="w")


def test_check_fractions():
    assert check_fractions(0.6, 0.0) == (0.6, 0.0)
    with pytest.raises(ValueError, match=r"val_fraction must lie in \[0, 1\)"):
        check_fractions(0.6, -0.1)
