import math

import pytest
import torch

from pl_pac_trs.data.friedman import FriedmanTask, FriedmanTransferDataModule, friedman1


def test_formula_matches_classic_friedman_when_coefficients_are_neutral():
    task = FriedmanTask(a=(1.0,) * 4, b=(1.0,) * 5, c=(0.0,) * 5)
    x = torch.tensor([[0.5, 0.5, 0.25, 0.2, 0.4] + [0.9] * 5], dtype=torch.float64)
    expected = 10 * math.sin(math.pi * 0.25) + 20 * (0.25 - 0.5) ** 2 + 10 * 0.2 + 5 * 0.4
    assert friedman1(x, task).item() == pytest.approx(expected)


def test_tasks_differ_and_sizes():
    src = FriedmanTransferDataModule("source", n_source=300, n_target=20, n_val=50, n_test=60)
    tgt = FriedmanTransferDataModule("target", n_source=300, n_target=20, n_val=50, n_test=60)
    assert src.coefficients != tgt.coefficients
    src.setup()
    tgt.setup()
    assert len(src.train_set) == 300 and len(tgt.train_set) == 20
    assert len(tgt.val_set) == 50 and len(tgt.test_set) == 60
    x, y = src.train_set.tensors
    assert x.shape == (300, 10) and y.shape == (300, 1)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert abs(float(y.mean())) < 0.5 and 0.6 < float(y.std()) < 1.5  # standardised
    # deterministic
    again = FriedmanTransferDataModule("source", n_source=300, n_val=50, n_test=60)
    again.setup()
    assert torch.equal(again.train_set.tensors[1], y)


def test_coefficient_distribution():
    draws = [FriedmanTask.draw(s) for s in range(200)]
    b = torch.tensor([d.b for d in draws])
    c = torch.tensor([d.c for d in draws])
    assert abs(float(b.mean()) - 1) < 0.02 and abs(float(b.std()) - 0.1) < 0.02
    assert abs(float(c.mean())) < 0.01 and abs(float(c.std()) - 0.05) < 0.01


def test_bad_arguments():
    with pytest.raises(ValueError, match="task"):
        FriedmanTransferDataModule("other")
    with pytest.raises(ValueError, match="n_target"):
        FriedmanTransferDataModule(n_target=0)
