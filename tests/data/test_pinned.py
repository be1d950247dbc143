"""Pinned outputs: generated data, cache file names and the transfer splits stay bit-for-bit.

The digests and values below were recorded before the datamodules were restructured (issue 18);
a change to any of them means existing caches would miss or results would not reproduce.
"""

import hashlib

from pl_pac_trs.data import DuffingDataModule, StrangeAttractorDataModule
from pl_pac_trs.data.cache import arrays_digest
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


def test_generated_duffing_arrays_are_pinned():
    arrays = DuffingDataModule(**DUFFING).arrays()
    assert arrays_digest(arrays) == (
        "465977dec4b0917dea661d330245f43b936196f72b70233aef61d6eca0d022ee"
    )
    assert arrays["train_x"][1, 7, 0] == 0.11728677630733303
    assert arrays["val_x"][0, 3, 1] == -0.4475332608802379
    assert arrays["test_x"][1, 40, 1] == 0.8341499477645672


def test_generated_attractor_arrays_are_pinned():
    arrays = StrangeAttractorDataModule(**ATTRACTOR).arrays()
    assert arrays_digest(arrays) == (
        "f8f1fb2136155f7b4e778b5d09e21c6093c1e7380b525efcac4273abb03f0d3d"
    )
    assert arrays["train_x"][2, 11, 1] == -0.27696132460799616
    assert arrays["test_x"][0, 60, 2] == 0.7871945337685173


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
    expected = {
        "source": ("c1535cf7ac227ed411dde452d47d36655b05468fd1581a4348104e28252fad78", 20),
        "target": ("2f9a4951a1e1626dbf33c74549ec5a6f5d694eba56e78ed176469e4286ad5685", 5),
    }
    for task, (digest, n_train) in expected.items():
        dm = FriedmanTransferDataModule(task=task, n_source=20, n_target=5, n_val=4, n_test=6)
        dm.setup()
        assert _digest([dm.train_set, dm.val_set, dm.test_set]) == digest
        assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (n_train, 4, 6)
    source = FriedmanTransferDataModule(n_source=20, n_val=4, n_test=6)
    source.setup()
    assert source.train_set.tensors[1][2].item() == 1.9632282257080078


def test_digits_splits_are_pinned():
    expected = {
        "source": ("7b8b9541f1792ccb0e74c251954f5a45ce04084dcd629c8a8600b5244c25e0d7", 439),
        "target": ("32d5a909a7ae4f6a275e1e0022b54cfcf13dd1c3ac3bc3e8b31842f2943b58a4", 20),
    }
    for task, (digest, n_train) in expected.items():
        dm = DigitsTransferDataModule(task=task)
        dm.setup()
        assert _digest([dm.sets[k] for k in ("train", "val", "test")]) == digest
        assert len(dm.sets["train"]) == n_train
