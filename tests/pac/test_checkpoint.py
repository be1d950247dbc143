"""FinalCheckpoint: the model as the fit leaves it (after end-of-fit pruning), at a fixed path."""

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from pac_tiny import TinyData, TinyNet, trainer

from pl_pac_trs.pac import CHECKPOINT_KEY, FinalCheckpoint, MagnitudePruning, load_masks


def test_written_after_end_of_fit_pruning_with_masks(tmp_path):
    path = tmp_path / "stage" / "source_pruned.ckpt"
    path.parent.mkdir()
    path.write_bytes(b"an older checkpoint")
    prune = MagnitudePruning(amount=0.6)
    last = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    model = TinyNet(hidden=(8,))
    t = trainer(tmp_path, callbacks=[prune, FinalCheckpoint(path), last], enable_checkpointing=True)
    t.fit(model, TinyData())
    saved = torch.load(path, weights_only=False)
    assert set(saved[CHECKPOINT_KEY]["masks"]) == set(prune.masks)
    for name, mask in prune.masks.items():
        w = saved["state_dict"][name]
        assert torch.equal(w, model.state_dict()[name])
        assert torch.equal(w[~mask], torch.zeros_like(w[~mask]))
    assert all(torch.equal(load_masks(path)[k], m) for k, m in prune.masks.items())
    assert not list(path.parent.glob("*.partial"))
    # why it exists: ModelCheckpoint saved at the last epoch end, before pruning
    assert CHECKPOINT_KEY not in torch.load(tmp_path / "ck" / "last.ckpt", weights_only=False)


def test_must_follow_magnitude_pruning(tmp_path):
    callbacks = [FinalCheckpoint(tmp_path / "x.ckpt"), MagnitudePruning()]
    model = TinyNet()
    with pytest.raises(ValueError, match="listed after MagnitudePruning"):
        trainer(tmp_path, callbacks=callbacks).fit(model, TinyData())
    assert model.global_step == 0 and not (tmp_path / "x.ckpt").exists()


def test_bad_path(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        FinalCheckpoint(tmp_path)
    with pytest.raises(ValueError, match="non-empty"):
        FinalCheckpoint("")
