import pytest
import torch

from pl_pac_trs.trs import Reversal


def test_momentum_flip_and_negate():
    R = Reversal.momentum_flip(4, 2)
    x = torch.arange(8.0).reshape(2, 4)
    assert torch.equal(R(x), x * torch.tensor([1.0, 1.0, -1.0, -1.0]))
    assert torch.equal(R(R(x)), x)
    assert torch.equal(Reversal.negate(3)(torch.ones(2, 3)), -torch.ones(2, 3))
    assert Reversal([1, -1, 1]).state_dim == 3


def test_reversal_validation():
    with pytest.raises(ValueError, match="every sign must be 1 or -1"):
        Reversal([1.0, 0.5])
    with pytest.raises(ValueError, match="must not be empty"):
        Reversal([])
    with pytest.raises(ValueError, match="position_dim must be in"):
        Reversal.momentum_flip(2, 2)
    with pytest.raises(ValueError, match=r"reversal has 2 signs .* state dimension 3"):
        Reversal([1, -1]).check_state_dim(3)
