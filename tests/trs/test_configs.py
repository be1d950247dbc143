from pathlib import Path

import pytest
import torch

from pl_pac_trs.apps.cli import PacTrsCLI
from pl_pac_trs.trs import (
    TRSODEN,
    HODENField,
    KerasAdam,
    ODENField,
    Reversal,
    RolloutWriter,
    TrajectoryPlots,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "trs").rglob("*.yaml"))
LAMBDA = {"exp1": 10.0, "exp2": 10.0, "exp3": 0.5, "exp4": 0.5, "exp5": 0.5, "exp6": 10.0}


def test_every_experiment_and_condition_has_a_full_and_a_quick_config():
    names = {str(p.relative_to(ROOT / "configs" / "trs")) for p in CONFIGS}
    for exp in LAMBDA:
        conditions = ["oden", "trs_oden"] + ([] if exp == "exp6" else ["hoden"])
        conditions += ["trs_hoden"] if exp == "exp2" else []
        for c in conditions:
            assert f"{exp}/{c}.yaml" in names and f"{exp}/quick/{c}.yaml" in names
    assert len(names) == 2 * (3 * 4 + 4 + 2)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_builds_the_reference_condition(path):
    cli = PacTrsCLI(args=["--config", str(path), "--trainer.logger=false"], run=False)
    model, exp, condition = (
        cli.model,
        path.parts[-2 if path.parent.name != "quick" else -3],
        path.stem,
    )
    assert isinstance(model, TRSODEN)
    assert model.trs_weight == (LAMBDA[exp] if condition.startswith("trs_") else 0.0)
    (plots,) = [c for c in cli.trainer.callbacks if isinstance(c, TrajectoryPlots)]
    assert (plots.num_plot, plots.lyapunov) == (3, exp == "exp6")
    field_type = HODENField if condition.endswith("hoden") else ODENField
    assert type(model.vector_field) is field_type
    assert model.time_weighted == (exp == "exp4" and condition == "trs_oden")
    quick = path.parent.name == "quick"
    assert cli.trainer.max_epochs == (5000 if not quick else (10 if exp == "exp6" else 100))
    assert model.integrator.name == ("rk4" if exp in ("exp3", "exp6") else "leapfrog")
    # exp V trains with the reference's legacy Keras Adam: torch's Adam (eps 1e-8) left the
    # HODEN there 2x off the reference code from the same initial weights (trs/optim.py)
    optimizer = model.configure_optimizers()
    assert type(optimizer) is (KerasAdam if exp == "exp5" else torch.optim.Adam)
    assert optimizer.defaults["lr"] == (3e-3 if quick else 2e-4)
    assert any(isinstance(c, RolloutWriter) for c in cli.trainer.callbacks)
    if exp == "exp6":
        assert isinstance(model.reversal, Reversal)
        assert model.reversal.signs.tolist() == [-1.0, -1.0, -1.0]
    # exp III (forced) fields are time-augmented, ODEN and HODEN alike (reference code)
    assert model.vector_field.time_augmented == (exp == "exp3")
    # every config states its initialisation, and the reproduction uses the reference code's
    text = path.read_text()
    assert "init: reference" in text
    assert model.vector_field.init == "reference"
    first = next(m for m in model.vector_field.modules() if isinstance(m, torch.nn.Linear))
    assert first.bias is not None and not first.bias.detach().any()


def test_committed_configs_equal_the_generator_output(tmp_path, monkeypatch):
    """configs/trs/**/*.yaml are byte for byte what configs/trs/make_configs.py writes (no hand
    edits, no drift, no stale file)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_configs", ROOT / "configs/trs/make_configs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", tmp_path)
    module.main()
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.yaml"))
    committed = sorted(p.relative_to(ROOT / "configs" / "trs") for p in CONFIGS)
    assert generated == committed
    for rel in generated:
        assert (tmp_path / rel).read_bytes() == (ROOT / "configs" / "trs" / rel).read_bytes(), rel


@pytest.mark.slow
def test_quick_trs_hoden_config_fits_and_tests(tmp_path):
    from pl_pac_trs.apps.experiment import run_config

    run = run_config(
        [ROOT / "configs/trs/exp2/quick/trs_hoden.yaml"],
        [
            "--trainer.logger=false",
            "--trainer.max_epochs=2",
            "--trainer.check_val_every_n_epoch=1",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={tmp_path}",
            "--data.num_train=4",
            "--data.num_val=2",
            "--data.num_test=4",
            "--data.test_steps=20",
            "--data.test_span=2.0",
        ],
    )
    assert {"train/loss", "train/trs", "val/loss"} <= set(run.fit_metrics)
    assert {"test/traj_mse", "test/traj_mse_std", "test/energy_mse"} <= set(run.test_metrics)
    assert (run.run_dir / "phase_portraits.png").is_file()
