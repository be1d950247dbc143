"""Bit-exact checks of the PAC-Net invariants shared by the GradientMask tests (a module, not a
test): masks of a tiny model, weight snapshots, and the allocate / calibrate invariants."""

import torch

from pl_pac_trs.pac import MagnitudePruning, compute_masks


def masks_for(model, amount=0.7, scope="global"):
    targets = MagnitudePruning().targets(model)
    return compute_masks(targets, amount, scope)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_pruned_zero(model, masks):
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        p = params[name].detach()
        assert torch.equal(p[~mask], torch.zeros_like(p[~mask])), name
        assert not torch.signbit(p[~mask]).any(), name  # +0.0, not -0.0


def check_allocate(model, masks, before):
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


def check_calibrate(model, masks, before, new_modules=()):
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
