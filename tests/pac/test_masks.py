import pytest
import torch
from pac_tiny import TinyNet

from pl_pac_trs.pac import load_masks, mask_sparsity, save_masks, validate_masks
from pl_pac_trs.pac.state import CHECKPOINT_KEY


def _masks():
    return {"body.0.weight": torch.rand(8, 5) > 0.5, "head.weight": torch.rand(1, 8) > 0.5}


def test_save_load_roundtrip_bool(tmp_path):
    masks = _masks()
    path = save_masks(masks, tmp_path / "sub" / "m.pt", amount=0.5)
    loaded = load_masks(path)
    assert set(loaded) == set(masks)
    assert all(loaded[k].dtype == torch.bool and torch.equal(loaded[k], masks[k]) for k in masks)
    assert not (tmp_path / "sub" / "m.pt.tmp").exists()


def test_load_from_a_checkpoint_pac_state(tmp_path):
    masks = _masks()
    torch.save({CHECKPOINT_KEY: {"masks": masks}, "state_dict": {}}, tmp_path / "d")
    assert set(load_masks(tmp_path / "d")) == set(masks)
    assert torch.equal(load_masks(tmp_path / "d")["head.weight"], masks["head.weight"])


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_masks(tmp_path / "missing")
    torch.save({"state_dict": {}}, tmp_path / "nomasks.ckpt")
    with pytest.raises(ValueError, match="carries no PAC-Net masks"):
        load_masks(tmp_path / "nomasks.ckpt")
    torch.save({CHECKPOINT_KEY: {"masks": {"a": torch.ones(2)}}}, tmp_path / "float.ckpt")
    with pytest.raises(ValueError, match=r"'a' must be a torch\.bool tensor"):
        load_masks(tmp_path / "float.ckpt")
    (tmp_path / "garbage").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        load_masks(tmp_path / "garbage")


def test_validate_names_first_mismatch():
    model = TinyNet(hidden=(8,))
    assert set(validate_masks(_masks(), model)) == {"body.0.weight", "head.weight"}
    bad = {
        "body.0.weight": torch.ones(8, 4, dtype=torch.bool),
        "head.weight": torch.ones(2, 2, dtype=torch.bool),
    }
    with pytest.raises(ValueError, match=r"'body\.0\.weight' has shape \(8, 4\)"):
        validate_masks(bad, model)
    with pytest.raises(ValueError, match="'x' names no parameter"):
        validate_masks({"x": torch.ones(1, dtype=torch.bool)}, model)


def test_sparsity():
    s = mask_sparsity({"a": torch.tensor([True, False, False, False]), "b": torch.ones(4) > 0})
    assert s == {"global": 3 / 8, "a": 0.75, "b": 0.0}
