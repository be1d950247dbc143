import pytest
import torch

from pl_pac_trs.data.digits import DigitsTransferDataModule


def test_source_and_target_splits():
    src = DigitsTransferDataModule("source", source_classes=(0, 1, 2), target_classes=(7, 8))
    tgt = DigitsTransferDataModule(
        "target", source_classes=(0, 1, 2), target_classes=(7, 8), target_per_class=4
    )
    src.setup()
    tgt.setup()
    assert src.num_classes == 3 and tgt.num_classes == 2
    x, y = tgt.sets["train"].tensors
    assert x.shape == (8, 1, 8, 8) and torch.equal(torch.bincount(y), torch.tensor([4, 4]))
    assert float(x.max()) <= 1 and float(x.min()) >= 0
    ys = src.sets["train"].tensors[1]
    assert set(ys.tolist()) == {0, 1, 2} and len(ys) > 150
    # splits are disjoint: no training image appears in test
    train = {tuple(v.flatten().tolist()) for v in src.sets["train"].tensors[0]}
    test = [tuple(v.flatten().tolist()) for v in src.sets["test"].tensors[0]]
    assert sum(t in train for t in test) < 0.1 * len(test)  # digits has a few duplicate images


def test_bad_arguments():
    with pytest.raises(ValueError, match="source_classes"):
        DigitsTransferDataModule(source_classes=(1,))
    with pytest.raises(ValueError, match="target_classes"):
        DigitsTransferDataModule(target_classes=(3, 11))
    with pytest.raises(ValueError, match="target_per_class"):
        DigitsTransferDataModule(target_per_class=0)


def test_overlapping_classes_share_their_split():
    """A digit in both tasks: the target's test images are never source training images."""
    src = DigitsTransferDataModule("source", source_classes=range(6), target_classes=(5, 6, 7))
    tgt = DigitsTransferDataModule("target", source_classes=range(6), target_classes=(5, 6, 7))
    src.setup()
    tgt.setup()
    five_src = src.sets["test"].tensors[0][src.sets["test"].tensors[1] == 5]
    five_tgt = tgt.sets["test"].tensors[0][tgt.sets["test"].tensors[1] == 0]
    assert torch.equal(five_src, five_tgt)
    train = {tuple(v.flatten().tolist()) for v in src.sets["train"].tensors[0]}
    test = [tuple(v.flatten().tolist()) for v in tgt.sets["test"].tensors[0]]
    assert sum(t in train for t in test) <= 2  # digits holds a few duplicate images
