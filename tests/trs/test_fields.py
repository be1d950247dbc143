import pytest
import torch

from pl_pac_trs.trs import RK4, Euler, HODENField, Leapfrog, ODENField


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
