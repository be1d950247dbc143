import torch
from quiet_trainer import quiet_trainer

from pl_pac_trs.trs import RK4, plots


class _Linear(torch.nn.Module):
    def __init__(self, rate):
        super().__init__()
        self.rate = rate

    def forward(self, t, x):
        return self.rate * x


def test_finite_time_lyapunov_of_linear_growth_is_the_rate():
    x0 = torch.tensor([[0.0, 0.0, 1.0], [0.5, -1.0, 2.0]], dtype=torch.float64)
    t = torch.linspace(0, 4, 81, dtype=torch.float64).expand(2, 81)
    curve = plots.finite_time_lyapunov(lambda x, tt: RK4()(_Linear(0.7), x, tt), x0, t)
    assert curve.shape == (2, 80)
    torch.testing.assert_close(curve, torch.full_like(curve, 0.7), rtol=0, atol=1e-6)
    shrink = plots.finite_time_lyapunov(lambda x, tt: RK4()(_Linear(-0.3), x, tt), x0, t)
    torch.testing.assert_close(shrink, torch.full_like(shrink, -0.3), rtol=0, atol=1e-6)


def test_plots_write_pngs(tmp_path):
    true = torch.randn(2, 10, 4)
    pairs = plots.coordinate_pairs(4, bodies={"body1": [0, 2], "body2": [1, 3]})
    assert pairs == [("body1", 0, 2), ("body2", 1, 3)]
    assert plots.coordinate_pairs(2, position_dim=1) == [("(q1, p1)", 0, 1)]
    assert [p[1:] for p in plots.coordinate_pairs(3)] == [(0, 1), (1, 2)]
    paths = [
        plots.plot_phase_portraits(true, true + 0.1, tmp_path / "a.png", pairs),
        plots.plot_energy(
            torch.arange(10.0).expand(2, 10), true[..., 0], true[..., 1], tmp_path / "b.png"
        ),
        plots.plot_lyapunov(
            torch.arange(10.0).expand(2, 10), {"m": true[..., 0]}, tmp_path / "c.png"
        ),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_test_time_lyapunov_uses_every_test_trajectory_and_the_true_field(tmp_path):

    from pl_pac_trs.data import StrangeAttractorDataModule
    from pl_pac_trs.trs import TRSODEN, ODENField, TrajectoryPlots, reference_rollout

    small = dict(num_train=3, train_steps=20, train_span=1.0, num_val=0)
    dm = StrangeAttractorDataModule(num_test=5, test_steps=40, test_span=2.0, **small)
    model = TRSODEN(ODENField(3, hidden=(8,)), integrator="rk4")
    callback = TrajectoryPlots(num_plot=2, lyapunov=True)
    trainer = quiet_trainer(tmp_path, 1, callbacks=[callback])
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    assert set(callback.lyapunov_curves) == {"model", "true"}
    assert callback.paths == {  # the attractor has no energy: no energy figure
        "test/phase_portraits": tmp_path / "phase_portraits.png",
        "test/lyapunov": tmp_path / "lyapunov.png",
    }
    batch = next(iter(dm.test_dataloader()))
    assert batch["x0"].shape[0] == 5  # averaged over all 5, not the 2 plotted
    x0, t = batch["x0"].double(), batch["t"].double()
    true = plots.finite_time_lyapunov(lambda x, tt: reference_rollout(dm.true_field, x, tt), x0, t)
    torch.testing.assert_close(callback.lyapunov_curves["true"], true.mean(0).float())
    with torch.no_grad():
        own = plots.finite_time_lyapunov(model.rollout, batch["x0"], batch["t"])
    torch.testing.assert_close(callback.lyapunov_curves["model"], own.mean(0))
    # the reference solution: 8 RK4 substeps per interval match a 4x finer grid closely
    finer = reference_rollout(dm.true_field, x0, t, substeps=32)
    torch.testing.assert_close(reference_rollout(dm.true_field, x0, t), finer, rtol=0, atol=1e-6)


def test_plots_callback_validates_and_writes_where_told(tmp_path):
    import lightning.pytorch as pl
    import pytest
    from tiny_data import TinyHarmonicDataModule

    from pl_pac_trs.trs import TRSODEN, ODENField, TrajectoryPlots

    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="num_plot must be an int >= 0"):
            TrajectoryPlots(num_plot=bad)
    callback = TrajectoryPlots(num_plot=1, dirpath=tmp_path / "figures")
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, callbacks=[callback])
    trainer.test(TRSODEN(ODENField(2, hidden=(4,))), datamodule=TinyHarmonicDataModule())
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "energy.png",
        "phase_portraits.png",
    ]
