"""PAC-Net stages beside Lightning's own callbacks and checkpoints: a monitored ModelCheckpoint
never keeps a dense (pre-pruning) model as best, an EarlyStopping that could stop before pruning
is refused, and a checkpoint of another stage is refused before anything is written."""

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from pac_tiny import TinyData, TinyNet, trainer
from torch.utils.data import DataLoader, TensorDataset

from pl_pac_trs.pac import (
    FinalCheckpoint,
    GradientMask,
    LoadSourceWeights,
    MagnitudePruning,
    load_masks,
    pac_state,
)


class Monitored(TinyNet):
    """Logs ``val_loss``, lower on every dense epoch than on any pruned one (by construction:
    a checkpoint that keeps the lowest would keep a dense model)."""

    def validation_step(self, batch, batch_idx):
        state = pac_state(self)
        pruned = state is not None and state.masks is not None
        self.log("val_loss", (2.0 if pruned else 1.0) - 0.01 * self.current_epoch)

    test_step = validation_step


def _data(out_features=1):
    """Training and validation loaders (Lightning takes a datamodule's loaders only)."""
    val = DataLoader(TensorDataset(torch.randn(8, 5), torch.randn(8, out_features)), batch_size=8)
    return {
        "train_dataloaders": TinyData(out_features=out_features).train_dataloader(),
        "val_dataloaders": val,
    }


def test_monitored_checkpoint_never_keeps_a_dense_model_as_best(tmp_path):
    torch.manual_seed(0)
    model = Monitored(hidden=(8,))
    best = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", save_top_k=2)
    callbacks = [MagnitudePruning(0.5, epoch=2, verbose=False), GradientMask("allocate"), best]
    t = trainer(tmp_path, callbacks=callbacks, enable_checkpointing=True, max_epochs=5)
    t.fit(model, **_data())
    assert best.best_model_path and set(best.best_k_models) == {
        str(tmp_path / "ck" / f"epoch={e}-step={6 * (e + 1)}.ckpt") for e in (3, 4)
    }
    assert best.best_model_score == pytest.approx(2.0 - 0.04)
    masks = load_masks(best.best_model_path)  # the best model is a pruned one
    assert masks.keys() == {"body.0.weight", "head.weight"}
    # the dense epochs' files (better scores) stay on disk, no longer tracked
    assert (tmp_path / "ck" / "epoch=0-step=6.ckpt").is_file()


def test_early_stopping_that_could_stop_before_pruning_is_refused(tmp_path):
    model = Monitored(hidden=(8,))
    callbacks = [
        MagnitudePruning(0.5, epoch=3, verbose=False),
        GradientMask("allocate"),
        EarlyStopping(monitor="val_loss", patience=1),
    ]
    with pytest.raises(ValueError, match=r"EarlyStopping.*Trainer\(min_epochs=4\)"):
        trainer(tmp_path, callbacks=callbacks, max_epochs=6).fit(model, **_data())
    assert model.global_step == 0


def test_early_stopping_counts_again_after_pruning(tmp_path):
    """With min_epochs past the pruning epoch: the jump in val_loss at pruning does not stop
    the fit (the dense best score is forgotten)."""
    model = Monitored(hidden=(8,))
    stop = EarlyStopping(monitor="val_loss", patience=1)
    prune = MagnitudePruning(0.5, epoch=2, verbose=False)
    callbacks = [prune, GradientMask("allocate"), stop]
    t = trainer(tmp_path, callbacks=callbacks, max_epochs=6, min_epochs=3)
    t.fit(model, **_data())
    assert prune.masks is not None and t.current_epoch == 6 and stop.stopped_epoch == 0


# ---------------------------------------------------------------- checkpoints of other stages
def _source(tmp_path):
    torch.manual_seed(0)
    model = TinyNet(hidden=(8,), out_features=2)
    callbacks = [MagnitudePruning(0.5, epoch=1, verbose=False), GradientMask("allocate")]
    t = trainer(tmp_path / "s", callbacks=callbacks, max_epochs=2)
    t.fit(model, TinyData(out_features=2))
    path = tmp_path / "source.ckpt"
    t.save_checkpoint(path)
    return path


def _calibrate_callbacks(source, final):
    return [
        LoadSourceWeights(source, skip=["head"]),
        GradientMask("calibrate", verbose=False),
        FinalCheckpoint(final, verbose=False),
    ]


def test_calibrate_resumed_from_the_source_checkpoint_is_refused(tmp_path):
    """The source hand-off given as ckpt_path: refused, naming it; nothing is written."""
    source = _source(tmp_path)
    final = tmp_path / "calibrate.ckpt"
    final.write_bytes(b"an earlier calibrate.ckpt")
    model = Monitored(hidden=(8,), out_features=2)
    t = trainer(tmp_path / "c", callbacks=_calibrate_callbacks(source, final))
    with pytest.raises(ValueError, match=r"source\.ckpt' was written by another stage"):
        t.fit(model, TinyData(out_features=2), ckpt_path=source)
    assert model.global_step == 0 and final.read_bytes() == b"an earlier calibrate.ckpt"
    tester = trainer(tmp_path / "t", callbacks=_calibrate_callbacks(source, final))
    with pytest.raises(ValueError, match="another stage"):  # testing: the same
        tester.test(model, _data(2)["val_dataloaders"], ckpt_path=source)


def test_masks_where_none_belong_and_none_where_needed(tmp_path):
    source = _source(tmp_path)
    cal = trainer(tmp_path / "c", callbacks=_calibrate_callbacks(source, tmp_path / "cal.ckpt"))
    cal.fit(TinyNet(hidden=(8,), out_features=2), TinyData(out_features=2))
    finetune = trainer(tmp_path / "f", callbacks=[LoadSourceWeights(source)], max_epochs=3)
    with pytest.raises(ValueError, match=r"cal\.ckpt' was written by another stage"):
        finetune.fit(
            TinyNet(hidden=(8,), out_features=2),
            TinyData(out_features=2),
            ckpt_path=tmp_path / "cal.ckpt",
        )
    finetune = trainer(tmp_path / "f2", callbacks=[LoadSourceWeights(source)], max_epochs=3)
    finetune.fit(TinyNet(hidden=(8,), out_features=2), TinyData(out_features=2))
    finetune.save_checkpoint(tmp_path / "finetune.ckpt")
    again = trainer(tmp_path / "c2", callbacks=_calibrate_callbacks(source, tmp_path / "x.ckpt"))
    with pytest.raises(ValueError, match=r"finetune\.ckpt' was written by another stage"):
        again.fit(
            TinyNet(hidden=(8,), out_features=2),
            TinyData(out_features=2),
            ckpt_path=tmp_path / "finetune.ckpt",
        )
    assert not (tmp_path / "x.ckpt").exists()


def test_resuming_the_own_stage_still_works(tmp_path):
    source = _source(tmp_path)
    ck = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    first = trainer(
        tmp_path / "c",
        callbacks=[*_calibrate_callbacks(source, tmp_path / "cal.ckpt"), ck],
        enable_checkpointing=True,
    )
    first.fit(TinyNet(hidden=(8,), out_features=2), TinyData(out_features=2))
    model = TinyNet(hidden=(8,), out_features=2)
    again = trainer(
        tmp_path / "c2",
        callbacks=_calibrate_callbacks(source, tmp_path / "cal2.ckpt"),
        max_epochs=3,
    )
    again.fit(model, TinyData(out_features=2), ckpt_path=tmp_path / "ck" / "last.ckpt")
    assert model.global_step == 18 and (tmp_path / "cal2.ckpt").is_file()


def test_calibrate_resumed_from_a_calibration_of_another_source_is_refused(tmp_path):
    source = _source(tmp_path)
    torch.manual_seed(7)
    other_model = TinyNet(hidden=(8,), out_features=2)
    callbacks = [MagnitudePruning(0.5, epoch=1, verbose=False), GradientMask("allocate")]
    t = trainer(tmp_path / "o", callbacks=callbacks, max_epochs=2)
    t.fit(other_model, TinyData(out_features=2, seed=3))
    other = tmp_path / "other_source.ckpt"
    t.save_checkpoint(other)
    ck = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    first = trainer(
        tmp_path / "c",
        callbacks=[*_calibrate_callbacks(other, tmp_path / "cal_other.ckpt"), ck],
        enable_checkpointing=True,
    )
    first.fit(TinyNet(hidden=(8,), out_features=2), TinyData(out_features=2))
    again = trainer(tmp_path / "c2", callbacks=_calibrate_callbacks(source, tmp_path / "x.ckpt"))
    model = TinyNet(hidden=(8,), out_features=2)
    with pytest.raises(ValueError, match=r"last\.ckpt'.*another source model"):
        again.fit(model, TinyData(out_features=2), ckpt_path=tmp_path / "ck" / "last.ckpt")
    assert model.global_step == 0 and not (tmp_path / "x.ckpt").exists()
