"""ResNetClassifier: the network's shapes, names and parameter count, and that it learns digits."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from pl_pac_trs.data.digits import DigitsTransferDataModule
from pl_pac_trs.models import ResNetClassifier
from pl_pac_trs.models.resnet import BasicBlock
from pl_pac_trs.pac import select_parameters


def expected_parameters(widths, blocks, in_channels, classes):
    """The parameter count written in ResNetClassifier's docstring, term by term."""
    total = 9 * in_channels * widths[0] + 2 * widths[0]  # stem conv + BatchNorm
    previous = widths[0]
    for s, w in enumerate(widths):
        total += 9 * previous * w + 9 * w * w + 4 * w  # first block: two convs, two BNs
        if s > 0:
            total += previous * w + 2 * w  # strided 1x1 shortcut + BN
        total += (blocks - 1) * (18 * w * w + 4 * w)
        previous = w
    return total + widths[-1] * classes + classes  # head


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("widths", "blocks", "in_channels", "classes"),
    [((32, 64, 128), 2, 1, 6), ((4,), 1, 1, 2), ((3, 5), 3, 3, 4), ((8, 8, 16, 16), 1, 2, 10)],
)
def test_parameter_count_formula(widths, blocks, in_channels, classes):
    model = ResNetClassifier(classes, widths, blocks, in_channels)
    assert count(model) == expected_parameters(widths, blocks, in_channels, classes)


def test_default_model_is_over_parameterised_for_digits():
    model = ResNetClassifier(num_classes=6)
    assert count(model) == 695_526  # the formula at widths (32, 64, 128), 2 blocks, 6 classes
    dm = DigitsTransferDataModule("source")
    dm.setup()
    assert count(model) > 1000 * len(dm.sets["train"])  # ~430 source training images
    # what MagnitudePruning prunes by default: every conv weight and the head's weight
    prunable = select_parameters(model)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert list(prunable) == [f"{n}.weight" for n in convs] + ["head.weight"]
    assert len(convs) == 1 + 3 * 2 * 2 + 2  # stem, two convs per block, two strided shortcuts
    assert sum(p.numel() for p in prunable.values()) == 692_512 + 128 * 6
    assert not any("bn" in n or n.endswith("bias") for n in prunable)


def test_shapes_and_the_head():
    model = ResNetClassifier(num_classes=4, widths=(4, 8, 16), blocks_per_stage=2, in_channels=3)
    sizes = {}
    for name in ("stem", "stage1", "stage2", "stage3"):
        getattr(model.body, name).register_forward_hook(
            lambda _m, _i, out, name=name: sizes.__setitem__(name, tuple(out.shape))
        )
    assert model(torch.randn(5, 3, 8, 8)).shape == (5, 4)
    assert sizes == {
        "stem": (5, 4, 8, 8),
        "stage1": (5, 4, 8, 8),
        "stage2": (5, 8, 4, 4),
        "stage3": (5, 16, 2, 2),
    }
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 4)  # global pooling: any image size
    assert isinstance(model.head, nn.Linear)
    assert (model.head.in_features, model.head.out_features) == (16, 4)
    assert [n for n, _ in model.named_parameters()][-2:] == ["head.weight", "head.bias"]
    assert [n for n, _ in model.named_children()] == ["body", "head", "metrics"]
    # a 1x1-conv + BN shortcut where a stage starts with stride 2, the identity elsewhere
    shortcuts = [type(b.shortcut) for i in (1, 2, 3) for b in getattr(model.body, f"stage{i}")]
    identity, conv = nn.Identity, nn.Sequential
    assert shortcuts == [identity, identity, conv, identity, conv, identity]
    assert model.hparams.widths == (4, 8, 16) and model.hparams.blocks_per_stage == 2


def test_basic_block_is_a_residual_of_its_layers():
    torch.manual_seed(0)
    block = BasicBlock(3, 3).eval()
    x = torch.randn(2, 3, 5, 5)
    inner = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    torch.testing.assert_close(block(x), torch.relu(inner + x))
    with torch.no_grad():
        block.conv2.weight.zero_()
    # residual branch off: bn2 of zeros is its bias (0 at init), so the block is relu(x)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_bad_arguments():
    for kwargs, match in (
        ({"num_classes": 1}, "num_classes"),
        ({"widths": ()}, "widths"),
        ({"widths": (8, 0)}, "widths"),
        ({"blocks_per_stage": 0}, "blocks_per_stage"),
        ({"in_channels": 0}, "in_channels"),
        ({"lr": 0.0}, "lr must be > 0"),
    ):
        with pytest.raises(ValueError, match=match):
            ResNetClassifier(**kwargs)


def test_resnet_learns_digits():
    torch.manual_seed(0)
    dm = DigitsTransferDataModule("source", source_classes=(0, 1, 2))
    model = ResNetClassifier(num_classes=3, widths=(16, 32), blocks_per_stage=1, lr=3e-3)
    kw = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    Trainer(max_epochs=8, enable_model_summary=False, **kw).fit(model, dm)
    acc = Trainer(**kw).test(model, dm, verbose=False)[0]["test/acc"]
    assert acc > 0.95
