import pytest
import torch

from pl_pac_trs.trs import Leapfrog, ODENField, Reversal, mlp, trs_loss
from pl_pac_trs.trs.fused.tanh_mlp import is_tanh_mlp, tanh_mlp


def _grads(out, inputs, g):
    return torch.autograd.grad(out, inputs, g)


def _rollout_case(plain, d):
    """Random float64 weights for ``plain``, a start ``x0`` that needs gradients, and per-sample
    non-uniform grids: three forward and three backward (reversed-time) ones."""
    for p in plain.parameters():
        p.data.normal_(0, 0.5)
    x0 = torch.randn(6, d, dtype=torch.float64, requires_grad=True)
    t = torch.sort(torch.rand(6, 5, dtype=torch.float64), dim=1).values
    return x0, torch.cat([t[:3], -t[3:]])


def _assert_rollout_equals(fused, ref, plain, x0):
    """``fused(x0)`` against the autograd rollout ``ref``: values, the gradients of the
    parameters and ``x0``, and gradcheck of the node."""
    out = fused(x0)
    g = torch.randn_like(ref)
    inputs = [x0, *plain.parameters()]
    for a, b in zip(_grads(out, inputs, g), _grads(ref, inputs, g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(fused, (x0,))


@pytest.mark.parametrize("hidden", [(64,), (16, 8), (5, 4, 3)])
@pytest.mark.parametrize("last_bias", [False, True])
@pytest.mark.parametrize("fast", [False, True])
def test_values_and_gradients_equal_autograd_of_the_plain_mlp(hidden, last_bias, fast):
    torch.manual_seed(0)
    net = mlp(3, hidden, 2, last_bias=last_bias, init="torch").double()
    x = torch.randn(11, 3, dtype=torch.float64, requires_grad=True)
    out, ref = tanh_mlp(net, x, fast_tanh=fast), net(x)
    g = torch.randn_like(ref)
    inputs = [x, *net.parameters()]
    for a, b in zip(_grads(out, inputs, g), _grads(ref, inputs, g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-13)


def test_gradcheck_float64():
    torch.manual_seed(1)
    net = mlp(2, (6, 5), 2).double()
    for p in net.parameters():
        p.data.normal_()  # away from the near-linear start, so tanh' varies
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: tanh_mlp(net, x), (x,))
    assert torch.autograd.gradcheck(lambda x: tanh_mlp(net, x, fast_tanh=True), (x,))


def test_fast_tanh_absolute_error_in_float32():
    z = torch.cat([torch.linspace(-20, 20, 200001), torch.randn(100000) * 1e-4])
    net = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Tanh(), torch.nn.Linear(1, 1, False))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
        net[2].weight.fill_(1.0)
        fast = tanh_mlp(net, z[:, None], fast_tanh=True)[:, 0]
    exact = torch.tanh(z.double())
    assert float((fast.double() - exact).abs().max()) < 2.5e-7
    assert torch.all(fast.abs() <= 1.0)


def test_no_second_derivatives_through_the_fused_node():
    net = mlp(2, (8,), 2).double()
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(tanh_mlp(net, x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"does not require grad|once_differentiable"):
        gx.sum().backward()


def test_is_tanh_mlp():
    assert is_tanh_mlp(mlp(2, (4, 4), 2)) and is_tanh_mlp(mlp(2, (), 2))
    assert not is_tanh_mlp(torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU()))
    assert not is_tanh_mlp(torch.nn.Sequential(torch.nn.Linear(2, 4, bias=False), torch.nn.Tanh()))
    assert not is_tanh_mlp(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("fast", [False, True])
def test_trs_loss_and_gradients_of_the_fused_field_equal_the_plain_field(fast):
    """The exp I computation (10 leapfrog steps, forward + reversed rollout) in float32."""
    torch.manual_seed(0)
    fused = ODENField(2, (1000,), fused=True, fast_tanh=fast)
    plain = ODENField(2, (1000,), fused=False)
    plain.load_state_dict(fused.state_dict())
    x0 = torch.randn(150, 2) * 0.5
    t = torch.linspace(0, 1, 11).expand(150, 11)
    y = torch.randn(150, 10, 2) * 0.5
    rev = Reversal.momentum_flip(2, 1)
    losses, grads = [], []
    for field in (fused, plain):
        out = trs_loss(field, Leapfrog(), x0, t, y, rev, trs_weight=10.0)
        losses.append(out.total)
        grads.append(torch.autograd.grad(out.total, list(field.parameters())))
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-7)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-6)


def test_fused_field_in_no_grad_rollouts_and_the_plain_switch():
    field = ODENField(2, (16,))
    assert field.fused and field.fast_tanh
    x = torch.randn(5, 2)
    with torch.no_grad():
        out = field(0.0, x)
    assert not out.requires_grad
    torch.testing.assert_close(out, field.net(x), atol=3e-7, rtol=0)
    exact = ODENField(2, (16,), fast_tanh=False)
    exact.load_state_dict(field.state_dict())
    torch.testing.assert_close(exact(0.0, x), exact.net(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("dims", [(2, 1), (4, 2), (3, 1)])
def test_fused_leapfrog_rollout_equals_the_generic_scheme_and_its_autograd(fast, dims):
    """Values and gradients (parameters and x0) of the one-node rollout against autograd
    through Leapfrog's generic path, float64; forward and reversed (negative steps) halves."""
    from pl_pac_trs.trs.fused.tanh_mlp import tanh_mlp_leapfrog

    d, n = dims
    torch.manual_seed(0)
    plain = ODENField(d, (12, 7), fused=False).double()
    x0, t = _rollout_case(plain, d)
    ref = Leapfrog(position_dim=n)(plain, x0, t)
    _assert_rollout_equals(
        lambda x: tanh_mlp_leapfrog(plain.net, x, t, n, fast_tanh=fast), ref, plain, x0
    )


def test_leapfrog_takes_the_fused_rollout_only_where_it_applies():
    torch.manual_seed(0)
    field = ODENField(2, (8,))
    x0, t = torch.randn(4, 2), torch.linspace(0, 1, 6).expand(4, 6)
    out = Leapfrog()(field, x0, t)
    assert out.grad_fn is not None and "LeapfrogTanhMLP" in type(out.grad_fn).__name__
    timed = ODENField(2, (8,), time_augmented=True)
    assert timed.fused_rollout("leapfrog", x0, t, 1) is None
    assert ODENField(2, (8,), fused=False).fused_rollout("leapfrog", x0, t, 1) is None
    assert field.fused_rollout("euler", x0, t, 1) is None  # a scheme it does not implement
    t_grad = t.clone().requires_grad_(True)  # gradients w.r.t. the grid: the generic path
    assert "LeapfrogTanhMLP" not in type(Leapfrog()(field, x0, t_grad).grad_fn).__name__


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("time_augmented", [False, True])
@pytest.mark.parametrize("last_bias", [True, False])
def test_fused_rk4_rollout_equals_the_generic_scheme_and_its_autograd(
    fast, time_augmented, last_bias
):
    """Values and gradients (parameters and x0) of the one-node RK4 rollout against autograd
    through RK4's step loop, float64, on per-sample non-uniform forward and reversed grids."""
    from pl_pac_trs.trs import RK4
    from pl_pac_trs.trs.fused.tanh_mlp_rk4 import tanh_mlp_rk4

    torch.manual_seed(0)
    plain = ODENField(3, (12, 7), time_augmented=time_augmented, fused=False).double()
    if not last_bias:
        plain.net[-1].bias = None
    x0, t = _rollout_case(plain, 3)
    ref = RK4()(plain, x0, t)
    _assert_rollout_equals(
        lambda x: tanh_mlp_rk4(plain.net, x, t, time_augmented, fast_tanh=fast), ref, plain, x0
    )


def test_fused_rk4_float32_values_equal_the_fused_field_step_loop():
    """In float32 the node does the step loop's arithmetic in the same order: the rollout is
    bit-identical to RK4's generic loop over the (fused-node) field."""
    from pl_pac_trs.trs import RK4
    from pl_pac_trs.trs.integrators import FixedGridIntegrator

    torch.manual_seed(0)
    for time_augmented in (False, True):
        field = ODENField(2, (16,), time_augmented=time_augmented)
        x0, t = torch.randn(5, 2), torch.linspace(0, 1, 7).expand(5, 7)
        loop = FixedGridIntegrator.rollout(RK4(), field, x0, t)
        assert torch.equal(RK4()(field, x0, t), loop)


def test_rk4_takes_the_fused_rollout_only_where_it_applies():
    from pl_pac_trs.trs import RK4

    torch.manual_seed(0)
    x0, t = torch.randn(4, 2), torch.linspace(0, 1, 6).expand(4, 6)
    for time_augmented in (False, True):
        out = RK4()(ODENField(2, (8,), time_augmented=time_augmented), x0, t)
        assert out.grad_fn is not None and "RK4TanhMLP" in type(out.grad_fn).__name__
    plain = ODENField(2, (8,), fused=False)
    assert plain.fused_rollout("rk4", x0, t) is None
    assert "RK4TanhMLP" not in type(RK4()(plain, x0, t).grad_fn).__name__
    t_grad = t.clone().requires_grad_(True)  # gradients w.r.t. the grid: the generic path
    assert "RK4TanhMLP" not in type(RK4()(ODENField(2, (8,)), x0, t_grad).grad_fn).__name__


def test_no_grad_fused_rollouts_equal_the_graph_ones_and_record_nothing():
    """Test-time rollouts (no grad) take the fused arithmetic without keeping activations:
    bit-identical states, no autograd node."""
    from pl_pac_trs.trs import RK4

    torch.manual_seed(0)
    x0, t = torch.randn(4, 2), torch.linspace(0, 2, 9).expand(4, 9)
    for field, integrator in [
        (ODENField(2, (16,)), Leapfrog()),
        (ODENField(2, (16,)), RK4()),
        (ODENField(2, (16,), time_augmented=True), RK4()),
    ]:
        with_graph = integrator(field, x0, t)
        assert with_graph.grad_fn is not None
        with torch.no_grad():
            plain = integrator(field, x0, t)
        assert plain.grad_fn is None and torch.equal(plain, with_graph.detach())
