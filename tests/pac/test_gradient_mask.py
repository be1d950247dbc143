"""GradientMask: the allocate/calibrate invariants hold bit-exactly (torch.equal) in whole fits."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from invariants import check_allocate, check_calibrate, check_pruned_zero, masks_for, snapshot
from lightning.pytorch.callbacks import LambdaCallback
from pac_tiny import TinyData, TinyNet, trainer

from pl_pac_trs.pac import GradientMask, MagnitudePruning, apply_masks


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
        prune = MagnitudePruning(amount=amount, pruning_fn=scope, epoch=1, verbose=False)
        snap = LambdaCallback(
            on_train_epoch_start=lambda tr, m: snapshots.setdefault(tr.current_epoch, snapshot(m)),
            # +0.0 after every step, not only at the end (the sign pass is not run every step)
            on_train_batch_end=lambda tr, m, *_: prune.masks and check_pruned_zero(m, prune.masks),
        )
        callbacks = [prune, GradientMask("allocate", verbose=False), snap]
    else:
        masks = masks_for(model, amount, scope)
        snapshots[0] = snapshot(model)
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
        check_allocate(model, prune.masks, snapshots[1])
    else:
        kept = {
            k: v for k, v in masks.items() if not any(k.startswith(m + ".") for m in new_modules)
        }
        check_calibrate(model, kept, snapshots[0], new_modules)
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
    masks = masks_for(model)
    if phase == "allocate":
        apply_masks(model, masks)
    before = snapshot(model)
    trainer(callbacks=[GradientMask(phase, masks=masks, verbose=False)]).fit(model, TinyData())
    check = check_allocate if phase == "allocate" else check_calibrate
    check(model, masks, before)


def test_calibrate_penalty_pulls_redundant_to_zero():
    torch.manual_seed(0)
    norms = []
    for lam in (0.0, 5.0):
        torch.manual_seed(0)
        model = TinyNet(hidden=(8,), optimizer="adam")
        masks = masks_for(model)
        cb = GradientMask("calibrate", masks=masks, lam=lam, verbose=False)
        trainer(callbacks=[cb], max_epochs=3).fit(model, TinyData())
        w = torch.cat([p.detach()[~masks[n]] for n, p in model.named_parameters() if n in masks])
        norms.append(float((w**2).sum()))
        if lam:
            assert float(cb.penalty(model)) == pytest.approx(lam * norms[-1], rel=1e-5)
    assert norms[1] < 0.5 * norms[0]


def test_mean_penalty_is_the_sum_penalty_divided_by_the_redundant_count():
    """penalty_norm="mean" with lam = n * c trains as penalty_norm="sum" with lam = c."""
    torch.manual_seed(0)
    model = TinyNet(hidden=(8,), optimizer="sgd")
    masks = masks_for(model)
    count = sum(int((~m).sum()) for m in masks.values())
    finals, penalties = [], []
    for norm, lam in (("sum", 0.5), ("mean", 0.5 * count)):
        m = copy.deepcopy(model)
        cb = GradientMask("calibrate", masks=masks, lam=lam, penalty_norm=norm, verbose=False)
        trainer(callbacks=[cb], max_epochs=2).fit(m, TinyData())
        finals.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
        penalties.append(float(cb.penalty(m)))
    assert torch.allclose(finals[0], finals[1], rtol=1e-5, atol=1e-7)
    assert penalties[1] == pytest.approx(penalties[0], rel=1e-5)
    w = torch.cat([p.detach()[~masks[n]] for n, p in m.named_parameters() if n in masks])
    assert penalties[1] == pytest.approx(0.5 * float((w.double() ** 2).mean()) * count, rel=1e-5)
    with pytest.raises(ValueError, match="penalty_norm must be one of"):
        GradientMask("calibrate", penalty_norm="max")


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


def test_allocate_anchor_penalty_keeps_weights_closer():
    dists = []
    for anchor in (0.0, 50.0):
        torch.manual_seed(0)
        model = TinyNet(hidden=(8,), optimizer="adam")
        masks = masks_for(model)
        apply_masks(model, masks)
        start = copy.deepcopy(model.body[0].weight.detach())
        cb = GradientMask("allocate", masks=masks, anchor_lam=anchor, verbose=False)
        trainer(callbacks=[cb], max_epochs=3).fit(model, TinyData())
        dists.append(float((model.body[0].weight.detach() - start).norm()))
        check_allocate(model, {"body.0.weight": masks["body.0.weight"]}, {"body.0.weight": start})
    assert dists[1] < 0.5 * dists[0]


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
    masks = masks_for(model)
    with torch.no_grad():
        model.norm.running_mean.fill_(0.3)
    before = snapshot(model)
    trainer(callbacks=[GradientMask("calibrate", masks=masks, verbose=False)]).fit(
        model, TinyData()
    )
    check_calibrate(model, masks, before)  # includes norm.running_mean / running_var
