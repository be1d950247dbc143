"""The hand-off between PAC-Net callbacks: published on the fit's record, any listing order."""

import pytest
import torch
from invariants import check_allocate, check_calibrate, masks_for, snapshot
from pac_tiny import TinyData, TinyNet, trainer

from pl_pac_trs.pac import (
    FinalCheckpoint,
    GradientMask,
    LoadSourceWeights,
    MagnitudePruning,
)
from pl_pac_trs.pac.handoff import Handoff, SourceCheckpoint, handoff


def test_allocate_takes_pruning_masks_whichever_is_listed_first():
    models = []
    for order in (1, -1):
        torch.manual_seed(0)
        model = TinyNet(hidden=(8,), optimizer="adamw")
        prune = MagnitudePruning(amount=0.7, epoch=1, verbose=False)
        gm = GradientMask("allocate", verbose=False)
        trainer(callbacks=[prune, gm][::order], max_epochs=3).fit(model, TinyData())
        assert gm.masks is not None and gm.masks.keys() == prune.masks.keys()
        assert all(torch.equal(gm.masks[k], prune.masks[k]) for k in prune.masks)
        zeros = {k: torch.zeros_like(p) for k, p in model.state_dict().items()}
        check_allocate(model, prune.masks, zeros)  # pruned entries +0.0, essential ones trained
        models.append(model)
    for (name, a), b in zip(
        models[0].state_dict().items(), models[1].state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name  # the listing order changes no bit


def test_calibrate_takes_source_masks_whichever_is_listed_first(tmp_path):
    torch.manual_seed(0)
    source = TinyNet(hidden=(8,), batch_norm=True)
    masks = masks_for(source)
    state = snapshot(source)
    path = tmp_path / "source.ckpt"
    torch.save({"state_dict": state, "pac_masks": masks}, path)
    for order in (1, -1):
        model = TinyNet(hidden=(8,), batch_norm=True)
        gm = GradientMask("calibrate", verbose=False)
        callbacks = [LoadSourceWeights(str(path)), gm][::order]
        trainer(callbacks=callbacks).fit(model, TinyData())
        assert gm.masks is not None and all(torch.equal(gm.masks[k], masks[k]) for k in masks)
        check_calibrate(model, masks, state)


def test_the_record_is_published_and_released_with_the_fit(tmp_path):
    seen = {}

    class Peek(MagnitudePruning):  # reads the record the way a consumer does, at fit start
        def on_fit_start(self, trainer, pl_module):
            record = handoff(trainer)
            seen.update(epochs=list(record.pruning_epochs), final=list(record.final_checkpoints))
            seen["dense"] = list(record.dense_checkpoints)
            super().on_fit_start(trainer, pl_module)

    dense = tmp_path / "dense.ckpt"
    final = tmp_path / "final.ckpt"
    cb = Peek(amount=0.5, epoch=1, dense_checkpoint=str(dense), verbose=False)
    t = trainer(callbacks=[cb, FinalCheckpoint(final, verbose=False)])
    t.fit(TinyNet(), TinyData())
    assert seen == {"epochs": [1], "final": [final], "dense": [dense]}
    assert handoff(t) == Handoff()  # released at teardown: a new fit starts with a clean record


def test_late_subscriber_gets_the_source_at_once_and_masks_go_to_every_listener(tmp_path):
    record = Handoff()
    got = []
    record.publish_source(SourceCheckpoint(tmp_path / "a.ckpt", trust_pickle=True))
    record.on_source(got.append)
    assert got == [SourceCheckpoint(tmp_path / "a.ckpt", True)]
    calls = []
    record.on_masks(lambda t, m, masks: calls.append(("first", sorted(masks))))
    record.on_masks(lambda t, m, masks: calls.append(("second", sorted(masks))))
    masks = {"w": torch.ones(2, dtype=torch.bool)}
    record.publish_masks(None, None, masks)
    assert calls == [("first", ["w"]), ("second", ["w"])] and record.masks is masks


def test_calibrate_source_without_masks_fails_before_training(tmp_path):
    path = tmp_path / "dense.ckpt"
    torch.save({"state_dict": snapshot(TinyNet())}, path)
    model = TinyNet()
    callbacks = [GradientMask("calibrate"), LoadSourceWeights(str(path))]
    with pytest.raises(ValueError, match=r"dense\.ckpt.*carries no PAC-Net masks"):
        trainer(callbacks=callbacks).fit(model, TinyData())
    assert model.global_step == 0
