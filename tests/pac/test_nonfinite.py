"""GradientMask under non-finite losses and gradients: the fit stops before the bad step, the
frozen entries stay bit-identical (``torch.equal``) and checkpoints hold the last finite weights."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from pac_tiny import TinyData, TinyNet, trainer

from pl_pac_trs.pac import (
    GradientMask,
    MagnitudePruning,
    NonFiniteError,
    apply_masks,
    compute_masks,
)

FAULT_STEP = 7  # epoch 1 (6 batches of 8 per epoch)

# the optimizers of the invariant matrix, each with and without weight decay
MATRIX = {
    "sgd": lambda p, wd: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=wd),
    "adam": lambda p, wd: torch.optim.Adam(p, lr=0.01, weight_decay=wd),
    "adamw": lambda p, wd: torch.optim.AdamW(p, lr=0.01, weight_decay=wd),
    "rmsprop": lambda p, wd: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, weight_decay=wd),
    "adamw_fused": lambda p, wd: torch.optim.AdamW(p, lr=0.01, weight_decay=wd, fused=True),
}


class FaultyNet(TinyNet):
    """TinyNet whose step ``fault_step`` goes bad in the way ``fault`` names."""

    def __init__(self, optimizer="adam", wd=0.0, fault="nan_loss", fault_step=FAULT_STEP, lr=None):
        super().__init__(hidden=(6,), batch_norm=True)
        self.opt_name, self.wd, self.fault, self.fault_step, self.lr = (
            optimizer,
            wd,
            fault,
            fault_step,
            lr,
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        bad = self.global_step == self.fault_step
        if bad and self.fault == "nan_batch":
            x = x.clone()
            x[0, 0] = float("nan")
        loss = torch.nn.functional.mse_loss(self(x), y)
        if bad and self.fault == "nan_loss":
            loss = loss * float("nan")
        if bad and self.fault == "inf_loss":
            loss = loss * float("inf")
        if bad and self.fault == "nan_constant_loss":  # the gradients stay finite
            loss = loss + torch.tensor(float("nan"))
        if bad and self.fault == "nan_bias_grad":  # only an unmasked parameter goes bad
            self.head.bias.register_hook(lambda g: torch.full_like(g, float("nan")))
        if bad and self.fault == "inf_frozen_grad":  # only frozen entries go bad: harmless
            mask = self.frozen_mask
            self.body[0].weight.register_hook(lambda g: g.masked_fill(mask, float("inf")))
        return loss

    def configure_optimizers(self):
        if self.lr is not None:
            return torch.optim.SGD(self.parameters(), lr=self.lr)
        return MATRIX[self.opt_name](self.parameters(), self.wd)


def _setup(phase, **kwargs):
    torch.manual_seed(0)
    model = FaultyNet(**kwargs)
    targets = MagnitudePruning().targets(model)
    masks = compute_masks(targets, 0.7, "global")
    if phase == "allocate":
        apply_masks(model, masks)
    frozen = masks["body.0.weight"] if phase == "calibrate" else ~masks["body.0.weight"]
    model.frozen_mask = frozen
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return model, masks, before


def _check_frozen(state, masks, before, phase):
    for name, mask in masks.items():
        w = state[name]
        if phase == "allocate":
            assert torch.equal(w[~mask], torch.zeros_like(w[~mask])), name
            assert not torch.signbit(w[~mask]).any(), name
        else:
            assert torch.equal(w[mask], before[name][mask]), name


def _fit_until_stopped(tmp_path, phase, model, masks, **trainer_kwargs):
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=2, save_top_k=-1)
    gm = GradientMask(phase, masks=masks, lam=0.01, verbose=False)
    t = trainer(
        tmp_path,
        callbacks=[gm, ckpt],
        enable_checkpointing=True,
        max_epochs=3,
        gradient_clip_val=0.05,
        **trainer_kwargs,
    )
    with pytest.raises(NonFiniteError) as err:
        t.fit(model, TinyData())
    return str(err.value), tmp_path / "last.ckpt"


@pytest.mark.parametrize("wd", [0.0, 0.05], ids=["no_wd", "wd"])
@pytest.mark.parametrize("optimizer", sorted(MATRIX))
@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_nan_batch_stops_before_the_step_frozen_entries_exact(tmp_path, phase, optimizer, wd):
    model, masks, before = _setup(phase, optimizer=optimizer, wd=wd, fault="nan_batch")
    message, last = _fit_until_stopped(tmp_path, phase, model, masks)
    assert f"global step {FAULT_STEP} (epoch 1)" in message
    assert len(message.splitlines()) <= 2
    assert model.global_step == FAULT_STEP  # the bad step was not taken
    state = {k: v.detach() for k, v in model.state_dict().items()}
    _check_frozen(state, masks, before, phase)
    # the trainable weights are finite too: the stop came before the optimizer saw the NaN
    # (allocate's batch-norm running statistics, updated in the forward pass, are not)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == FAULT_STEP - 1
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    _check_frozen(saved["state_dict"], masks, before, phase)


@pytest.mark.parametrize("fault", ["nan_loss", "inf_loss", "nan_constant_loss", "nan_bias_grad"])
@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_other_faults_stop_the_fit(tmp_path, phase, fault):
    """A NaN/inf loss (also a NaN loss whose gradients are finite), and a NaN in an unmasked
    parameter's gradient only (which gradient clipping would otherwise spread to every frozen
    entry)."""
    if fault == "nan_bias_grad" and phase == "calibrate":
        pytest.skip("calibrate freezes the shared biases")
    model, masks, before = _setup(phase, optimizer="adamw", wd=0.05, fault=fault)
    message, _ = _fit_until_stopped(tmp_path, phase, model, masks)
    assert f"global step {FAULT_STEP}" in message
    assert ("'head.bias'" in message) == (fault == "nan_bias_grad")
    _check_frozen(dict(model.state_dict()), masks, before, phase)


@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_too_large_learning_rate_diverges_and_stops(tmp_path, phase):
    model, masks, before = _setup(phase, lr=1e30, fault="none")
    message, _ = _fit_until_stopped(tmp_path, phase, model, masks)
    assert "non-finite" in message and "global step" in message
    _check_frozen(dict(model.state_dict()), masks, before, phase)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_non_finite_frozen_gradients_alone_are_zeroed_and_training_goes_on(phase, optimizer):
    """Infinite gradients on frozen entries only: the masked step is exact and goes ahead."""
    model, masks, before = _setup(phase, optimizer=optimizer, wd=0.05, fault="inf_frozen_grad")
    gm = GradientMask(phase, masks=masks, lam=0.01, verbose=False)
    trainer(callbacks=[gm], max_epochs=2, gradient_clip_val=0.05).fit(model, TinyData())
    assert model.global_step == 12
    state = dict(model.state_dict())
    _check_frozen(state, masks, before, phase)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_no_checkpoint_with_non_finite_weights(tmp_path):
    model, masks, _ = _setup("calibrate", fault="none")
    t = trainer(tmp_path, callbacks=[GradientMask("calibrate", masks=masks, verbose=False)])
    t.fit(model, TinyData())
    with torch.no_grad():
        model.body[0].weight[~masks["body.0.weight"]] = float("inf")
    with pytest.raises(NonFiniteError, match=r"'body\.0\.weight' holds non-finite values"):
        t.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()


@pytest.mark.parametrize("name", ["lam", "anchor_lam"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, True, "0.1"])
def test_penalty_strengths_must_be_finite_and_non_negative(name, value):
    phase = "allocate" if name == "anchor_lam" else "calibrate"
    with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0, got"):
        GradientMask(phase, **{name: value})


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "adamw_fused"])
@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_device_side_check_zeroes_the_bad_step_and_stops_at_the_next_read(
    tmp_path, phase, optimizer
):
    """``check_every=5`` (the accelerator default is log_every_n_steps): no host read per step;
    the bad step's gradients are zeroed on the device, the frozen entries stay exact, the
    weights finite, and the fit stops at the next read (here: before the next checkpoint)."""
    model, masks, before = _setup(phase, optimizer=optimizer, wd=0.05, fault="nan_batch")
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=2, save_top_k=-1)
    gm = GradientMask(phase, masks=masks, lam=0.01, verbose=False, check_every=5)
    t = trainer(
        tmp_path, callbacks=[gm, ckpt], enable_checkpointing=True, max_epochs=3,
        gradient_clip_val=0.05,
    )  # fmt: skip
    with pytest.raises(NonFiniteError, match=r"between global steps \d+ and \d+") as err:
        t.fit(model, TinyData())
    assert FAULT_STEP < model.global_step <= FAULT_STEP + 5  # the bad step was taken, zeroed
    assert len(str(err.value).splitlines()) <= 2
    state = {k: v.detach() for k, v in model.state_dict().items()}
    _check_frozen(state, masks, before, phase)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] <= FAULT_STEP + 1
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    _check_frozen(saved["state_dict"], masks, before, phase)


def test_device_side_check_without_faults_changes_no_bit():
    """Per-step host check and device-side check give the same weights when nothing goes bad."""
    results = []
    for every in (1, 5):
        model, masks, _ = _setup("calibrate", optimizer="adamw", wd=0.05, fault="none")
        gm = GradientMask("calibrate", masks=masks, verbose=False, check_every=every)
        trainer(callbacks=[gm], max_epochs=2, gradient_clip_val=0.05).fit(model, TinyData())
        results.append(model.state_dict())
    for name, value in results[0].items():
        assert torch.equal(value, results[1][name]), name
