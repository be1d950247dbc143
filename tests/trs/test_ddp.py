import json
from pathlib import Path

import pytest
import torch
from ddp_script import run_ddp_script
from ddp_trs import DATA

from pl_pac_trs.data import DuffingDataModule
from pl_pac_trs.metrics import energy_mse, trajectory_mse
from pl_pac_trs.trs import Leapfrog, ODENField

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.ddp
@pytest.mark.slow
def test_two_process_ddp_metrics_aggregate_over_all_test_trajectories(tmp_path):
    run_ddp_script(ROOT / "tests/trs/ddp_trs.py", tmp_path)
    result = json.loads((tmp_path / "result.json").read_text())
    field = ODENField(2, hidden=(1000,))  # the quick config's field
    field.load_state_dict(torch.load(tmp_path / "weights.pt"))
    dm = DuffingDataModule(**DATA)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["x0"].shape[0] == DATA["num_test"]  # all trajectories, on one process
    with torch.no_grad():
        pred = Leapfrog(position_dim=1)(field, batch["x0"], batch["t"])
    mean, std = trajectory_mse(pred, batch["y"])
    emean, _ = energy_mse(pred, batch["y"], dm.energy)
    half_mean, _ = trajectory_mse(pred[::2], batch["y"][::2])
    assert abs(float(half_mean) - float(mean)) > 1e-3 * float(mean)  # the halves differ...
    assert result["test/traj_mse"] == pytest.approx(float(mean), rel=1e-4)  # ...DDP used both
    assert result["test/traj_mse_std"] == pytest.approx(float(std), rel=1e-3)
    assert result["test/energy_mse"] == pytest.approx(float(emean), rel=1e-4)
    (run,) = tmp_path.glob("version_*")  # the run's directory, one for both ranks
    assert (run / "phase_portraits.png").is_file()
