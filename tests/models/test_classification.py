"""SmallCNN: the network's shape and learning the digits task with any head size."""

import pytest
import torch
from lightning.pytorch import Trainer

from pl_pac_trs.data.digits import DigitsTransferDataModule
from pl_pac_trs.models import SmallCNN


def test_network_shape():
    model = SmallCNN(num_classes=4, channels=(3, 5), image_size=8)
    assert model.head.in_features == 5 * 4 * 4
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 4)
    with pytest.raises(ValueError, match="num_classes"):
        SmallCNN(num_classes=1)


def test_cnn_learns_digits_and_accepts_other_head_size():
    torch.manual_seed(0)
    dm = DigitsTransferDataModule("source", source_classes=(0, 1, 2))
    model = SmallCNN(num_classes=3, channels=(8, 16), lr=1e-2)
    kw = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    Trainer(max_epochs=6, enable_model_summary=False, **kw).fit(model, dm)
    acc = Trainer(**kw).test(model, dm, verbose=False)[0]["test/acc"]
    assert acc > 0.8
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
