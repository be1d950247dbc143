"""The .npz cache: atomic writes, digest verification, regeneration of corrupt files."""

import numpy as np
import pytest
import torch

from pl_pac_trs.data import DuffingDataModule
from pl_pac_trs.data import cache as cache_module
from pl_pac_trs.data.cache import cache_path, load_cached_arrays, save_arrays_atomic

SMALL = {"num_train": 3, "num_val": 1, "num_test": 2, "test_steps": 20, "test_span": 2.0}


def test_roundtrip_and_corruption(tmp_path):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.array([1, 2])}
    path = save_arrays_atomic(tmp_path / "sub" / "c.npz", arrays)
    loaded = load_cached_arrays(path, required=("a", "b"))
    assert set(loaded) == {"a", "b"} and np.array_equal(loaded["a"], arrays["a"])
    assert load_cached_arrays(path, required=("missing",)) is None
    assert [p.name for p in path.parent.iterdir()] == ["c.npz"]  # no temporary file left
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # truncated
    assert load_cached_arrays(path) is None
    # Same length, one flipped byte inside the data of array "a".
    i = raw.index(np.arange(6.0).tobytes()) + 9
    path.write_bytes(raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1 :])
    assert load_cached_arrays(path) is None
    assert load_cached_arrays(tmp_path / "absent.npz") is None


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = save_arrays_atomic(tmp_path / "c.npz", {"a": np.zeros(3)})
    before = path.read_bytes()
    with pytest.raises(TypeError, match="object arrays"):
        save_arrays_atomic(path, {"a": np.ones(3), "bad": np.array([object()], dtype=object)})

    def savez_then_fail(f, **arrays):
        f.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.np, "savez", savez_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_arrays_atomic(path, {"a": np.ones(3)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]


def test_key_depends_on_every_argument(tmp_path):
    assert cache_path(tmp_path, "x", {"a": 1}) != cache_path(tmp_path, "x", {"a": 2})
    a = DuffingDataModule(cache_dir=str(tmp_path), **SMALL)
    b = DuffingDataModule(cache_dir=str(tmp_path), noise_std=0.2, **SMALL)
    c = DuffingDataModule(cache_dir=str(tmp_path), time_horizon=5, **SMALL)
    assert a.cache_file != b.cache_file
    assert a.cache_file == c.cache_file  # windowing does not change the generated data


def test_datamodule_writes_loads_and_regenerates(tmp_path, monkeypatch):
    dm = DuffingDataModule(cache_dir=str(tmp_path), **SMALL)
    dm.prepare_data()
    assert dm.cache_file.is_file()
    dm.setup()
    reference = dm.train_dataset.data

    def fail(self):
        raise AssertionError("generated although a valid cache exists")

    loaded = DuffingDataModule(cache_dir=str(tmp_path), **SMALL)
    monkeypatch.setattr(DuffingDataModule, "generate", fail)
    loaded.setup()
    for key in ("x0", "t", "y"):
        assert torch.equal(loaded.train_dataset.data[key], reference[key])
    monkeypatch.undo()

    dm.cache_file.write_bytes(b"not a zip file")
    fresh = DuffingDataModule(cache_dir=str(tmp_path), **SMALL)
    fresh.prepare_data()  # regenerates and rewrites the corrupt cache
    assert load_cached_arrays(fresh.cache_file) is not None
    fresh.setup()
    assert torch.equal(fresh.train_dataset.data["y"], reference["y"])


def test_setup_without_prepare_data_writes_nothing(tmp_path):
    dm = DuffingDataModule(cache_dir=str(tmp_path / "cache"), **SMALL)
    dm.setup()  # non-zero ranks: generate identically, never write
    assert not (tmp_path / "cache").exists()
