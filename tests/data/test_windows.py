"""Windowing, rollout items and batch collation."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pl_pac_trs.data.windows import (
    BatchDictDataset,
    check_time_grid,
    collate_batch,
    make_rollouts,
    make_windows,
    window_starts,
)


def test_window_starts_points_versus_steps():
    # 30 steps = 31 points give 3 consecutive windows of 10 steps (the reference count).
    assert window_starts(31, 10).tolist() == [0, 10, 20]
    assert window_starts(30, 10).tolist() == [0, 10]  # 29 steps: the last window would not fit
    assert window_starts(31, 10, "sliding").tolist() == list(range(21))
    assert window_starts(5, 10).size == 0 and window_starts(5, 10, "sliding").size == 0
    with pytest.raises(ValueError, match="windows must be one of"):
        window_starts(31, 10, "random")


def test_make_windows_contents_and_absolute_times():
    t = [np.linspace(0.0, 2.9, 30) + 5.0, np.cumsum(np.arange(1.0, 13.0))]  # non-uniform second
    x = [np.arange(60.0).reshape(30, 2), -np.arange(24.0).reshape(12, 2)]
    w = make_windows(t, x, time_horizon=4)
    # 29 steps -> 7 windows; 11 steps -> 2 windows; in trajectory order.
    assert w["x0"].shape == (9, 2) and w["t"].shape == (9, 5) and w["y"].shape == (9, 4, 2)
    for j in range(7):
        s = 4 * j
        assert torch.equal(w["x0"][j], torch.tensor(x[0][s], dtype=torch.float32))
        assert torch.equal(w["y"][j], torch.tensor(x[0][s + 1 : s + 5], dtype=torch.float32))
        assert torch.equal(w["t"][j], torch.tensor(t[0][s : s + 5], dtype=torch.float32))
    assert torch.equal(w["t"][8], torch.tensor(t[1][4:9], dtype=torch.float32))
    assert torch.equal(w["y"][8], torch.tensor(x[1][5:9], dtype=torch.float32))
    sliding = make_windows(t, x, time_horizon=4, windows="sliding")
    assert len(sliding["x0"]) == 26 + 8


def test_rollouts_and_collation():
    t = [np.linspace(0, 1, 6), np.linspace(0, 1, 6)]
    x = [np.ones((6, 3)), 2 * np.ones((6, 3))]
    items = make_rollouts(t, x)
    batch = collate_batch(items)
    assert batch["x0"].shape == (2, 3) and batch["t"].shape == (2, 6)
    assert batch["y"].shape == (2, 5, 3)
    assert torch.equal(batch["x0"][1], torch.full((3,), 2.0))
    assert torch.equal(batch["index"], torch.tensor([0, 1]))
    ragged = make_rollouts([np.linspace(0, 1, 6), np.linspace(0, 1, 4)], [x[0], x[1][:4]])
    with pytest.raises(ValueError, match="test_batch_size=1"):
        collate_batch(ragged)
    ds = BatchDictDataset(make_windows(t, x, time_horizon=2))
    assert len(ds) == 4 and ds[3]["x0"].tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="differ in leading size"):
        BatchDictDataset({"x0": torch.zeros(3, 2), "y": torch.zeros(4, 2)})


def test_check_time_grid_messages():
    check_time_grid(np.array([0.0, 0.1, 0.3]), "ok")
    with pytest.raises(ValueError, match=r"data\.csv: time grid is not strictly increasing"):
        check_time_grid(np.array([0.0, 0.2, 0.2]), "data.csv")
    with pytest.raises(ValueError, match="NaN or inf"):
        check_time_grid(np.array([0.0, np.nan]), "f")


@settings(max_examples=40)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    horizon=st.integers(1, 12),
    mode=st.sampled_from(["consecutive", "sliding"]),
)
def test_windows_property(lengths, horizon, mode):
    ts = [np.cumsum(np.full(n, 0.5)) + 10 * i for i, n in enumerate(lengths)]
    xs = [np.stack([t, -t], axis=1) for t in ts]  # the state encodes its own time
    w = make_windows(ts, xs, time_horizon=horizon, windows=mode)
    per = [(n - 1) // horizon if mode == "consecutive" else max(n - horizon, 0) for n in lengths]
    assert len(w["x0"]) == sum(per)
    assert w["t"].shape[1:] == (horizon + 1,) and w["y"].shape[1:] == (horizon, 2)
    assert torch.equal(w["x0"][:, 0], w["t"][:, 0]) and torch.equal(w["y"][:, :, 0], w["t"][:, 1:])
    if len(w["t"]):
        assert bool((w["t"].diff(dim=1) > 0).all())
    if mode == "consecutive" and len(w["t"]) > 1:
        first = w["t"][: per[0], 0] - ts[0][0]
        expected = torch.arange(per[0], dtype=torch.float32) * horizon * 0.5
        assert torch.equal(first, expected)
