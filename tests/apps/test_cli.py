"""The ``pl-pac-trs`` command line: help, every shipped config, offline W&B, DDP, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_run import ASSETS, ROOT, clean_env, run_cli
from wandb_records import read_run

from pl_pac_trs.apps.cli import main

TINY = ASSETS / "tiny.yaml"
SHIPPED_CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def test_help_from_console_script_and_module(tmp_path):
    script = Path(sys.executable).with_name("pl-pac-trs")
    for cmd in ([str(script), "--help"], [sys.executable, "-m", "pl_pac_trs", "--help"]):
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, env=clean_env(tmp_path)
        )
        assert out.returncode == 0, out.stderr
        for word in ("fit", "validate", "test", "predict", "pl-pac-trs pac --help"):
            assert word in out.stdout


def test_configs_are_shipped():
    assert SHIPPED_CONFIGS, "configs/ holds no YAML"


@pytest.mark.parametrize("config", SHIPPED_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_print_config_parses_every_shipped_config(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["model"]["class_path"]
    assert resolved["data"]["class_path"]


def test_print_config_accepts_repeated_configs(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ASSETS))
    override = tmp_path / "override.yaml"
    override.write_text("trainer:\n  max_epochs: 7\nmodel:\n  init_args:\n    lr: 0.5\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(TINY), "--config", str(override), "--print_config"])
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["trainer"]["max_epochs"] == 7
    assert resolved["model"]["init_args"]["lr"] == 0.5
    assert resolved["model"]["class_path"] == "tiny_user_module.TinyRegressor"


@pytest.mark.slow
def test_offline_wandb_run_writes_run_dir_config_and_metrics(tmp_path):
    out = run_cli(["fit", "--config", str(TINY)], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_path,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    # said once where the run went and how to sync it
    assert out.stdout.count("wandb sync") == 1
    assert f"wandb sync runs/wandb/{run_path.name}" in out.stdout
    # resolved config saved in the run directory and as the W&B run config
    saved = yaml.safe_load((run_path / "files" / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "tiny_user_module.TinyRegressor"
    assert saved["trainer"]["max_epochs"] == 2
    run = read_run(run_path)
    assert run["config"]["model"]["class_path"] == "tiny_user_module.TinyRegressor"
    val_losses = [row["val/loss"] for row in run["history"] if "val/loss" in row]
    assert len(val_losses) == 2  # one per epoch
    assert val_losses[1] < val_losses[0]


@pytest.mark.slow
def test_shipped_config_runs_offline_fit_then_test_with_plots(tmp_path):
    """A shipped config end to end with no network: W&B offline, plots in the run directory."""
    config = ROOT / "configs" / "trs" / "exp1" / "quick" / "trs_oden.yaml"
    common = ["--config", str(config), "--trainer.max_epochs=2", "--data.init_args.num_test=4"]
    common += ["--trainer.check_val_every_n_epoch=1"]  # checkpoints are written after validation
    out = run_cli(["fit", *common], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("wandb sync") == 1
    (fit_run,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    assert (fit_run / "files" / "config.yaml").is_file()
    (ckpt,) = (tmp_path / "runs").rglob("*.ckpt")
    out = run_cli(["test", *common, f"--ckpt_path={ckpt}"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    test_run = next(p for p in (tmp_path / "runs" / "wandb").glob("offline-run-*") if p != fit_run)
    for name in ("phase_portraits.png", "energy.png"):
        assert (test_run / "files" / name).stat().st_size > 1000
    history = read_run(test_run)["history"]
    assert any("test/traj_mse" in row for row in history)


@pytest.mark.slow
@pytest.mark.ddp
def test_two_process_ddp_on_cpu_logs_once(tmp_path):
    args = ["fit", "--config", str(TINY), "--trainer.accelerator=cpu", "--trainer.devices=2"]
    out = run_cli([*args, "--trainer.strategy=ddp"], cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    assert out.stdout.count("wandb sync") == 1
    # the worker rank used the launching process's run directory instead of making its own
    assert [p.name for p in tmp_path.glob("version_*")] == ["version_0"]
    history = read_run(runs[0])["history"]
    # 64 samples, batch 16, 2 ranks: 2 steps per epoch per rank, logged once per epoch by rank 0
    assert [row["trainer/global_step"] for row in history if "val/loss" in row] == [1, 3]


@pytest.mark.slow
@pytest.mark.ddp
def test_two_process_ddp_without_wandb_saves_config_once(tmp_path):
    """Config saving on rank zero alone must not wait on a collective (no hang)."""
    args = ["fit", "--config", str(TINY), "--trainer.accelerator=cpu", "--trainer.devices=2"]
    args += [
        "--trainer.strategy=ddp",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    out = run_cli(args, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = tmp_path.glob("version_*")  # one run directory for both ranks
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert str(saved["trainer"]["devices"]) == "2"
    assert "wandb sync" not in out.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--trainer.max_epohcs=3"], "--trainer.max_epohcs"),
        (["--trainer.max_epochs=abc"], "trainer.max_epochs"),
        (["--model.init_args.learning_rate=1"], "learning_rate"),
        (["--config", "no/such/file.yaml"], "no/such/file.yaml"),
    ],
    ids=["unknown-key", "wrong-type", "unknown-init-arg", "missing-config-file"],
)
def test_bad_input_exits_nonzero_naming_the_culprit(args, expected, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ASSETS))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(TINY), *args, "--trainer.logger=false"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err
    assert len(err.splitlines()) < 15  # a message, not a usage wall


def test_validation_error_at_instantiation_is_one_clear_line(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ASSETS))
    code = main(["fit", "--config", str(TINY), "--model.init_args.lr=-1", "--trainer.logger=false"])
    assert code == 2
    err = capsys.readouterr().err
    assert "lr must be > 0, got -1.0" in err
    assert "Traceback" not in err


def test_fit_refuses_a_checkpoint_trained_with_other_model_arguments(tmp_path):
    """LightningCLI would rebuild the model from the checkpoint's hyper-parameters and silently
    train that one (a 5-class head on 3-class data): a ``fit`` whose config sets a model argument
    otherwise exits 2 naming the file and the argument, before a run directory exists; the same
    arguments resume, and so does '--ckpt_path=last' (the run's own model) whatever the config."""
    common = ["--config", str(TINY), "--trainer.logger=false", "--trainer.max_epochs=1"]
    common.append("--checkpoint.save_last=true")
    out = run_cli(["fit", *common, "--trainer.default_root_dir=first"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    (ckpt,) = (p for p in (tmp_path / "first").rglob("*.ckpt") if p.name != "last.ckpt")
    wrong = [*common, "--trainer.default_root_dir=second", f"--ckpt_path={ckpt}"]
    out = run_cli(["fit", *wrong, "--model.init_args.in_features=3"], cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    message = out.stderr.strip().splitlines()
    assert len(message) <= 3
    assert "in_features=4" in out.stderr and str(ckpt.name) in out.stderr
    assert not (tmp_path / "second").exists()
    out = run_cli(["fit", *wrong, "--trainer.max_epochs=2"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    last = [*common, "--trainer.default_root_dir=first", "--ckpt_path=last"]
    out = run_cli(
        ["fit", *last, "--model.init_args.lr=0.1", "--trainer.max_epochs=2"], cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]


def test_evaluating_a_checkpoint_uses_the_config_of_the_run_that_wrote_it(tmp_path):
    from pl_pac_trs.apps.cli import config_of_run

    run = tmp_path / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"no config\.yaml of the run that wrote it.*--config"):
        config_of_run(["test", "--ckpt_path", str(ckpt)])
    (run / "config.yaml").write_text("seed_everything: 0\n")
    for command in ("validate", "test", "predict"):
        assert config_of_run([command, f"--ckpt_path={ckpt}", "--trainer.devices=1"]) == [
            command, "--config", str(run / "config.yaml"), f"--ckpt_path={ckpt}",
            "--trainer.devices=1",
        ]  # fmt: skip
    unchanged = [
        ["fit", "--ckpt_path", str(ckpt)],
        ["test", "--config", "my.yaml", "--ckpt_path", str(ckpt)],
        ["test", "--model", "TRSODEN", "--ckpt_path", str(ckpt)],
        ["test", "--ckpt_path", "last"],
        ["test"],
    ]
    for args in unchanged:
        assert config_of_run(args) == args
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        config_of_run(["test", "--ckpt_path", str(tmp_path / "nope.ckpt")])
    # a PAC pipeline stage checkpoint: the resolved stage config beside it
    stage = tmp_path / "out" / "calibrate.ckpt"
    stage.parent.mkdir()
    stage.write_bytes(b"x")
    (stage.parent / "config_calibrate.yaml").write_text("seed_everything: 0\n")
    assert config_of_run(["test", "--ckpt_path", str(stage)])[1:3] == [
        "--config", str(stage.parent / "config_calibrate.yaml"),
    ]  # fmt: skip
