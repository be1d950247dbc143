"""GradientMask across fits: resume equals the uninterrupted fit, and set-up errors fail before
training."""

import pytest
import torch
from invariants import check_calibrate, masks_for, snapshot
from lightning.pytorch.callbacks import ModelCheckpoint
from pac_tiny import TinyData, TinyNet, trainer

from pl_pac_trs.pac import GradientMask, MagnitudePruning, apply_masks, save_masks


# ------------------------------------------------------------------ resume
def _fit_with_resume(tmp_path, callbacks_factory, model_factory, total_epochs, stop_epochs):
    """Runs ``total_epochs`` straight and ``stop_epochs`` + resume; returns both models."""
    straight = model_factory()
    trainer(tmp_path / "a", callbacks=callbacks_factory(), max_epochs=total_epochs).fit(
        straight, TinyData()
    )
    first = model_factory()
    ckpt_cb = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, every_n_epochs=1)
    trainer(
        tmp_path / "b",
        callbacks=[*callbacks_factory(), ckpt_cb],
        enable_checkpointing=True,
        max_epochs=stop_epochs,
    ).fit(first, TinyData())
    resumed = model_factory()
    trainer(tmp_path / "c", callbacks=callbacks_factory(), max_epochs=total_epochs).fit(
        resumed, TinyData(), ckpt_path=str(tmp_path / "ck" / "last.ckpt")
    )
    return straight, resumed, tmp_path / "ck" / "last.ckpt"


def test_resume_mid_allocate_equals_uninterrupted(tmp_path):
    def model_factory():
        torch.manual_seed(0)
        return TinyNet(hidden=(8,), optimizer="adamw")

    def callbacks():
        return [MagnitudePruning(amount=0.7, epoch=1), GradientMask("allocate", verbose=False)]

    straight, resumed, _ = _fit_with_resume(tmp_path, callbacks, model_factory, 4, 2)
    for (n, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), n


def test_resume_mid_calibrate_equals_uninterrupted(tmp_path):
    torch.manual_seed(3)
    source = TinyNet(hidden=(8,), batch_norm=True, optimizer="adamw")
    masks = masks_for(source)
    save_masks(masks, tmp_path / "masks.pt")
    source_state = snapshot(source)

    def model_factory():
        m = TinyNet(hidden=(8,), batch_norm=True, optimizer="adamw")
        m.load_state_dict(source_state)
        return m

    def callbacks():
        return [GradientMask("calibrate", masks=str(tmp_path / "masks.pt"), verbose=False)]

    straight, resumed, _ = _fit_with_resume(tmp_path, callbacks, model_factory, 4, 2)
    for (n, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), n
    check_calibrate(resumed, masks, source_state)


# ------------------------------------------------------------------ errors
def test_bad_phase_and_lam():
    with pytest.raises(ValueError, match="phase"):
        GradientMask("prune")
    with pytest.raises(ValueError, match="lam"):
        GradientMask("calibrate", lam=-1)
    with pytest.raises(ValueError, match="anchor_lam"):
        GradientMask("calibrate", anchor_lam=0.1)


@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_no_masks_found_fails_before_training(phase):
    model = TinyNet()
    with pytest.raises(ValueError, match="found no masks"):
        trainer(callbacks=[GradientMask(phase)]).fit(model, TinyData())
    assert model.global_step == 0


def test_mismatched_masks_name_first_mismatch(tmp_path):
    model = TinyNet(hidden=(8,))
    masks = masks_for(TinyNet(hidden=(9,)))
    save_masks(masks, tmp_path / "m.pt")
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"'body.0.weight' has shape \(9, 5\)"):
        trainer(callbacks=[GradientMask("calibrate", masks=str(tmp_path / "m.pt"))]).fit(
            model, TinyData()
        )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    renamed = {"net." + k: v for k, v in masks_for(model).items()}
    with pytest.raises(ValueError, match=r"'net\.body\.0\.weight' names no parameter"):
        trainer(callbacks=[GradientMask("allocate", masks=renamed)]).fit(model, TinyData())


def test_missing_masks_file_and_bad_new_modules(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        trainer(callbacks=[GradientMask("calibrate", masks=str(tmp_path / "nope.ckpt"))]).fit(
            TinyNet(), TinyData()
        )
    model = TinyNet()
    with pytest.raises(ValueError, match="'classifier' matches no parameter"):
        cb = GradientMask("calibrate", masks=masks_for(model), new_modules=["classifier"])
        trainer(callbacks=[cb]).fit(model, TinyData())


@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_resume_with_masks_omitted_takes_them_from_the_checkpoint(tmp_path, phase):
    """``masks=None`` and no pruning/source callback: a resumed fit reads the checkpoint's."""
    torch.manual_seed(4)
    source = TinyNet(hidden=(8,), batch_norm=True, optimizer="sgd")
    masks = masks_for(source)
    if phase == "allocate":
        apply_masks(source, masks)
    source_state = snapshot(source)

    def model_factory():
        m = TinyNet(hidden=(8,), batch_norm=True, optimizer="sgd")
        m.load_state_dict(source_state)
        return m

    straight = model_factory()
    trainer(tmp_path / "a", callbacks=[GradientMask(phase, masks=masks)], max_epochs=4).fit(
        straight, TinyData()
    )
    ck = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    first = model_factory()
    trainer(
        tmp_path / "b",
        callbacks=[GradientMask(phase, masks=masks), ck],
        enable_checkpointing=True,
        max_epochs=2,
    ).fit(first, TinyData())
    resumed = model_factory()
    cb = GradientMask(phase, verbose=False)  # masks omitted
    trainer(tmp_path / "c", callbacks=[cb], max_epochs=4).fit(
        resumed, TinyData(), ckpt_path=str(tmp_path / "ck" / "last.ckpt")
    )
    assert cb.masks is not None and all(torch.equal(cb.masks[k], masks[k]) for k in masks)
    for (n, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), n
    if phase == "calibrate":
        check_calibrate(resumed, masks, source_state)


def test_resume_with_other_masks_is_refused(tmp_path):
    torch.manual_seed(0)
    model = TinyNet(hidden=(8,))
    masks = masks_for(model)
    ck = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    trainer(
        tmp_path, callbacks=[GradientMask("calibrate", masks=masks), ck], enable_checkpointing=True
    ).fit(model, TinyData())
    other = {k: v for k, v in masks.items() if k != "head.weight"}
    cb = GradientMask("calibrate", masks=other, verbose=False)
    with pytest.raises(ValueError, match="differ from those in the checkpoint"):
        trainer(tmp_path, callbacks=[cb], max_epochs=3).fit(
            TinyNet(hidden=(8,)), TinyData(), ckpt_path=str(tmp_path / "ck" / "last.ckpt")
        )


def test_allocate_with_end_of_fit_pruning_is_refused():
    callbacks = [MagnitudePruning(amount=0.5), GradientMask("allocate")]
    model = TinyNet()
    with pytest.raises(ValueError, match=r"MagnitudePruning\(epoch=None\).*nothing would be"):
        trainer(callbacks=callbacks).fit(model, TinyData())
    assert model.global_step == 0
