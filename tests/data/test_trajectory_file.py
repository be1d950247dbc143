"""TrajectoryFileDataModule and read_trajectory_file: npz and csv formats, splits, errors."""

import numpy as np
import pytest
import torch

from pl_pac_trs.data import TrajectoryFileDataModule
from pl_pac_trs.data.trajectory_file import read_trajectory_file


def _trajectories(m=10, n=21, d=2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 5, size=(m, n)), axis=1) + np.arange(n) * 1e-3
    x = rng.normal(size=(m, n, d))
    return t, x


def _write_csv(path, t, x, with_id=True, extra_header=None):
    d = x.shape[-1]
    header = (["trajectory"] if with_id else []) + ["t"] + [f"s{k}" for k in range(d)]
    lines = [",".join(extra_header or header)]
    for i in range(len(t)):
        for j in range(len(t[i])):
            values = [float(t[i][j]), *(float(v) for v in x[i][j])]
            row = ([str(i)] if with_id else []) + [repr(v) for v in values]
            lines.append(",".join(row))
    path.write_text("\n".join(lines) + "\n")


def test_npz_per_trajectory_grids_and_trajectory_split(tmp_path):
    t, x = _trajectories()
    path = tmp_path / "mine.npz"
    np.savez(path, t=t, x=x)
    dm = TrajectoryFileDataModule(str(path), time_horizon=5, position_dim=1)
    assert dm.state_dim == 2 and dm.position_dim == 1 and dm.name == "mine"
    dm.setup()
    # 10 trajectories: 7 train, 1 val, 2 test; 20 steps -> 4 windows each.
    assert len(dm.train_dataset) == 28 and len(dm.val_dataset) == 4 and len(dm.test_dataset) == 2
    w = dm.train_dataset.data
    assert torch.equal(w["t"][5], torch.as_tensor(t[1][5:11], dtype=torch.float32))
    assert torch.equal(w["y"][5], torch.as_tensor(x[1][6:11], dtype=torch.float32))
    test = next(iter(dm.test_dataloader()))
    assert torch.equal(test["x0"], torch.as_tensor(x[8:, 0], dtype=torch.float32))
    assert torch.equal(test["t"], torch.as_tensor(t[8:], dtype=torch.float32))
    assert test["y"].shape == (2, 20, 2)


def test_npz_shared_grid_single_trajectory_time_split(tmp_path):
    t = np.linspace(0, 1, 51)
    x = np.stack([np.sin(t), np.cos(t)], axis=1)
    path = tmp_path / "one.npz"
    np.savez(path, t=t, x=x)
    dm = TrajectoryFileDataModule(str(path), split="time", train_fraction=0.6, val_fraction=0.0)
    dm.setup()
    assert len(dm.train_dataset) == 2  # 30 points = 29 steps -> 2 windows of 10
    test = dm.test_dataset[0]
    assert torch.equal(test["x0"], torch.as_tensor(x[30], dtype=torch.float32))
    assert test["y"].shape == (20, 2)


def test_csv_matches_npz(tmp_path):
    t, x = _trajectories(m=6, n=16, d=3, seed=1)
    np.savez(tmp_path / "a.npz", t=t, x=x)
    _write_csv(tmp_path / "a.csv", t, x)
    ts_n, xs_n = read_trajectory_file(tmp_path / "a.npz")
    ts_c, xs_c = read_trajectory_file(tmp_path / "a.csv")
    for a, b in zip(ts_n + xs_n, ts_c + xs_c, strict=True):
        np.testing.assert_array_equal(a, b)
    dm_n = TrajectoryFileDataModule(str(tmp_path / "a.npz"), time_horizon=3)
    dm_c = TrajectoryFileDataModule(str(tmp_path / "a.csv"), time_horizon=3, windows="sliding")
    dm_n.setup(), dm_c.setup()
    assert len(dm_n.train_dataset) == 4 * 5 and len(dm_c.train_dataset) == 4 * 13


def test_csv_interleaved_rows_column_selection_and_ragged(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(
        "p,t,trajectory,q\n"
        + "".join(f"{-k},{k * 0.1},7,{k}\n" for k in range(12))
        + "".join(f"{10 * k},{k * 0.2},3,{-k}\n" for k in range(15))
    )
    ts, xs = read_trajectory_file(path, state_columns=["q", "p"])
    assert [len(t) for t in ts] == [12, 15]
    np.testing.assert_array_equal(xs[0][4], [4.0, -4.0])  # q first, as requested
    dm = TrajectoryFileDataModule(
        str(path), state_columns=["q", "p"], train_fraction=0.5, val_fraction=0.0, time_horizon=4
    )
    dm.setup()
    assert len(dm.train_dataset) == 2 and len(dm.test_dataset) == 1


def test_ragged_test_trajectories_are_rolled_out_one_by_one(tmp_path):
    path = tmp_path / "r.csv"
    rows = "".join(f"{i},{k * 0.1},{k}\n" for i, n in enumerate((12, 12, 14, 15)) for k in range(n))
    path.write_text("trajectory,t,s\n" + rows)
    split = dict(train_fraction=0.5, val_fraction=0.0, time_horizon=4)
    dm = TrajectoryFileDataModule(str(path), **split)  # default: all in one batch cannot be
    assert [b["y"].shape[1] for b in dm.test_dataloader()] == [13, 14]
    assert dm.test_batch_size == 1
    dm2 = TrajectoryFileDataModule(str(path), test_batch_size=2, **split)
    with pytest.raises(ValueError, match=r"r\.csv: test trajectories have different lengths"):
        dm2.setup("fit")  # at setup, before any training


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("trajectory,t,s\n0,0.0,1\n0,0.1,nan\n", r"line 3, column 3: value 'nan' is NaN"),
        ("trajectory,t,s\n0,0.0,1\n0,0.1\n", r"line 3: found 2 columns, expected 3"),
        ("trajectory,t,s\n0,0.0,1\n0,0.0,2\n", r"\(trajectory 0\): time grid is not strictly"),
        ("trajectory,time,s\n0,0.0,1\n", r"no time column 't'"),
    ],
)
def test_csv_errors_name_file(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        TrajectoryFileDataModule(str(path))
    assert str(path) in str(info.value)


def test_npz_errors(tmp_path):
    t, x = _trajectories(m=4, n=12)
    cases = {
        "missing.npz": ({"x": x}, r"missing array\(s\) \['t'\]"),
        "shape.npz": ({"t": t[:, :5], "x": x}, r"t has shape \(4, 5\), expected"),
        "nan.npz": (
            {"t": t, "x": np.where(np.arange(12)[None, :, None] == 3, np.nan, x)},
            r"array x has NaN or inf at index \(0, 3, 0\)",
        ),
        "order.npz": ({"t": t[:, ::-1], "x": x}, r"\(trajectory 0\): time grid is not strictly"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(ValueError, match=message):
            TrajectoryFileDataModule(str(tmp_path / name))
    with pytest.raises(ValueError, match=r"unsupported file type '\.txt'"):
        (tmp_path / "a.txt").write_text("1 2\n")
        TrajectoryFileDataModule(str(tmp_path / "a.txt"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TrajectoryFileDataModule(str(tmp_path / "none.npz"))


def test_argument_errors(tmp_path):
    t, x = _trajectories(m=3, n=12)
    path = tmp_path / "a.npz"
    np.savez(path, t=t, x=x)
    with pytest.raises(ValueError, match=r"position_dim=2 leaves no momentum.*a\.npz"):
        TrajectoryFileDataModule(str(path), position_dim=2)
    x3 = np.concatenate([x, x[..., :1]], axis=-1)  # [q1, q2, p]: an uneven split is fine
    np.savez(tmp_path / "b.npz", t=t, x=x3)
    assert TrajectoryFileDataModule(str(tmp_path / "b.npz"), position_dim=2).position_dim == 2
    with pytest.raises(ValueError, match="split must be one of"):
        TrajectoryFileDataModule(str(path), split="random")
    with pytest.raises(ValueError, match=r"val_fraction must lie in \[0, 1\)"):
        TrajectoryFileDataModule(str(path), val_fraction=-0.1)
    with pytest.raises(ValueError, match="3 trajectories give 0 training"):
        TrajectoryFileDataModule(str(path), train_fraction=0.2)
    with pytest.raises(ValueError, match="bodies"):
        TrajectoryFileDataModule(str(path), bodies={"a": [0, 5]})
    with pytest.raises(ValueError, match="no training window of time_horizon=20"):
        TrajectoryFileDataModule(str(path), time_horizon=20).setup()
