import math

import pytest
import torch
from fields_zoo import CosineField, DampedField, HarmonicField

from pl_pac_trs.trs import (
    RK4,
    Euler,
    FixedGridIntegrator,
    Leapfrog,
    ODENField,
    Reversal,
    TorchDiffEq,
    make_integrator,
)
from pl_pac_trs.trs.loss import paired_rollout, trs_terms


def harmonic_exact(x0, t):
    """Exact solution of q' = p, p' = -q at times t (B, S)."""
    q0, p0 = x0[:, :1], x0[:, 1:]
    q = q0 * torch.cos(t) + p0 * torch.sin(t)
    p = -q0 * torch.sin(t) + p0 * torch.cos(t)
    return torch.stack([q, p], dim=-1)


def uniform_grid(batch, steps, span, dtype=torch.float64):
    return torch.linspace(0, span, steps + 1, dtype=dtype).expand(batch, steps + 1).clone()


def test_leapfrog_is_exactly_time_reversible_for_harmonic_field():
    torch.manual_seed(0)
    x0 = torch.randn(8, 2)
    t = torch.sort(torch.rand(8, 11) * 3, dim=1).values  # per-sample, non-uniform
    R = Reversal.momentum_flip(2, 1)
    fwd, bwd = paired_rollout(HarmonicField(), Leapfrog(), x0, t, R)
    # negation is exact and rounding is sign-symmetric, so the backward leapfrog rollout is the
    # exact mirror image of the forward one: L_TRS is exactly zero, not just small
    assert torch.equal(R(fwd), bwd)
    assert float(trs_terms(fwd, bwd, R)) == 0.0
    # and a step of -dt from R(X_k) lands back on R(X_{k-1}) up to rounding
    back = Leapfrog()(HarmonicField(), R(fwd[:, -1]), -t[:, -2:].flip(1))
    assert torch.allclose(R(back[:, 0]), fwd[:, -2], atol=1e-5)


def test_trs_error_positive_for_damped_field():
    torch.manual_seed(0)
    x0 = torch.randn(8, 2)
    t = uniform_grid(8, 10, 1.0, torch.float32)
    R = Reversal.momentum_flip(2, 1)
    fwd, bwd = paired_rollout(DampedField(0.5), Leapfrog(), x0, t, R)
    assert float(trs_terms(fwd, bwd, R)) > 1e-3


def observed_order(integrator, steps=(10, 20, 40), span=2.0):
    x0 = torch.tensor([[1.0, 0.5], [-0.3, 0.8]], dtype=torch.float64)
    errors = []
    for n in steps:
        t = uniform_grid(2, n, span)
        out = integrator(HarmonicField(), x0, t)
        exact = harmonic_exact(x0, t[:, 1:])
        errors.append(float((out[:, -1] - exact[:, -1]).abs().max()))
    return [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]


def test_rk4_converges_at_fourth_order():
    orders = observed_order(RK4())
    assert all(3.8 < o < 4.2 for o in orders), orders


def test_leapfrog_converges_at_second_order_and_euler_at_first():
    assert all(1.9 < o < 2.1 for o in observed_order(Leapfrog())), observed_order(Leapfrog())
    assert all(0.8 < o < 1.2 for o in observed_order(Euler(), steps=(100, 200, 400)))


class _Midpoint(FixedGridIntegrator):
    """A scheme written as its step alone: the base owns the loop."""

    def step(self, field, x, t0, t1, h):
        return x + h * field(t0 + 0.5 * h[:, 0], x + 0.5 * h * field(t0, x))


def test_a_scheme_writes_only_its_step():
    assert all(1.9 < o < 2.1 for o in observed_order(_Midpoint())), observed_order(_Midpoint())
    # the base hands each step its own interval: per-sample, non-uniform grids
    x0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 0.1, 0.3], [1.0, 1.2, 1.25]], dtype=torch.float64)
    seen = []

    class Recording(FixedGridIntegrator):
        def step(self, field, x, t0, t1, h):
            seen.append((t0.tolist(), t1.tolist(), h.squeeze(1).tolist()))
            return x + 1.0

    out = Recording()(HarmonicField(), x0, t)
    assert torch.equal(out, torch.stack([x0 + 1.0, x0 + 2.0], dim=1))
    assert seen == [
        ([0.0, 1.0], [0.1, 1.2], (t[:, 1] - t[:, 0]).tolist()),
        ([0.1, 1.2], [0.3, 1.25], (t[:, 2] - t[:, 1]).tolist()),
    ]


def test_each_fixed_grid_scheme_is_its_step_repeated():
    torch.manual_seed(0)
    field = ODENField(2, hidden=(8,), time_augmented=True)
    x0 = torch.randn(3, 2)
    t = torch.sort(torch.rand(3, 5) * 2, dim=1).values
    for integrator in (RK4(), Euler(), Leapfrog(position_dim=1)):
        x, states = x0, []
        for k in range(4):
            x = integrator.step(
                field, x, t[:, k], t[:, k + 1], t[:, k + 1 : k + 2] - t[:, k : k + 1]
            )
            states.append(x)
        assert torch.equal(integrator(field, x0, t), torch.stack(states, dim=1)), integrator


@pytest.mark.parametrize(
    ("integrator", "tol"),
    [
        (RK4(), 1e-12),
        (Euler(), 1e-12),
        (Leapfrog(), 1e-12),
        (TorchDiffEq("rk4"), 1e-12),
        # adaptive: the step size is chosen on the whole batch, so equal up to the tolerance
        (TorchDiffEq("dopri5", rtol=1e-7, atol=1e-9), 1e-6),
    ],
)
def test_per_sample_grids_match_single_sample_rollouts(integrator, tol):
    torch.manual_seed(1)
    x0 = torch.randn(4, 2, dtype=torch.float64)
    t = torch.sort(torch.rand(4, 6, dtype=torch.float64) * 2, dim=1).values
    t[2] = -t[2]  # a backward (decreasing) grid in the same batch
    together = integrator(HarmonicField(), x0, t)
    for i in range(4):
        alone = integrator(HarmonicField(), x0[i : i + 1], t[i : i + 1])
        torch.testing.assert_close(together[i : i + 1], alone, rtol=0, atol=tol)


def test_time_dependent_field_uses_per_sample_times():
    x0 = torch.zeros(3, 1, dtype=torch.float64)
    t = torch.tensor([[0.0, 0.1, 0.3], [1.0, 1.05, 1.1], [-0.5, -0.6, -0.8]], dtype=torch.float64)
    exact = x0[:, None] + torch.sin(t[:, 1:, None]) - torch.sin(t[:, :1, None])
    for integrator in (RK4(), TorchDiffEq("dopri5", rtol=1e-10, atol=1e-12)):
        torch.testing.assert_close(integrator(CosineField(), x0, t), exact, rtol=0, atol=1e-6)


def test_torchdiffeq_dopri5_matches_exact_solution_and_adjoint_gradients():
    torch.manual_seed(0)
    field = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    wrapped = _Autonomous(field).double()
    x0 = torch.randn(3, 2, dtype=torch.float64)
    t = uniform_grid(3, 4, 1.0)
    grads = []
    for adjoint in (False, True):
        wrapped.zero_grad()
        out = TorchDiffEq("dopri5", adjoint=adjoint, rtol=1e-10, atol=1e-12)(wrapped, x0, t)
        out.pow(2).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in wrapped.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)
    out = TorchDiffEq("dopri5", rtol=1e-10, atol=1e-12)(HarmonicField(), x0, t)
    torch.testing.assert_close(out, harmonic_exact(x0, t[:, 1:]), rtol=0, atol=1e-8)


@pytest.mark.parametrize("time_augmented", [False, True])
def test_torchdiffeq_adjoint_gradients_on_per_sample_non_uniform_grids(time_augmented):
    # odeint_adjoint re-evaluates the field in the backward pass: every interval must still see
    # its own t_k / dt_k there (a shared wrapper mutated per interval gave O(1) gradient errors)
    torch.manual_seed(0)
    field = ODENField(2, hidden=(16,), time_augmented=time_augmented).double()
    x0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor(
        [[0.0, 0.1, 0.5, 0.6, 1.5], [0.2, 0.3, 0.35, 0.9, 1.0], [0.0, -0.4, -0.5, -1.2, -1.3]],
        dtype=torch.float64,
    )
    outs, grads = [], []
    for adjoint in (False, True):
        field.zero_grad()
        x0_, t_ = x0.clone().requires_grad_(True), t.clone().requires_grad_(True)
        out = TorchDiffEq("dopri5", adjoint=adjoint, rtol=1e-12, atol=1e-12)(field, x0_, t_)
        out.pow(2).sum().backward()
        outs.append(out.detach())
        params = torch.cat([p.grad.flatten() for p in field.parameters()])
        grads.append((params, x0_.grad, t_.grad))
    assert torch.equal(outs[0], outs[1])  # the adjoint forward pass is the plain solve
    for direct, adjoint in zip(*grads, strict=True):
        assert adjoint is not None
        torch.testing.assert_close(adjoint, direct, rtol=1e-7, atol=1e-7)


class _Autonomous(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, t, x):
        return self.net(x)


def test_make_integrator_names_and_errors():
    assert isinstance(make_integrator("leapfrog"), Leapfrog)
    assert isinstance(make_integrator("RK4"), RK4)
    tde = make_integrator("torchdiffeq:bosh3", adjoint=True)
    assert isinstance(tde, TorchDiffEq) and tde.method == "bosh3" and tde.adjoint
    with pytest.raises(ValueError, match="unknown integrator 'rk5'"):
        make_integrator("rk5")
    with pytest.raises(ValueError, match="unknown torchdiffeq method 'nope'"):
        make_integrator("torchdiffeq:nope")


def test_bad_shapes_and_odd_leapfrog_state_are_rejected():
    with pytest.raises(ValueError, match=r"t must have shape \(B, S \+ 1\)"):
        RK4()(HarmonicField(), torch.zeros(2, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="state dimension 3 is odd"):
        Leapfrog()(HarmonicField(), torch.zeros(2, 3), torch.zeros(2, 4))


def test_integrators_use_only_what_a_vector_field_declares():
    """The fast paths come from VectorField's methods; a plain module's look-alike attributes
    are never called, and a VectorField's fused rollout is used as the scheme's rollout."""
    from pl_pac_trs.trs import RK4, VectorField

    class LookAlike(torch.nn.Module):  # not a VectorField: integrated by the step loop
        def forward(self, t, x):
            return -x

        def fused_rollout(self, *args):
            raise AssertionError("probed")

        def separable_parts(self, *args):
            raise AssertionError("probed")

    x0, t = torch.ones(2, 2), torch.linspace(0, 1, 4).expand(2, 4)
    for integrator in (Leapfrog(), RK4()):
        integrator(LookAlike(), x0, t)

    class Declared(VectorField):
        def forward(self, t, x):
            return -x

        def fused_rollout(self, scheme, x0, t, position_dim=None):
            return torch.full((x0.shape[0], t.shape[1] - 1, x0.shape[1]), 7.0)

    assert torch.equal(RK4()(Declared(), x0, t), torch.full((2, 3, 2), 7.0))
    assert torch.equal(Leapfrog()(Declared(), x0, t), torch.full((2, 3, 2), 7.0))
