"""W&B mode selection and run directories."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger

from pl_pac_trs import runs

ROOT = runs.Path(__file__).resolve().parents[1]


@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_SILENT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path


def test_without_credentials_runs_go_offline_and_silent(no_wandb_env):
    assert runs.ensure_wandb_mode() == "offline"
    assert runs.os.environ["WANDB_MODE"] == "offline"  # inherited by DDP workers
    assert runs.os.environ["WANDB_SILENT"] == "true"


def test_api_key_keeps_online(no_wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert runs.ensure_wandb_mode() == "online"
    assert "WANDB_MODE" not in runs.os.environ


def test_netrc_login_keeps_online_for_its_host(no_wandb_env, monkeypatch):
    (no_wandb_env / "netrc").write_text("machine wandb.example.org\n  login user\n  password k\n")
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert runs.ensure_wandb_mode() == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://api.wandb.ai")
    assert runs.ensure_wandb_mode() == "offline"


def test_explicit_mode_is_respected(no_wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert runs.ensure_wandb_mode() == "disabled"


def test_run_dir_without_wandb_is_the_log_dir(tmp_path):
    trainer = Trainer(logger=CSVLogger(tmp_path, name="x"), default_root_dir=tmp_path)
    assert runs.run_dir(trainer) == runs.Path(trainer.log_dir)
    assert runs.run_dir(trainer).is_dir()
    assert runs.find_wandb_logger(trainer) is None
    assert runs.wandb_run_summary(trainer) is None


@pytest.mark.slow
def test_wheel_is_complete(tmp_path):
    """`pip wheel .` builds a wheel whose own files import and provide the console script."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
         str(tmp_path / "dist"), str(ROOT)],
        check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("pl_pac_trs-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "pl-pac-trs = pl_pac_trs.cli:main" in archive.read(entry_points).decode()
    assert not any(n.startswith(("tests/", "configs/", "notebooks/")) for n in names)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
        check=True, timeout=300,
    )  # fmt: skip
    code = "import pl_pac_trs, pl_pac_trs.cli; print(pl_pac_trs.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(target))
