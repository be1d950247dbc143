import pytest
import torch
from fields_zoo import HarmonicField

from pl_pac_trs.trs import RK4, HODENField, Leapfrog, ODENField, Reversal, trs_loss
from pl_pac_trs.trs.loss import paired_rollout, trs_terms


def _batch(b=6, s=5, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, d, generator=g)
    start = torch.rand(b, 1, generator=g) * 3
    t = start + torch.cumsum(0.05 + 0.1 * torch.rand(b, s + 1, generator=g), dim=1)
    y = torch.randn(b, s, d, generator=g)
    return x0, t, y


@pytest.mark.parametrize(
    ("make_field", "integrator", "time_weighted"),
    [
        (lambda: ODENField(2, hidden=(32,)), Leapfrog(), False),
        (lambda: ODENField(2, hidden=(32,), time_augmented=True), RK4(), True),
        (lambda: HODENField(2, hidden=(16,)), Leapfrog(), False),
    ],
)
def test_batched_rollout_equals_two_calls_loss_and_gradients(make_field, integrator, time_weighted):
    torch.manual_seed(0)
    field = make_field().double()
    x0, t, y = (v.double() for v in _batch())
    R = Reversal.momentum_flip(2, 1).double()
    results = []
    for batched in (True, False):
        field.zero_grad()
        out = trs_loss(
            field,
            integrator,
            x0,
            t,
            y,
            R,
            trs_weight=10.0,
            time_weighted=time_weighted,
            batched=batched,
        )
        out.total.backward()
        grads = [p.grad.clone() for p in field.parameters()]
        results.append((out, grads))
    (a, ga), (b, gb) = results
    assert float(a.trs.detach()) > 0
    torch.testing.assert_close(a.total, b.total, rtol=1e-12, atol=0)
    torch.testing.assert_close(a.ode, b.ode, rtol=1e-12, atol=0)
    torch.testing.assert_close(a.trs, b.trs, rtol=1e-12, atol=0)
    for x, z in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, z, rtol=1e-10, atol=1e-14)


def test_batched_rollout_is_the_forward_and_backward_rollouts():
    x0, t, _ = _batch()
    R = Reversal.momentum_flip(2, 1)
    fwd, bwd = paired_rollout(HarmonicField(), Leapfrog(), x0, t, R)
    assert torch.equal(fwd, Leapfrog()(HarmonicField(), x0, t))
    assert torch.equal(bwd, Leapfrog()(HarmonicField(), R(x0), -t))


def test_loss_values_by_hand():
    x0, t, y = _batch(b=3, s=4)
    R = Reversal.momentum_flip(2, 1)
    field = ODENField(2, hidden=(8,))
    out = trs_loss(field, RK4(), x0, t, y, R, trs_weight=0.5, time_weighted=True)
    X, Xr = RK4()(field, x0, t), RK4()(field, R(x0), -t)
    ode = ((X - y) ** 2).mean()
    w = t[:, 1:] / t[:, 1:].max()
    trs = (((R(X) - Xr) ** 2) * w[..., None]).mean()
    torch.testing.assert_close(out.ode, ode)
    torch.testing.assert_close(out.trs, trs)
    torch.testing.assert_close(out.total, ode + 0.5 * trs)
    unweighted = trs_terms(X, Xr, R)
    torch.testing.assert_close(unweighted, ((R(X) - Xr) ** 2).mean())
    assert not torch.allclose(unweighted, trs)


def test_zero_trs_weight_is_the_ode_loss_without_backward_rollout():
    x0, t, y = _batch()
    field = ODENField(2, hidden=(8,))
    out = trs_loss(field, Leapfrog(), x0, t, y, None, trs_weight=0.0)
    assert out.trs is None
    assert torch.equal(out.total, out.ode)
    assert torch.equal(out.ode, ((Leapfrog()(field, x0, t) - y) ** 2).mean())
    with pytest.raises(ValueError, match="needs a reversal"):
        trs_loss(field, Leapfrog(), x0, t, y, None, trs_weight=1.0)
