import math

import pytest
import torch

from pl_pac_trs.trs import RK4, Euler, HODENField, Leapfrog, ODENField, mlp


def test_oden_mlp_structure_and_time_augmentation():
    field = ODENField(2, hidden=(16, 8))
    linears = [m for m in field.net if isinstance(m, torch.nn.Linear)]
    assert [m.in_features for m in linears] == [2, 16, 8]
    assert linears[-1].bias is None and all(m.bias is not None for m in linears[:-1])
    assert sum(isinstance(m, torch.nn.Tanh) for m in field.net) == 2
    x = torch.randn(5, 2)
    assert torch.equal(field(torch.tensor(0.0), x), field(torch.tensor(3.0), x))  # autonomous

    timed = ODENField(2, hidden=(16,), time_augmented=True)
    assert timed.net[0].in_features == 3
    t = torch.arange(5.0)
    out = timed(t, x)
    expected = torch.stack([timed.net(torch.cat([x[i], t[i : i + 1]]))[None][0] for i in range(5)])
    torch.testing.assert_close(out, expected)
    # scalar time broadcasts over the batch
    torch.testing.assert_close(timed(torch.tensor(2.0), x), timed(torch.full((5,), 2.0), x))


def test_hoden_field_is_hamiltonian_gradient():
    torch.manual_seed(0)
    field = HODENField(4, hidden=(16,)).double()
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    grad = torch.autograd.grad(field.hamiltonian(x).sum(), x)[0]
    expected = torch.cat([grad[:, 2:], -grad[:, :2]], dim=1)
    torch.testing.assert_close(field(0.0, x), expected)
    # separable: dq/dt depends on p only, dp/dt on q only
    x2 = x.detach().clone()
    x2[:, :2] += 1.0
    assert torch.equal(field(0.0, x2)[:, :2], field(0.0, x.detach())[:, :2])
    assert [type(m) for m in field.kinetic][-1] is torch.nn.Linear
    assert field.kinetic[-1].bias is None and field.potential[-1].bias is None


def test_hoden_works_without_grad_and_keeps_graph_when_training():
    field = HODENField(2, hidden=(8,))
    x = torch.randn(3, 2)
    with torch.no_grad():
        out = field(0.0, x)
    assert not out.requires_grad
    with torch.inference_mode(False), torch.no_grad():
        torch.testing.assert_close(field(0.0, x), out)
    out = field(0.0, x)
    assert out.requires_grad
    out.pow(2).sum().backward()  # second-order gradients reach the parameters
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in field.parameters() if p.dim() == 2
    )


def test_hoden_position_dim_validation():
    with pytest.raises(ValueError, match="state_dim=3 is odd"):
        HODENField(3)
    with pytest.raises(ValueError, match="position_dim must be in"):
        HODENField(4, position_dim=4)
    assert HODENField(3, hidden=(4,), position_dim=1).position_dim == 1


def test_learned_hamiltonian_is_conserved_by_leapfrog():
    torch.manual_seed(3)
    field = HODENField(2, hidden=(32,)).double()
    x0 = torch.randn(4, 2, dtype=torch.float64) * 0.5
    t = torch.linspace(0, 10, 501, dtype=torch.float64).expand(4, 501)
    with torch.no_grad():
        h0 = field.hamiltonian(x0)
        drift = {}
        for name, integ in (("leapfrog", Leapfrog()), ("euler", Euler()), ("rk4", RK4())):
            traj = integ(field, x0, t)
            drift[name] = float((field.hamiltonian(traj) - h0[:, None]).abs().max())
    scale = float(h0.abs().max())
    assert drift["leapfrog"] < 1e-3 * max(scale, 1.0), drift
    assert drift["leapfrog"] * 10 < drift["euler"], drift


def test_separable_leapfrog_path_equals_generic_path_with_gradients():
    torch.manual_seed(0)
    field = HODENField(2, hidden=(16,)).double()
    x0 = torch.randn(5, 2, dtype=torch.float64)
    t = torch.sort(torch.rand(5, 7, dtype=torch.float64) * 2, dim=1).values
    runs = []
    for separable in (True, False):
        field.separable = separable
        field.zero_grad()
        out = Leapfrog()(field, x0, t)
        out.pow(2).sum().backward()
        runs.append((out.detach(), [p.grad.clone() for p in field.parameters()]))
    del field.separable  # back to the class attribute
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=1e-12, atol=1e-14)
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_time_augmented_hoden_depends_on_t_and_is_hamiltonian_gradient_at_t():
    torch.manual_seed(0)
    field = HODENField(2, hidden=(16,), time_augmented=True).double()
    assert field.kinetic[0].in_features == 2 and field.potential[0].in_features == 2
    assert not field.autonomous and not field.separable
    assert HODENField(2).autonomous and HODENField(2).separable  # default unchanged
    x = torch.randn(5, 2, dtype=torch.float64)
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    out = field(t, x)
    assert not torch.allclose(out, field(t + 1.0, x))  # depends on t
    # (dK/dp, -dV/dq) by autograd at that t, t an extra input of each MLP
    q = x[:, :1].clone().requires_grad_(True)
    p = x[:, 1:].clone().requires_grad_(True)
    kin = field.kinetic(torch.cat([p, t[:, None]], dim=1)).sum()
    pot = field.potential(torch.cat([q, t[:, None]], dim=1)).sum()
    (dk_dp,) = torch.autograd.grad(kin, p)
    (dv_dq,) = torch.autograd.grad(pot, q)
    torch.testing.assert_close(out, torch.cat([dk_dp, -dv_dq], dim=1))
    # the same through hamiltonian(x, t), velocity(p, t) and force(q, t)
    xg = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(field.hamiltonian(xg, t).sum(), xg)[0]
    torch.testing.assert_close(out, torch.cat([grad[:, 1:], -grad[:, :1]], dim=1))
    torch.testing.assert_close(field.velocity(x[:, 1:], t), dk_dp)
    torch.testing.assert_close(field.force(x[:, :1], t), -dv_dq)
    # scalar time broadcasts over the batch
    torch.testing.assert_close(field(torch.tensor(2.0), x), field(torch.full((5,), 2.0), x))
    with pytest.raises(ValueError, match="needs the time"):
        field.velocity(x[:, 1:])
    with pytest.raises(ValueError, match="needs the time"):
        field.hamiltonian(x)


def test_default_hoden_ignores_t():
    torch.manual_seed(0)
    field = HODENField(2, hidden=(16,))
    assert field.kinetic[0].in_features == 1 and field.potential[0].in_features == 1
    x = torch.randn(5, 2)
    assert torch.equal(field(torch.tensor(0.0), x), field(torch.arange(5.0) * 3.0, x))
    assert torch.equal(field.hamiltonian(x), field.hamiltonian(x, torch.tensor(7.0)))


def test_time_augmented_hoden_works_without_grad_and_keeps_graph_when_training():
    torch.manual_seed(0)
    field = HODENField(2, hidden=(8,), time_augmented=True)
    x, t = torch.randn(3, 2), torch.tensor([0.0, 0.5, 1.0])
    with torch.no_grad():
        out = field(t, x)
    assert not out.requires_grad
    # eval rollouts under Lightning's inference mode leave it the way TRSODEN does
    grid = torch.linspace(0, 1, 4).expand(3, 4)
    with torch.inference_mode(), torch.inference_mode(False), torch.no_grad():
        torch.testing.assert_close(field(t, x), out)
        traj = RK4()(field, x, grid)
    assert traj.shape == (3, 3, 2) and torch.isfinite(traj).all()
    out = field(t, x)
    assert out.requires_grad
    out.pow(2).sum().backward()  # second-order gradients reach the parameters
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in field.parameters() if p.dim() == 2
    )


def test_time_augmented_hoden_leapfrog_takes_the_generic_path_with_t():
    torch.manual_seed(0)
    field = HODENField(2, hidden=(16,), time_augmented=True).double()
    x0 = torch.randn(4, 2, dtype=torch.float64)
    t = torch.sort(torch.rand(4, 6, dtype=torch.float64) * 2, dim=1).values
    out = Leapfrog()(field, x0, t)
    # manual kick-drift-kick with the times t, t + h/2, t + h
    q, p = x0[:, :1], x0[:, 1:]
    expected = []
    for k in range(t.shape[1] - 1):
        h = (t[:, k + 1] - t[:, k])[:, None]
        p = p + 0.5 * h * field.force(q, t[:, k])
        q = q + h * field.velocity(p, t[:, k] + 0.5 * h[:, 0])
        p = p + 0.5 * h * field.force(q, t[:, k + 1])
        expected.append(torch.cat([q, p], dim=1))
    torch.testing.assert_close(out, torch.stack(expected, dim=1))
    # and the result depends on the time origin
    assert not torch.allclose(out, Leapfrog()(field, x0, t + 1.0))


@pytest.mark.parametrize("hidden", [(1000,), (100, 100)])
def test_reference_init_is_glorot_uniform_with_zero_biases(hidden):
    torch.manual_seed(0)
    for field, nets in (
        (ODENField(2, hidden=hidden, init="reference"), "net"),
        (HODENField(2, hidden=hidden, init="reference"), ("kinetic", "potential")),
    ):
        for name in (nets,) if isinstance(nets, str) else nets:
            linears = [m for m in getattr(field, name) if isinstance(m, torch.nn.Linear)]
            for layer in linears:
                fan_out, fan_in = layer.weight.shape
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                w = layer.weight.detach()
                assert float(w.abs().max()) <= bound
                # uniform on [-bound, bound]: the extremes are reached and the spread matches
                if w.numel() >= 1000:
                    assert float(w.abs().max()) > 0.99 * bound
                    assert abs(float(w.std()) - bound / math.sqrt(3.0)) < 0.05 * bound
                if layer.bias is not None:
                    assert torch.equal(layer.bias.detach(), torch.zeros_like(layer.bias))
            assert linears[-1].bias is None


def test_torch_init_is_pytorch_default_and_differs_from_reference():
    torch.manual_seed(0)
    ref = ODENField(2, hidden=(1000,), init="reference")
    torch.manual_seed(0)
    plain = ODENField(2, hidden=(1000,), init="torch")
    first = plain.net[0]
    # Kaiming-uniform with a=sqrt(5): bound 1/sqrt(fan_in) for weights and biases
    assert float(first.weight.abs().max()) > 0.7 > 6 / math.sqrt(2 + 1000)
    assert float(first.weight.abs().max()) <= 1 / math.sqrt(2)
    assert float(first.bias.abs().max()) > 0.5
    assert float(ref.net[0].weight.abs().max()) <= math.sqrt(6 / 1002)
    torch.manual_seed(0)
    expected = torch.nn.Linear(2, 1000)
    assert torch.equal(first.weight, expected.weight) and torch.equal(first.bias, expected.bias)
    assert ref.init == "reference" and plain.init == "torch"


@pytest.mark.parametrize("cls", [ODENField, HODENField])
def test_unknown_init_is_rejected_with_the_choices(cls):
    with pytest.raises(
        ValueError, match=r"init must be one of \['reference', 'torch'\], got 'kaiming'"
    ):
        cls(2, hidden=(4,), init="kaiming")
    with pytest.raises(ValueError, match="init must be one of"):
        mlp(2, [4], 2, init="glorot")
