"""``load_torch_file``: whatever bytes a file holds, a bad one is one short ``ValueError``."""

from __future__ import annotations

import random
import warnings

import pytest
import torch

from pl_pac_trs.serialization import UnsafeFileError, load_torch_file


def _assert_unreadable(path, what="--ckpt_path"):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray "Detected pickle protocol" warnings either
        with pytest.raises(ValueError) as info:
            load_torch_file(path, what=what)
    assert not isinstance(info.value, UnsafeFileError)
    text = str(info.value)
    assert text.startswith(f"{what} {str(path)!r} is not a readable torch checkpoint")
    assert len(text.splitlines()) <= 3


@pytest.mark.parametrize("prefix", [b"", b"\x80\x02", b"PK\x03\x04"], ids=["raw", "pickle", "zip"])
def test_random_bytes_are_unreadable_not_a_crash(tmp_path, prefix):
    # Random bytes reach the unpickler's IndexError / KeyError / struct.error paths (seed 2 and
    # 20 of the raw case did in CI); each must come out as the one ValueError.
    path = tmp_path / "garbage.ckpt"
    for seed in range(150):
        rng = random.Random(seed)
        path.write_bytes(prefix + rng.randbytes(rng.choice([1, 7, 64, 2000])))
        _assert_unreadable(path)


def test_every_truncation_of_a_real_checkpoint_is_unreadable(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.arange(6.0)}, "epoch": 3}, good)
    data = good.read_bytes()
    cut = tmp_path / "cut.ckpt"
    for n in range(1, len(data), max(1, len(data) // 97)):
        cut.write_bytes(data[:n])
        _assert_unreadable(cut, what="masks file")
    assert torch.equal(load_torch_file(good)["state_dict"]["w"], torch.arange(6.0))
