"""Pinned outputs: generated data, cache file names and the transfer splits do not change.

What is exact is pinned exactly: cache file names (a hash of the arguments), shapes, dtypes and
the digits splits (integer pixels and labels). Floats computed by scipy, numpy or libm are pinned
to a tolerance: their last bits differ between CPUs and library versions. A change to any of them
means existing caches would miss or results would not reproduce.
"""

import hashlib

import numpy as np
import pytest
import torch

from pl_pac_trs.data import DuffingDataModule, StrangeAttractorDataModule
from pl_pac_trs.data.digits import DigitsTransferDataModule
from pl_pac_trs.data.friedman import FriedmanTransferDataModule

DUFFING = {
    "alpha": -1.0,
    "beta": 1.0,
    "num_train": 3,
    "num_val": 2,
    "num_test": 2,
    "test_steps": 40,
    "test_span": 4.0,
}
ATTRACTOR = {
    "num_train": 3,
    "train_steps": 40,
    "train_span": 2.0,
    "num_val": 2,
    "num_test": 2,
    "test_steps": 60,
    "test_span": 3.0,
}
EXP3 = {
    "alpha": -0.2,
    "beta": 0.2,
    "delta": 0.15,
    "num_train": 200,
    "train_steps": 50,
    "train_span": 5.0,
    "noise_std": 0.05,
    "test_steps": 100,
    "test_span": 10.0,
}


def _summary(array) -> tuple[tuple[int, ...], float, float]:
    """Shape, sum and sum of squares: what a change of method, seed or split would move."""
    a = np.asarray(array, dtype=np.float64)
    return a.shape, float(a.sum()), float((a * a).sum())


def _check(summary, expected, rel: float) -> None:
    shape, total, squares = summary
    assert shape == expected[0]
    assert total == pytest.approx(expected[1], rel=rel, abs=rel)
    assert squares == pytest.approx(expected[2], rel=rel)


#: Floats from scipy's ``solve_ivp`` and numpy's ``sin``/``cos`` are not bit-stable across CPUs
#: and library versions (another CPU gave ``val_x[0, 3, 1]`` = ``-0.4475332608802378``, here
#: ``...379``): the solutions are compared to a relative tolerance far below any change of method,
#: seed or span, far above the last bits.
SOLVED = 1e-6


def test_generated_duffing_arrays_are_pinned():
    arrays = DuffingDataModule(**DUFFING).arrays()
    expected = {
        "test_t": ((41,), 82.0, 221.4),
        "test_x": ((2, 41, 2), 4.65654667599987, 114.37608446378108),
        "train_clean": ((3, 31, 2), 20.112202400874107, 119.3971434659129),
        "train_t": ((31,), 46.5, 94.55),
        "train_x": ((3, 31, 2), 18.55543376533963, 124.18013887583746),
        "val_t": ((31,), 46.5, 94.55),
        "val_x": ((2, 31, 2), -68.64445449837994, 63.73896077830216),
    }
    assert sorted(arrays) == sorted(expected)
    assert all(a.dtype == np.float64 for a in arrays.values())
    for name, pinned in expected.items():
        _check(_summary(arrays[name]), pinned, SOLVED)
    assert arrays["train_x"][1, 7, 0] == pytest.approx(0.11728677630733303, rel=SOLVED)
    assert arrays["val_x"][0, 3, 1] == pytest.approx(-0.4475332608802379, rel=SOLVED)
    assert arrays["test_x"][1, 40, 1] == pytest.approx(0.8341499477645672, rel=SOLVED)


def test_generated_attractor_arrays_are_pinned():
    arrays = StrangeAttractorDataModule(**ATTRACTOR).arrays()
    expected = {
        "test_t": ((61,), 91.5, 184.525),
        "test_x": ((2, 61, 3), 105.35326174500852, 369.8165447303967),
        "train_clean": ((3, 41, 3), 151.97498610396445, 339.93734729282295),
        "train_t": ((41,), 41.0, 55.35),
        "train_x": ((3, 41, 3), 152.16556110204664, 345.12813112592653),
        "val_t": ((41,), 41.0, 55.35),
        "val_x": ((2, 41, 3), 112.2901012825852, 291.8914248020372),
    }
    assert sorted(arrays) == sorted(expected)
    for name, pinned in expected.items():
        _check(_summary(arrays[name]), pinned, SOLVED)
    assert arrays["train_x"][2, 11, 1] == pytest.approx(-0.27696132460799616, rel=SOLVED)
    assert arrays["test_x"][0, 60, 2] == pytest.approx(0.7871945337685173, rel=SOLVED)


def test_cache_file_names_are_pinned(tmp_path):
    """Caches written before the restructuring still hit: same arguments, same file name."""
    names = {
        "small duffing": DuffingDataModule(cache_dir=str(tmp_path), **DUFFING),
        "exp I": DuffingDataModule(cache_dir=str(tmp_path)),
        "exp III": DuffingDataModule(cache_dir=str(tmp_path), **EXP3),
        "small attractor": StrangeAttractorDataModule(cache_dir=str(tmp_path), **ATTRACTOR),
        "exp VI": StrangeAttractorDataModule(cache_dir=str(tmp_path)),
    }
    assert {k: dm.cache_file.name for k, dm in names.items()} == {
        "small duffing": "duffing-ba3174e2e6faa075cd1d.npz",
        "exp I": "duffing-4e49b0bf58f76c563336.npz",
        "exp III": "duffing-da4b0ecc3a49fb8be25d.npz",
        "small attractor": "attractor-4cedaf9915721d3f9073.npz",
        "exp VI": "attractor-91c34a466d4361b807a1.npz",
    }
    assert all(dm.cache_file.parent == tmp_path for dm in names.values())


def _digest(datasets) -> str:
    h = hashlib.sha256()
    for dataset in datasets:
        for tensor in dataset.tensors:
            h.update(tensor.numpy().tobytes())
    return h.hexdigest()


def test_friedman_splits_are_pinned():
    """Inputs drawn from the seeds, targets through ``sin``: float32, to a tolerance."""
    expected = {
        "source": {
            "train": (((20, 10), 99.83698918391019, 65.16805681066164),
                      ((20, 1), -3.0738000571727753, 25.005706356820742)),
            "val": (((4, 10), 19.480738531798124, 12.71018899782849),
                    ((4, 1), -1.6619517803192139, 5.585178386010995)),
            "test": (((6, 10), 26.469186147674918, 15.573304485191112),
                     ((6, 1), -3.226471573114395, 5.715751282877478)),
        },
        "target": {
            "train": (((5, 10), 27.892903567757457, 19.973057208844242),
                      ((5, 1), -1.2214167714118958, 3.4046154011007594)),
            "val": (((4, 10), 20.936074095312506, 14.051779436903761),
                    ((4, 1), -2.9925893768668175, 4.868583134980531)),
            "test": (((6, 10), 29.803424554411322, 19.346923985639894),
                     ((6, 1), 0.4011351615190506, 6.501392795527845)),
        },
    }  # fmt: skip
    for task, splits in expected.items():
        dm = FriedmanTransferDataModule(task=task, n_source=20, n_target=5, n_val=4, n_test=6)
        dm.setup()
        sets = {"train": dm.train_set, "val": dm.val_set, "test": dm.test_set}
        for split, pinned in splits.items():
            x, y = sets[split].tensors
            assert x.dtype == y.dtype == torch.float32
            _check(_summary(x.numpy()), pinned[0], 1e-5)
            _check(_summary(y.numpy()), pinned[1], 1e-5)
    source = FriedmanTransferDataModule(n_source=20, n_val=4, n_test=6)
    source.setup()
    assert source.train_set.tensors[1][2].item() == pytest.approx(1.9632282257080078, rel=1e-5)


def test_digits_splits_are_pinned():
    """Bit-for-bit: the pixels are integers / 16 (exact in float32), the labels integers and the
    split a seeded permutation; no floating-point arithmetic can move them."""
    expected = {
        "source": ("7b8b9541f1792ccb0e74c251954f5a45ce04084dcd629c8a8600b5244c25e0d7", 439),
        "target": ("32d5a909a7ae4f6a275e1e0022b54cfcf13dd1c3ac3bc3e8b31842f2943b58a4", 20),
    }
    for task, (digest, n_train) in expected.items():
        dm = DigitsTransferDataModule(task=task)
        dm.setup()
        assert _digest([dm.sets[k] for k in ("train", "val", "test")]) == digest
        assert len(dm.sets["train"]) == n_train
