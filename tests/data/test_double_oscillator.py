"""DoubleOscillatorDataModule: parsing against the record, split, windows, download, errors."""

import numpy as np
import pytest
import torch

from pl_pac_trs.data import DoubleOscillatorDataModule
from pl_pac_trs.data.double_oscillator import DOUBLE_OSCILLATOR_URL, load_double_oscillator


def test_parsing_matches_file(record_path):
    t, x = load_double_oscillator(record_path)
    assert t.shape == (495,) and x.shape == (495, 4)
    first = record_path.read_text().splitlines()[0].split()
    assert t[0] == float(first[1]) == 0.033
    np.testing.assert_array_equal(x[0], np.array([float(v) for v in first[2:]]) / 100)
    assert x[0, 0] == 0.0 and x[0, 1] == -1.43  # [q1, q2, p1, p2] = columns 2..5 / 100
    last = record_path.read_text().splitlines()[-1].split()
    np.testing.assert_array_equal(x[-1], np.array([float(v) for v in last[2:]]) / 100)


def test_split_windows_and_test_rollout(record_path):
    dm = DoubleOscillatorDataModule(path=str(record_path))
    assert dm.state_dim == 4 and dm.position_dim == 2 and dm.energy is None
    assert dm.bodies == {"body1": [0, 2], "body2": [1, 3]}
    dm.setup()
    t, x = load_double_oscillator(record_path)
    # int(495 * 0.6) = 297 training points -> 29 consecutive windows of 10 steps.
    w = dm.train_dataset.data
    assert w["x0"].shape == (29, 4) and w["y"].shape == (29, 10, 4)
    assert torch.equal(w["x0"][28], torch.as_tensor(x[280], dtype=torch.float32))
    assert torch.equal(w["y"][28][-1], torch.as_tensor(x[290], dtype=torch.float32))
    assert torch.equal(w["t"][1], torch.as_tensor(t[10:21], dtype=torch.float32))
    test = next(iter(dm.test_dataloader()))
    assert test["x0"].shape == (1, 4) and test["y"].shape == (1, 197, 4)
    assert torch.equal(test["x0"][0], torch.as_tensor(x[297], dtype=torch.float32))
    assert torch.equal(test["t"][0], torch.as_tensor(t[297:], dtype=torch.float32))
    assert dm.val_dataloader() == []
    full = next(iter(dm.train_dataloader()))
    assert full["x0"].shape == (29, 4)  # full batch


def test_validation_part(record_path):
    dm = DoubleOscillatorDataModule(path=str(record_path), train_fraction=0.5, val_fraction=0.2)
    dm.setup()
    # 247 train points -> 24 windows; 99 val points -> 9 windows; 149 test points.
    assert len(dm.train_dataset) == 24 and len(dm.val_dataset) == 9
    assert dm.test_dataset[0]["y"].shape == (148, 4)


def test_download_from_localhost(served_record, tmp_path, record_path):
    url, _ = served_record
    dm = DoubleOscillatorDataModule(url=url, cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    assert (tmp_path / "cache" / "real_double_linear_h_1.txt").is_file()
    dm.setup()
    local = DoubleOscillatorDataModule(path=str(record_path))
    local.setup()
    for key in ("x0", "t", "y"):
        assert torch.equal(dm.train_dataset.data[key], local.train_dataset.data[key])


def test_download_checksum_mismatch(served_record, tmp_path):
    url, _ = served_record
    dm = DoubleOscillatorDataModule(url=url, sha256="1" * 64, cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"checksum mismatch for http://127\.0\.0\.1"):
        dm.prepare_data()
    assert list((tmp_path / "c").iterdir()) == []


def test_default_url_points_to_reference_record():
    dm = DoubleOscillatorDataModule()
    assert dm.url == DOUBLE_OSCILLATOR_URL and dm.url.endswith("real_double_linear_h_1.txt")


def _write_rows(path, rows):
    path.write_text("\n".join(" ".join(str(v) for v in r) for r in rows) + "\n")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[0, 0.1, 1, 2, 3, 4], [0, 0.2, 1, 2, 3]], r"line 2: found 5 columns, expected 6"),
        ([[0, 0.1, 1, 2, 3, 4], [0, 0.2, 1, "nan", 3, 4]], r"line 2, column 4: .* NaN or inf"),
        ([[0, 0.1, 1, 2, 3, 4], [0, 0.2, 1, "inf", 3, 4]], r"line 2, column 4: .* NaN or inf"),
        ([[0, 0.1, 1, 2, 3, 4], [0, 0.1, 1, 2, 3, 4]], r"time grid is not strictly increasing"),
        ([[0, 0.1, 1, 2, 3, 4], [0, 0.2, 1, "x", 3, 4]], r"line 2, column 4: 'x' is not a number"),
    ],
)
def test_file_errors_name_file_and_line(tmp_path, rows, message):
    path = tmp_path / "bad.txt"
    _write_rows(path, rows)
    with pytest.raises(ValueError, match=message) as info:
        DoubleOscillatorDataModule(path=str(path)).setup()
    assert str(path) in str(info.value)


def test_argument_errors(record_path, tmp_path):
    with pytest.raises(ValueError, match=r"either path= .* or url="):
        DoubleOscillatorDataModule(path=str(record_path), url="http://127.0.0.1/x.txt")
    with pytest.raises(FileNotFoundError, match=r"absent\.txt"):
        DoubleOscillatorDataModule(path=str(tmp_path / "absent.txt"))
    with pytest.raises(ValueError, match=r"train_fraction must lie in \(0, 1\)"):
        DoubleOscillatorDataModule(path=str(record_path), train_fraction=1.0)
    with pytest.raises(ValueError, match="train_fraction \\+ val_fraction must be < 1"):
        DoubleOscillatorDataModule(path=str(record_path), val_fraction=0.4)
    with pytest.raises(ValueError, match="hold no window of time_horizon=400"):
        DoubleOscillatorDataModule(path=str(record_path), time_horizon=400).setup()
