import pytest
import torch
from pac_tiny import TinyData, TinyNet, trainer

from pl_pac_trs.pac import L2SP, LinearProbe


def test_l2sp_pulls_towards_start():
    dists = []
    for lam in (0.0, 10.0):
        torch.manual_seed(0)
        model = TinyNet(hidden=(8,), optimizer="adam")
        start = model.body[0].weight.detach().clone()
        trainer(callbacks=[L2SP(lam=lam)], max_epochs=3).fit(model, TinyData())
        dists.append(float((model.body[0].weight.detach() - start).norm()))
    assert dists[1] < 0.5 * dists[0]


def test_l2sp_bad_lam():
    with pytest.raises(ValueError, match="lam"):
        L2SP(lam=-1)


def test_linear_probe_trains_head_only():
    torch.manual_seed(0)
    model = TinyNet(hidden=(8,), batch_norm=True, optimizer="adamw")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer(callbacks=[LinearProbe(head=["head"])]).fit(model, TinyData())
    for name, value in model.state_dict().items():
        if name.startswith("head."):
            assert not torch.equal(value, before[name])
        else:
            assert torch.equal(value, before[name]), name
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="matches no parameter"):
        trainer(callbacks=[LinearProbe(head=["classifier"])]).fit(model, TinyData())
