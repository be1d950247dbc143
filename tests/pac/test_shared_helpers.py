"""The helpers the PAC-Net callbacks share: argument checks, freezing, the anchor penalty."""

import doctest
import importlib
import math

import pytest
import torch
from torch import nn

from pl_pac_trs.pac import check_amount, check_strength
from pl_pac_trs.pac.baselines import AnchorPenalty
from pl_pac_trs.pac.callback import Freezer

MODULES = [
    "baselines", "callback", "checks", "gradient_mask", "masked_optimizer", "checkpoint",
    "pruning", "artifacts",
]  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"pl_pac_trs.pac.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("value", [-0.1, math.inf, math.nan, True, "0.1", None])
def test_check_strength_rejects(value):
    with pytest.raises(ValueError, match=r"^L2SP: lam must be a finite number >= 0, got"):
        check_strength("lam", value, owner="L2SP")


@pytest.mark.parametrize("value", [-0.1, 1, 1.5, math.nan, True, "0.5", None])
def test_check_amount_rejects(value):
    with pytest.raises(ValueError, match=r"amount must be a fraction in \[0, 1\)"):
        check_amount(value)


def test_checks_return_floats():
    assert check_strength("lam", 0) == 0.0 and type(check_strength("lam", 2)) is float
    assert check_amount(0) == 0.0 and check_amount(0.8) == 0.8


def test_freezer_freezes_outside_the_trainable_part_and_releases():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.InstanceNorm1d(4), nn.Linear(4, 1))
    model[2] = nn.InstanceNorm1d(4, track_running_stats=True)
    model[0].bias.requires_grad_(False)  # frozen already: not ours to release
    freezer = Freezer()
    freezer.freeze(model, trainable_modules=["3"], trainable={"0.weight"})
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["0.weight", "3.weight", "3.bias"]
    assert freezer.norms == [model[1], model[2]]
    model.train()
    freezer.eval_norms()
    assert not model[1].training and not model[2].training and model[3].training
    freezer.release()
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["0.bias"]


def test_anchor_penalty_values_whole_and_masked():
    w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    mask = torch.tensor([True, False, True])
    whole, masked = AnchorPenalty(0.5), AnchorPenalty(0.5)
    whole.start({"w": w})
    masked.start({"w": w}, masks={"w": mask})
    assert torch.equal(masked.anchors["w"], torch.tensor([1.0, 3.0]))  # stored compactly
    with torch.no_grad():
        w.add_(torch.tensor([0.5, 1.0, -1.0]))
    assert whole.value({"w": w}).item() == 0.5 * (0.25 + 1 + 1)
    assert masked.value({"w": w}, {"w": mask}).item() == 0.5 * (0.25 + 1)
    w.grad = torch.zeros(3)
    masked.add_gradient({"w": w}, {"w": mask})
    assert torch.equal(w.grad, torch.tensor([0.5, 0.0, -1.0]))  # 2 * lam * (w - anchor)
    restored = AnchorPenalty(0.5)
    restored.start({"w": w}, masks={"w": mask}, restored={"w": torch.tensor([7.0, 8.0])})
    assert torch.equal(restored.anchors["w"], torch.tensor([7.0, 8.0]))
