"""The closed-form HODEN gradient (``pl_pac_trs.trs.fused.tanh_grad``) against autograd's double
backward: values and gradients in float64, through leapfrog and RK4 rollouts, autonomous and
time-augmented, depths 1 and 2, in training and under ``no_grad``."""

import pytest
import torch

from pl_pac_trs.trs import RK4, HODENField, Leapfrog, Reversal, mlp, trs_loss
from pl_pac_trs.trs.fused.tanh_grad import (
    TanhMLPInputGradFunction,
    is_scalar_tanh_mlp,
    tanh_mlp_input_grad,
)

RTOL, ATOL = 1e-10, 1e-13


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)


def _spread(module, std=0.6, seed=0):
    """Weights away from the near-linear start, so that tanh' varies over the batch."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return module


def _pair(state_dim=2, hidden=(12, 9), time_augmented=False, position_dim=None):
    """A fused field and a plain-autograd copy with the same (float64) weights."""
    kwargs = dict(hidden=hidden, time_augmented=time_augmented, position_dim=position_dim)
    fused = _spread(HODENField(state_dim, **kwargs).double())
    plain = HODENField(state_dim, fused=False, **kwargs).double()
    plain.load_state_dict(fused.state_dict())
    return fused, plain


def _node_names(tensor):
    """Names of all autograd nodes reachable from ``tensor``."""
    seen, stack, names = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return names


@pytest.mark.parametrize("hidden", [(7,), (6, 5), (5, 4, 3)])
@pytest.mark.parametrize(("in_dim", "n"), [(1, 1), (2, 1), (3, 2), (2, 2)])
@pytest.mark.parametrize("last_bias", [False, True])
def test_input_gradient_and_its_gradients_equal_autograd(hidden, in_dim, n, last_bias):
    torch.manual_seed(0)
    net = _spread(mlp(in_dim, hidden, 1, last_bias=last_bias).double())
    x = torch.randn(9, in_dim, dtype=torch.float64, requires_grad=True)
    out = tanh_mlp_input_grad(net, x, n)
    (ref,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
    ref = ref[:, :n]
    _close(out, ref)
    g = torch.randn_like(ref)
    params = [p for p in net.parameters() if p is not getattr(net[-1], "bias", None)]
    inputs = [x, *params]
    grads = torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref, inputs, g)
    for a, b in zip(*grads, strict=True):
        _close(a, b)


def test_gradcheck_inputs_and_parameters():
    torch.manual_seed(1)
    net = _spread(mlp(3, (5, 4), 1).double())
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    assert torch.autograd.gradcheck(
        lambda x, *ps: TanhMLPInputGradFunction.apply(x, 2, False, *ps), (x, *params)
    )


@pytest.mark.parametrize("hidden", [(16,), (12, 9)])
@pytest.mark.parametrize(
    ("integrator", "time_augmented"),
    [("leapfrog", False), ("leapfrog", True), ("rk4", False), ("rk4", True)],
)
def test_trs_loss_gradients_through_rollouts_equal_the_autograd_path(
    hidden, integrator, time_augmented
):
    """Loss, rollouts and gradients w.r.t. every parameter, ``x0`` (and ``t`` for RK4) of a
    TRS loss (forward and reversed rollouts, 5 steps), fused vs plain autograd, float64."""
    fused, plain = _pair(2, hidden, time_augmented)
    torch.manual_seed(2)
    x0 = torch.randn(6, 2, dtype=torch.float64) * 0.8
    t = torch.sort(torch.rand(6, 6, dtype=torch.float64) * 2, dim=1).values + 0.3
    y = torch.randn(6, 5, 2, dtype=torch.float64) * 0.5
    rev = Reversal.momentum_flip(2, 1)
    runs = []
    for field in (fused, plain):
        integ = Leapfrog(position_dim=1) if integrator == "leapfrog" else RK4()
        xs = x0.clone().requires_grad_(True)
        ts = t.clone().requires_grad_(integrator == "rk4")
        out = trs_loss(field, integ, xs, ts, y, rev, trs_weight=3.0)
        inputs = [xs, *field.parameters()] + ([ts] if ts.requires_grad else [])
        runs.append((out.total, out.trs, torch.autograd.grad(out.total, inputs)))
    _close(runs[0][0], runs[1][0])
    _close(runs[0][1], runs[1][1])
    for a, b in zip(runs[0][2], runs[1][2], strict=True):
        _close(a, b)


@pytest.mark.parametrize(("state_dim", "position_dim"), [(4, 2), (6, 3)])
def test_higher_dimensional_states_equal_the_autograd_path(state_dim, position_dim):
    fused, plain = _pair(state_dim, (10, 8), position_dim=position_dim)
    torch.manual_seed(3)
    x0 = torch.randn(5, state_dim, dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64).expand(5, 5)
    grads = []
    for field in (fused, plain):
        xs = x0.clone().requires_grad_(True)
        traj = Leapfrog(position_dim=position_dim)(field, xs, t)
        grads.append((traj, torch.autograd.grad(traj.sin().sum(), [xs, *field.parameters()])))
    _close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        _close(a, b)


@pytest.mark.parametrize("time_augmented", [False, True])
@pytest.mark.parametrize("hidden", [(16,), (12, 9)])
def test_no_grad_and_inference_mode_evaluation_equal_the_autograd_path(time_augmented, hidden):
    fused, plain = _pair(2, hidden, time_augmented)
    x0 = torch.randn(4, 2, dtype=torch.float64)
    t = torch.linspace(0, 3, 31, dtype=torch.float64).expand(4, 31)
    for integ in (Leapfrog(), RK4()):
        with torch.no_grad():
            a, b = integ(fused, x0, t), integ(plain, x0, t)
            fields = fused(t[:, 3], x0), plain(t[:, 3], x0)
        assert not a.requires_grad and not fields[0].requires_grad
        _close(a, b)
        _close(*fields)
        with torch.inference_mode():
            _close(integ(fused, x0, t), b)
        with torch.inference_mode(), torch.inference_mode(False), torch.no_grad():
            _close(integ(fused, x0, t), b)  # as TRSODEN's eval rollouts leave inference mode


def test_the_closed_form_node_is_taken_and_the_double_backward_is_not():
    fused, plain = _pair(2, (8, 8))
    assert fused.closed_form(fused.kinetic) and fused.closed_form(fused.potential)
    assert not plain.closed_form(plain.kinetic)
    x0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.linspace(0, 1, 4, dtype=torch.float64).expand(3, 4)
    for integ in (Leapfrog(), RK4()):
        names = _node_names(integ(fused, x0, t).sum())
        assert "TanhMLPInputGradFunctionBackward" in names
        assert not any("BackwardBackward" in name for name in names), names
        plain_names = _node_names(integ(plain, x0, t).sum())
        assert "TanhMLPInputGradFunctionBackward" not in plain_names
        assert any("BackwardBackward" in name for name in plain_names)  # autograd's double
    timed, _ = _pair(2, (8,), time_augmented=True)
    p = torch.randn(3, 1, dtype=torch.float64)
    assert type(timed.velocity(p, 0.5).grad_fn).__name__ == "TanhMLPInputGradFunctionBackward"


def test_other_nets_take_the_autograd_path():
    assert is_scalar_tanh_mlp(mlp(2, (4,), 1)) and is_scalar_tanh_mlp(mlp(2, (4, 4), 1, True))
    assert not is_scalar_tanh_mlp(mlp(2, (4,), 2))  # not scalar
    assert not is_scalar_tanh_mlp(mlp(2, (), 1))  # no hidden layer
    field = HODENField(2, hidden=(8,)).double()
    softplus = torch.nn.Sequential(
        torch.nn.Linear(1, 8), torch.nn.Softplus(), torch.nn.Linear(8, 1)
    )
    field.kinetic = softplus.double()
    assert not field.closed_form(field.kinetic) and field.closed_form(field.potential)
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    grad = torch.autograd.grad(field.hamiltonian(x).sum(), x)[0]
    expected = torch.cat([grad[:, 1:], -grad[:, :1]], dim=1)
    _close(field(0.0, x), expected)
    field(0.0, x).pow(2).sum().backward()  # through the generic path
    assert all(p.grad is not None for p in field.parameters() if p.dim() == 2)
    field.zero_grad()
    Leapfrog()(field, x.detach(), torch.linspace(0, 1, 4).expand(5, 4)).sum().backward()
    assert all(p.grad is not None for p in field.parameters() if p.dim() == 2)


def test_derivatives_of_the_backward_need_the_plain_path():
    fused, plain = _pair(2, (6,))
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    (jac,) = torch.autograd.grad(fused(0.0, x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"does not require grad|once_differentiable"):
        torch.autograd.grad(jac.sum(), list(fused.parameters()))
    (jac,) = torch.autograd.grad(plain(0.0, x).sum(), x, create_graph=True)
    assert all(g is not None for g in torch.autograd.grad(jac.sum(), list(plain.parameters())))


def test_fast_tanh_is_close_in_float32_and_off_by_default():
    torch.manual_seed(0)
    exact = HODENField(2, (100, 100), time_augmented=True, init="reference")
    assert not exact.fast_tanh
    fast = HODENField(2, (100, 100), time_augmented=True, init="reference", fast_tanh=True)
    fast.load_state_dict(exact.state_dict())
    x, t = torch.randn(64, 2), torch.rand(64)
    with torch.no_grad():
        a, b = fast(t, x), exact(t, x)
    assert float((a - b).abs().max()) < 1e-5 * max(1.0, float(b.abs().max()))
