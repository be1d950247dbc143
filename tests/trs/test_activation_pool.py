"""The fused rollouts' activation blocks: reused from step to step, returned to the pool only
when the node that saved them is freed, never read stale."""

from __future__ import annotations

import gc

import pytest
import torch

from pl_pac_trs.trs import ODENField, mlp
from pl_pac_trs.trs.fused import tanh_mlp as tanh_mlp_module
from pl_pac_trs.trs.fused import tanh_mlp_rk4 as rk4_module
from pl_pac_trs.trs.fused.activation_pool import POOL, ActivationPool
from pl_pac_trs.trs.fused.tanh_mlp import rollout_activations, tanh_mlp_leapfrog
from pl_pac_trs.trs.fused.tanh_mlp_rk4 import tanh_mlp_rk4

CPU = torch.device("cpu")


def _rollout(kind: str, net, x0, t):
    if kind == "leapfrog":
        return tanh_mlp_leapfrog(net, x0, t, position_dim=1)
    return tanh_mlp_rk4(net, x0, t)


def _problem(seed: int = 0, rows: int = 5, steps: int = 4):
    torch.manual_seed(seed)
    net = mlp(2, [16, 8], 2)
    x0 = torch.randn(rows, 2)
    t = torch.linspace(0, 1, steps + 1).expand(rows, steps + 1)
    return net, x0, t


def _grads(kind, net, x0, t, target):
    net.zero_grad(set_to_none=True)
    x = x0.clone().requires_grad_(True)
    out = _rollout(kind, net, x, t)
    (out - target).pow(2).mean().backward()
    return out.detach(), [p.grad.clone() for p in net.parameters()] + [x.grad.clone()]


def test_pool_reuses_blocks_and_keeps_no_more_than_its_high_water_mark():
    pool = ActivationPool()
    f32 = torch.float32
    a = pool.take((3, 4, 5), f32, CPU)  # 240 bytes each
    b = pool.take((3, 4, 5), f32, CPU)
    c = pool.take((3, 4, 5), torch.float64, CPU)  # 480 bytes
    assert (pool.allocated, pool.in_use, pool.high_water) == (3, 960, 960)
    pool.give_back(a)
    pool.give_back(c)
    assert (pool.in_use, pool.idle) == (240, 720)
    assert pool.take((3, 4, 5), f32, CPU) is a  # reused, nothing allocated
    assert pool.take((3, 4, 5), torch.float64, CPU) is c
    assert pool.allocated == 3
    pool.give_back(a)
    pool.give_back(b)
    pool.give_back(c)
    assert (pool.in_use, pool.idle, pool.high_water) == (0, 960, 960)
    d = pool.take((2, 4, 5), f32, CPU)  # new, 160 bytes: in use 160, the mark stays 960
    pool.give_back(d)  # idle 1120 > 960: the shape given back longest ago loses a block
    assert (pool.idle, pool.high_water) == (880, 960)
    assert pool.take((3, 4, 5), f32, CPU) is b  # a was dropped, b kept
    e = pool.take((3, 4, 5), f32, CPU)
    assert e is not a and pool.allocated == 5
    pool.give_back(e)
    pool.give_back(b)
    pool.clear()
    assert (pool.idle, pool.high_water) == (0, 0)
    assert pool.take((3, 4, 5), f32, CPU) is not e


def test_no_blocks_off_the_cpu_path_under_autocast_or_for_mixed_dtypes():
    params = list(mlp(2, [8], 2).parameters())
    assert rollout_activations(3, torch.zeros(4, 2), params, True) is not None
    assert rollout_activations(3, torch.zeros(4, 2, dtype=torch.float64), params, True) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert rollout_activations(3, torch.zeros(4, 2), params, True) is None


@pytest.mark.parametrize("kind", ["leapfrog", "rk4"])
def test_pooled_rollout_equals_the_unpooled_one_exactly(kind, monkeypatch):
    net, x0, t = _problem()
    target = torch.randn(5, 4, 2)
    pooled = _grads(kind, net, x0, t, target)
    again = _grads(kind, net, x0, t, target)  # a reused block
    for module in (tanh_mlp_module, rk4_module):
        monkeypatch.setattr(module, "rollout_activations", lambda *args: None)
    fresh = _grads(kind, net, x0, t, target)
    for a, b, c in zip(
        [pooled[0], *pooled[1]], [again[0], *again[1]], [fresh[0], *fresh[1]], strict=True
    ):
        assert torch.equal(a, c) and torch.equal(b, c)


@pytest.mark.parametrize("kind", ["leapfrog", "rk4"])
def test_a_poisoned_idle_block_never_reaches_the_results(kind):
    net, x0, t = _problem(seed=1)
    target = torch.randn(5, 4, 2)
    expected = _grads(kind, net, x0, t, target)
    gc.collect()
    evals = (3 if kind == "leapfrog" else 4) * 4
    for width in (16, 8):  # every idle block of these shapes filled with NaN
        blocks = []
        while True:
            before = POOL.allocated
            block = POOL.take((evals, 5, width), torch.float32, CPU)
            blocks.append(block.fill_(float("nan")))
            if POOL.allocated != before:
                break
        for block in blocks:
            POOL.give_back(block)
    got = _grads(kind, net, x0, t, target)
    for a, b in zip([got[0], *got[1]], [expected[0], *expected[1]], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["leapfrog", "rk4"])
def test_a_retained_graph_keeps_its_block_until_it_is_freed(kind):
    net, x0, t = _problem(seed=2)
    params = list(net.parameters())
    out = _rollout(kind, net, x0, t)
    loss = out.pow(2).sum()
    first = torch.autograd.grad(loss, params, retain_graph=True)
    # another rollout of the same shape while the first graph lives: it must not take its block
    other = _rollout(kind, net, x0 + 1.0, t)
    other.sum().backward()
    second = torch.autograd.grad(loss, params)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    del out, loss, other
    gc.collect()
    before = POOL.allocated
    _rollout(kind, net, x0, t).sum().backward()  # the freed graphs' blocks are reused
    assert POOL.allocated == before


def test_a_training_loop_cycles_through_two_blocks():
    torch.manual_seed(3)
    field = ODENField(2, (32,))
    opt = torch.optim.Adam(field.parameters(), lr=1e-3)
    x0, t = torch.randn(7, 2), torch.linspace(0, 1, 6).expand(7, 6)
    net = field.net
    loss = None
    before = POOL.allocated
    for _ in range(6):
        opt.zero_grad()
        loss = _rollout("leapfrog", net, x0, t).pow(2).mean()  # the last step's graph still alive
        loss.backward()
        opt.step()
    assert POOL.allocated - before <= 2
