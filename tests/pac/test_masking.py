"""GradientMask: the allocate/calibrate invariants hold bit-exactly (torch.equal)."""

import copy
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch.callbacks import LambdaCallback, ModelCheckpoint
from pac_tiny import OPTIMIZERS, TinyData, TinyNet, trainer
from torch import nn

from pl_pac_trs.pac import (
    GradientMask,
    MagnitudePruning,
    apply_masks,
    compute_masks,
    masking,
    save_masks,
)
from pl_pac_trs.pac.masking import GradientMask as _GM


def _masks_for(model, amount=0.7, scope="global"):
    targets = MagnitudePruning().targets(model)
    return compute_masks(targets, amount, scope)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _check_pruned_zero(model, masks):
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        p = params[name].detach()
        assert torch.equal(p[~mask], torch.zeros_like(p[~mask])), name
        assert not torch.signbit(p[~mask]).any(), name  # +0.0, not -0.0


def _check_allocate(model, masks, before):
    params = dict(model.named_parameters())
    moved = False
    for name, mask in masks.items():
        p = params[name].detach()
        assert torch.equal(p[~mask], torch.zeros_like(p[~mask])), name
        assert not torch.signbit(p[~mask]).any(), name  # +0.0, not -0.0
        moved |= not torch.equal(p[mask], before[name][mask])
    # a layer with no essential weight cuts the gradient path (e.g. the whole head pruned)
    if all(mask.any() for mask in masks.values()):
        assert moved, "allocate did not train the essential weights"


def _check_calibrate(model, masks, before, new_modules=()):
    params = dict(model.named_parameters())
    state = model.state_dict()
    moved = False
    for name, value in before.items():
        if name in masks:
            p = params[name].detach()
            assert torch.equal(p[masks[name]], value[masks[name]]), name
            moved |= bool((p[~masks[name]] != 0).any())
        elif not any(name.startswith(m + ".") for m in new_modules):
            # shared parameters and batch-norm running statistics stay the source ones
            assert torch.equal(state[name], value), name
    assert moved, "calibrate did not train the redundant weights"


def _invariant_case(
    phase, optimizer, precision, clip, accumulate, batch_norm, hidden, amount, scope, new_head
):
    """One fit under ``GradientMask``; the invariants checked bit-exactly afterwards.

    Allocate prunes *inside* the fit (dense epoch 0, ``MagnitudePruning`` at epoch 1), so the
    optimizer carries momentum / Adam moments for the pruned weights into the allocate epochs.
    """
    torch.manual_seed(0)
    model = TinyNet(hidden=hidden, batch_norm=batch_norm, optimizer=optimizer)
    new_modules = ("head",) if (new_head and phase == "calibrate") else ()
    snapshots = {}
    if phase == "allocate":
        prune = MagnitudePruning(amount=amount, scope=scope, epoch=1, verbose=False)
        snap = LambdaCallback(
            on_train_epoch_start=lambda tr, m: snapshots.setdefault(tr.current_epoch, _snapshot(m)),
            # +0.0 after every step, not only at the end (the sign pass is not run every step)
            on_train_batch_end=lambda tr, m, *_: prune.masks and _check_pruned_zero(m, prune.masks),
        )
        callbacks = [prune, GradientMask("allocate", verbose=False), snap]
    else:
        masks = _masks_for(model, amount, scope)
        snapshots[0] = _snapshot(model)
        gm = GradientMask(phase, masks=masks, lam=0.01, new_modules=new_modules, verbose=False)
        callbacks = [gm]
    t = trainer(
        callbacks=callbacks,
        precision=precision,
        gradient_clip_val=clip,
        accumulate_grad_batches=accumulate,
        max_epochs=3,
    )
    t.fit(model, TinyData())
    if phase == "allocate":
        _check_allocate(model, prune.masks, snapshots[1])
    else:
        kept = {
            k: v for k, v in masks.items() if not any(k.startswith(m + ".") for m in new_modules)
        }
        _check_calibrate(model, kept, snapshots[0], new_modules)
    assert all(p.requires_grad for p in model.parameters())  # frozen ones released at teardown


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_invariants_every_optimizer_and_precision(phase, optimizer, precision):
    """Every phase x optimizer x precision, with clipping, accumulation and BatchNorm on."""
    _invariant_case(phase, optimizer, precision, 0.05, 2, True, (6, 5), 0.7, "global", True)


@pytest.mark.parametrize(("precision", "clip"), [("32-true", 0.05), ("bf16-mixed", None)])
@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_invariants_fused_adamw(phase, precision, clip):
    """Fused AdamW (one kernel per tensor). Lightning refuses gradient clipping with a fused
    optimizer under mixed precision, so bf16 runs without it."""
    _invariant_case(phase, "adamw_fused", precision, clip, 2, True, (6, 5), 0.7, "global", True)


@settings(max_examples=14, deadline=None)
@given(
    phase=st.sampled_from(["allocate", "calibrate"]),
    optimizer=st.sampled_from(["sgd", "adam", "adamw", "rmsprop"]),
    precision=st.sampled_from(["32-true", "bf16-mixed"]),
    clip=st.sampled_from([None, 0.05]),
    accumulate=st.sampled_from([1, 2]),
    batch_norm=st.booleans(),
    hidden=st.lists(st.integers(3, 9), min_size=1, max_size=2).map(tuple),
    amount=st.floats(0.3, 0.9),
    scope=st.sampled_from(["global", "layer"]),
    new_head=st.booleans(),
)
def test_invariants_property(
    phase, optimizer, precision, clip, accumulate, batch_norm, hidden, amount, scope, new_head
):
    """Random small models, sparsities and settings on top of the exhaustive grid above."""
    _invariant_case(
        phase, optimizer, precision, clip, accumulate, batch_norm, hidden, amount, scope, new_head
    )


@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_manual_optimization(phase):
    torch.manual_seed(1)
    model = TinyNet(hidden=(6,), optimizer="adamw", manual=True)
    masks = _masks_for(model)
    if phase == "allocate":
        apply_masks(model, masks)
    before = _snapshot(model)
    trainer(callbacks=[GradientMask(phase, masks=masks, verbose=False)]).fit(model, TinyData())
    check = _check_allocate if phase == "allocate" else _check_calibrate
    check(model, masks, before)


def test_gradient_masking_alone_is_not_exact(monkeypatch):
    """Without the post-step restore, AdamW's decoupled decay moves frozen essential weights."""
    monkeypatch.setattr(_GM, "_after_step", lambda self, opt, args, kwargs: None)
    torch.manual_seed(0)
    model = TinyNet(hidden=(6,), optimizer="adamw")
    masks = _masks_for(model)
    before = _snapshot(model)
    trainer(callbacks=[GradientMask("calibrate", masks=masks, verbose=False)]).fit(
        model, TinyData()
    )
    w = model.body[0].weight.detach()
    m = masks["body.0.weight"]
    assert not torch.equal(w[m], before["body.0.weight"][m])


def _tidy_case(monkeypatch, phase, optimizer, every):
    """Allocate (pruned mid-fit, stale state) or calibrate under ``STATE_TIDY_EVERY=every``."""
    monkeypatch.setattr(masking, "STATE_TIDY_EVERY", every)
    torch.manual_seed(0)
    model = TinyNet(hidden=(6,), optimizer=optimizer)
    if phase == "allocate":
        prune = MagnitudePruning(amount=0.7, epoch=1, verbose=False)
        callbacks = [prune, GradientMask("allocate", verbose=False)]
    else:
        prune = None
        masks = _masks_for(model)
        callbacks = [GradientMask("calibrate", masks=masks, lam=0.01, verbose=False)]
    t = trainer(callbacks=callbacks, max_epochs=4, gradient_clip_val=0.5)
    t.fit(model, TinyData())
    return model, t.optimizers[0], prune.masks if prune else masks


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_state_tidying_changes_no_trainable_bit(monkeypatch, phase, optimizer):
    """Tidying the frozen entries' optimizer state leaves every weight bit-identical."""
    plain, _, masks = _tidy_case(monkeypatch, phase, optimizer, every=0)
    tidied, opt, _ = _tidy_case(monkeypatch, phase, optimizer, every=5)
    for (name, a), b in zip(plain.state_dict().items(), tidied.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
        if phase == "allocate" and name in masks:
            assert not torch.signbit(b[~masks[name]]).any(), name
    # and the frozen entries' state is the tidy one: no exact-zero second moment under a sqrt
    params = dict(tidied.named_parameters())
    for name, mask in masks.items():
        frozen = mask if phase == "calibrate" else ~mask
        for key, value in opt.state[params[name]].items():
            # (calibrate: coupled weight decay gives the frozen non-zero weights a gradient)
            if key in ("exp_avg", "momentum_buffer", "grad_avg") and phase == "allocate":
                assert torch.equal(value[frozen], torch.zeros_like(value[frozen])), (name, key)
            elif key in ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum"):
                assert (value[frozen] > 0).all(), (name, key)


@pytest.mark.parametrize(
    ("phase", "optimizer", "every_step"),
    [
        ("allocate", "adam", False),
        ("allocate", "sgd", False),  # weight decay never moves a +0.0 pruned entry
        ("calibrate", "adam", False),
        ("calibrate", "sgd", True),  # coupled weight decay moves the essential entries
        ("calibrate", "adamw", True),  # decoupled weight decay too
        ("allocate", "adamw_fused", False),
        ("calibrate", "adam_fused", False),
        ("calibrate", "adamw_fused", True),
    ],
)
def test_restore_runs_only_where_it_can_change_something(monkeypatch, phase, optimizer, every_step):
    """The post-step restore runs on step 0 and tidy steps, or every step under weight decay."""
    monkeypatch.setattr(masking, "STATE_TIDY_EVERY", 4)
    restored_at = []
    for method in ("zero_pruned", "restore_essential"):
        original = getattr(masking._MaskedGroup, method)

        def counted(group, original=original):
            restored_at.append(group.steps - 1)  # ``steps`` already counts this step
            original(group)

        monkeypatch.setattr(masking._MaskedGroup, method, counted)
    torch.manual_seed(0)
    model = TinyNet(hidden=(6,), optimizer=optimizer)
    masks = _masks_for(model)
    if phase == "allocate":
        apply_masks(model, masks)
    before = _snapshot(model)
    trainer(callbacks=[GradientMask(phase, masks=masks, verbose=False)], max_epochs=2).fit(
        model, TinyData()
    )
    steps = 12  # 48 samples / batch 8 x 2 epochs
    assert restored_at == (list(range(steps)) if every_step else [0, 4, 8])
    (_check_allocate if phase == "allocate" else _check_calibrate)(model, masks, before)


@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_step_without_gradient_masking_is_still_restored(phase):
    """An optimizer step this callback did not prepare (raw ``opt.step()``) is restored too."""
    torch.manual_seed(0)
    model = TinyNet(hidden=(6,))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    masks = _masks_for(model)
    if phase == "allocate":
        apply_masks(model, masks)
    before = _snapshot(model)
    cb = GradientMask(phase, masks=masks, verbose=False)
    cb.attach(
        SimpleNamespace(optimizers=[opt], is_global_zero=True, loggers=[], global_step=0),
        model,
        masks,
    )
    data = TinyData()
    for i in range(6):
        opt.zero_grad()
        nn.functional.mse_loss(model(data.x), data.y).backward()
        if i != 4:  # step 4: the gradients reach the optimizer unmasked
            cb.on_before_optimizer_step(None, model, opt)
        opt.step()
    if phase == "allocate":
        _check_allocate(model, masks, before)
    else:  # (no fit, so no ``setup`` froze the shared parameters: check the masked weights)
        params = dict(model.named_parameters())
        for name, mask in masks.items():
            assert torch.equal(params[name].detach()[mask], before[name][mask]), name


@pytest.mark.parametrize(
    ("phase", "anchor_lam"), [("allocate", 0.0), ("allocate", 0.5), ("calibrate", 0.0)]
)
def test_gradient_masking_under_grad_mode_records_no_graph(phase, anchor_lam):
    """Lightning calls ``on_before_optimizer_step`` with grad enabled and the hook runs without
    ``torch.no_grad()``: the gradients it writes must stay plain tensors, with exact values."""
    torch.manual_seed(0)
    model = TinyNet(hidden=(6,))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    masks = _masks_for(model)
    cb = GradientMask(phase, masks=masks, lam=0.25, anchor_lam=anchor_lam, verbose=False)
    fake_trainer = SimpleNamespace(optimizers=[opt], is_global_zero=True, loggers=[], global_step=0)
    cb.attach(fake_trainer, model, masks)
    with torch.no_grad():  # move the weights off the anchor so that its term is not zero
        for name, p in model.named_parameters():
            if name in masks:
                p.add_(0.125)
    data = TinyData()
    nn.functional.mse_loss(model(data.x), data.y).backward()
    params = dict(model.named_parameters())
    raw = {n: params[n].grad.clone() for n in masks}
    assert torch.is_grad_enabled()
    cb.on_before_optimizer_step(None, model, opt)
    for name, mask in masks.items():
        p = params[name]
        g = p.grad
        assert not g.requires_grad and g.grad_fn is None, name
        w = p.detach()
        if phase == "allocate":
            expected = raw[name].clone()
            if anchor_lam:
                expected[mask] += (2 * anchor_lam) * (w[mask] - cb._anchor[name])
            expected[~mask] = 0.0
        else:
            expected = torch.where(mask, torch.zeros(()), torch.add(raw[name], w, alpha=0.5))
        assert torch.equal(g, expected), name


def test_calibrate_penalty_pulls_redundant_to_zero():
    torch.manual_seed(0)
    norms = []
    for lam in (0.0, 5.0):
        torch.manual_seed(0)
        model = TinyNet(hidden=(8,), optimizer="adam")
        masks = _masks_for(model)
        cb = GradientMask("calibrate", masks=masks, lam=lam, verbose=False)
        trainer(callbacks=[cb], max_epochs=3).fit(model, TinyData())
        w = torch.cat([p.detach()[~masks[n]] for n, p in model.named_parameters() if n in masks])
        norms.append(float((w**2).sum()))
        if lam:
            assert float(cb.penalty(model)) == pytest.approx(lam * norms[-1], rel=1e-5)
    assert norms[1] < 0.5 * norms[0]


def test_allocate_with_pruning_in_same_fit(tmp_path):
    """Dense epoch 0, pruned at the start of epoch 1, then allocate: one fit."""
    torch.manual_seed(0)
    model = TinyNet(hidden=(8,), optimizer="adamw")
    prune = MagnitudePruning(amount=0.8, epoch=1)
    gm = GradientMask("allocate", verbose=False)
    t = trainer(tmp_path, callbacks=[prune, gm], max_epochs=3)
    t.fit(model, TinyData())
    assert gm.masks is not None
    for name, p in model.named_parameters():
        if name in prune.masks:
            assert torch.equal(p[~prune.masks[name]], torch.zeros_like(p[~prune.masks[name]]))
            assert (p[prune.masks[name]] != 0).all()


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
    masks = _masks_for(source)
    save_masks(masks, tmp_path / "masks.pt")
    source_state = _snapshot(source)

    def model_factory():
        m = TinyNet(hidden=(8,), batch_norm=True, optimizer="adamw")
        m.load_state_dict(source_state)
        return m

    def callbacks():
        return [GradientMask("calibrate", masks=str(tmp_path / "masks.pt"), verbose=False)]

    straight, resumed, _ = _fit_with_resume(tmp_path, callbacks, model_factory, 4, 2)
    for (n, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), n
    _check_calibrate(resumed, masks, source_state)


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
    masks = _masks_for(TinyNet(hidden=(9,)))
    save_masks(masks, tmp_path / "m.pt")
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"'body.0.weight' has shape \(9, 5\)"):
        trainer(callbacks=[GradientMask("calibrate", masks=str(tmp_path / "m.pt"))]).fit(
            model, TinyData()
        )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    renamed = {"net." + k: v for k, v in _masks_for(model).items()}
    with pytest.raises(ValueError, match=r"'net\.body\.0\.weight' names no parameter"):
        trainer(callbacks=[GradientMask("allocate", masks=renamed)]).fit(model, TinyData())


def test_missing_masks_file_and_bad_new_modules(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        trainer(callbacks=[GradientMask("calibrate", masks=str(tmp_path / "nope.ckpt"))]).fit(
            TinyNet(), TinyData()
        )
    model = TinyNet()
    with pytest.raises(ValueError, match="'classifier' matches no parameter"):
        cb = GradientMask("calibrate", masks=_masks_for(model), new_modules=["classifier"])
        trainer(callbacks=[cb]).fit(model, TinyData())


def test_allocate_anchor_penalty_keeps_weights_closer():
    dists = []
    for anchor in (0.0, 50.0):
        torch.manual_seed(0)
        model = TinyNet(hidden=(8,), optimizer="adam")
        masks = _masks_for(model)
        apply_masks(model, masks)
        start = copy.deepcopy(model.body[0].weight.detach())
        cb = GradientMask("allocate", masks=masks, anchor_lam=anchor, verbose=False)
        trainer(callbacks=[cb], max_epochs=3).fit(model, TinyData())
        dists.append(float((model.body[0].weight.detach() - start).norm()))
        _check_allocate(model, {"body.0.weight": masks["body.0.weight"]}, {"body.0.weight": start})
    assert dists[1] < 0.5 * dists[0]


@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_resume_with_masks_omitted_takes_them_from_the_checkpoint(tmp_path, phase):
    """``masks=None`` and no pruning/source callback: a resumed fit reads the checkpoint's."""
    torch.manual_seed(4)
    source = TinyNet(hidden=(8,), batch_norm=True, optimizer="sgd")
    masks = _masks_for(source)
    if phase == "allocate":
        apply_masks(source, masks)
    source_state = _snapshot(source)

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
        _check_calibrate(resumed, masks, source_state)


def test_resume_with_other_masks_is_refused(tmp_path):
    torch.manual_seed(0)
    model = TinyNet(hidden=(8,))
    masks = _masks_for(model)
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


def test_calibrate_keeps_every_running_statistic():
    """Any normalisation layer with running statistics (not only BatchNorm) stays the source's."""

    class InstanceNormNet(TinyNet):
        def __init__(self):
            super().__init__(hidden=(8,), optimizer="adamw")
            self.norm = torch.nn.InstanceNorm1d(1, track_running_stats=True, affine=True)

        def forward(self, x):
            return self.head(self.body(self.norm(x.unsqueeze(1)).squeeze(1)))

    torch.manual_seed(0)
    model = InstanceNormNet()
    masks = _masks_for(model)
    with torch.no_grad():
        model.norm.running_mean.fill_(0.3)
    before = _snapshot(model)
    trainer(callbacks=[GradientMask("calibrate", masks=masks, verbose=False)]).fit(
        model, TinyData()
    )
    _check_calibrate(model, masks, before)  # includes norm.running_mean / running_var
