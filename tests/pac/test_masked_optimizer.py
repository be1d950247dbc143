"""The masked-optimizer kernels (``MaskedGroup``): what is restored and tidied, and when."""

from types import SimpleNamespace

import pytest
import torch
from invariants import check_allocate, check_calibrate, masks_for, snapshot
from lightning.pytorch.callbacks import LambdaCallback
from pac_tiny import OPTIMIZERS, TinyData, TinyNet, trainer
from torch import nn

from pl_pac_trs.pac import GradientMask, MagnitudePruning, apply_masks
from pl_pac_trs.pac.masked_optimizer import STATE_TIDY_EVERY, MaskedGroup


@pytest.mark.parametrize("after_step", [False, True])
def test_gradient_masking_alone_is_not_exact(after_step):
    """Without the post-step restore, AdamW's decoupled decay moves frozen essential weights."""
    torch.manual_seed(0)
    model = TinyNet(hidden=(6,))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    masks = masks_for(model)
    params = dict(model.named_parameters())
    essential = {n: params[n].detach()[m].clone() for n, m in masks.items()}
    group = MaskedGroup(list(masks), params, masks, essential, opt)
    data = TinyData()
    for _ in range(6):
        opt.zero_grad()
        nn.functional.mse_loss(model(data.x), data.y).backward()
        group.mask_gradients(penalty=0.02)
        assert all(torch.equal(params[n].grad[m], torch.zeros_like(essential[n])) for n, m in
                   masks.items())  # fmt: skip
        opt.step()
        if after_step:
            group.after_step(opt, tidy_every=STATE_TIDY_EVERY)
    exact = [torch.equal(params[n].detach()[m], essential[n]) for n, m in masks.items()]
    assert all(exact) if after_step else not any(exact)


def test_group_memory_is_one_byte_per_mask_entry_plus_calibrates_values():
    torch.manual_seed(0)
    model = TinyNet(hidden=(6,))
    opt = torch.optim.Adam(model.parameters())
    masks = masks_for(model, amount=0.75)
    params = dict(model.named_parameters())
    n = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    allocate = MaskedGroup(list(masks), params, masks, None, opt)
    assert allocate.memory() == {"masks": n, "essential": 0, "index": 0}
    essential = {k: params[k].detach()[m].clone() for k, m in masks.items()}
    calibrate = MaskedGroup(list(masks), params, masks, essential, opt)
    assert calibrate.memory() == {"masks": n, "essential": 4 * kept, "index": 4 * kept}


def _tidy_case(phase, optimizer, every):
    """Allocate (pruned mid-fit, stale state) or calibrate, tidying every ``every`` steps."""
    torch.manual_seed(0)
    model = TinyNet(hidden=(6,), optimizer=optimizer)
    if phase == "allocate":
        prune = MagnitudePruning(amount=0.7, epoch=1, verbose=False)
        gm = GradientMask("allocate", verbose=False)
        callbacks = [prune, gm]
    else:
        prune = None
        masks = masks_for(model)
        gm = GradientMask("calibrate", masks=masks, lam=0.01, verbose=False)
        callbacks = [gm]
    gm.state_tidy_every = every
    t = trainer(callbacks=callbacks, max_epochs=4, gradient_clip_val=0.5)
    t.fit(model, TinyData())
    return model, t.optimizers[0], prune.masks if prune else masks


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_state_tidying_changes_no_trainable_bit(phase, optimizer):
    """Tidying the frozen entries' optimizer state leaves every weight bit-identical."""
    plain, _, masks = _tidy_case(phase, optimizer, every=0)
    tidied, opt, _ = _tidy_case(phase, optimizer, every=5)
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
def test_restore_runs_only_where_it_can_change_something(phase, optimizer, every_step):
    """The post-step restore runs on step 0 and tidy steps, or every step under weight decay."""
    torch.manual_seed(0)
    model = TinyNet(hidden=(6,), optimizer=optimizer)
    masks = masks_for(model)
    if phase == "allocate":
        apply_masks(model, masks)
    before = snapshot(model)
    gm = GradientMask(phase, masks=masks, verbose=False)
    gm.state_tidy_every = 4
    restored_at = []

    def after_batch(trainer, module, *_):  # (one optimizer step per batch)
        (group,) = gm.groups
        if group.restored:
            restored_at.append(group.steps - 1)  # ``steps`` already counts this step

    watch = LambdaCallback(on_train_batch_end=after_batch)
    trainer(callbacks=[gm, watch], max_epochs=2).fit(model, TinyData())
    steps = 12  # 48 samples / batch 8 x 2 epochs
    assert restored_at == (list(range(steps)) if every_step else [0, 4, 8])
    (check_allocate if phase == "allocate" else check_calibrate)(model, masks, before)


@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_step_without_gradient_masking_is_still_restored(phase):
    """An optimizer step this callback did not prepare (raw ``opt.step()``) is restored too."""
    torch.manual_seed(0)
    model = TinyNet(hidden=(6,))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    masks = masks_for(model)
    if phase == "allocate":
        apply_masks(model, masks)
    before = snapshot(model)
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
        check_allocate(model, masks, before)
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
    masks = masks_for(model)
    cb = GradientMask(phase, masks=masks, lam=0.25, anchor_lam=anchor_lam, verbose=False)
    fake_trainer = SimpleNamespace(optimizers=[opt], is_global_zero=True, loggers=[], global_step=0)
    cb.attach(fake_trainer, model, masks)
    start = snapshot(model)  # the anchor: the essential weights when the masks are attached
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
                expected[mask] += (2 * anchor_lam) * (w[mask] - start[name][mask])
            expected[~mask] = 0.0
        else:
            expected = torch.where(mask, torch.zeros(()), torch.add(raw[name], w, alpha=0.5))
        assert torch.equal(g, expected), name
