"""From a wheel alone: build it, install it into a fresh virtual environment (no checkout on the
path) and run the PAC pipeline, the demo and a shipped config by name from an empty directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: Noise a user must not see (the checkpoint loader's ``weights_only`` FutureWarning, Lightning's
#: advertising, third-party deprecations) and signs of a crash.
UNWANTED = ("weights_only", "💡", "anonymous setting", "LeafSpec", "Traceback")


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> dict[str, Path]:
    """A venv with only the wheel installed; the dependencies come from this interpreter's
    site-packages through a plain path entry (so this checkout's editable install is not seen)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    skip = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info", ".*cache")
    shutil.copytree(ROOT, src, ignore=skip)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(tmp / "dist"), str(src)], check=True, timeout=600)
    (wheel,) = (tmp / "dist").glob("pl_pac_trs-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    subprocess.run([*install, "--no-deps", str(wheel)], check=True, timeout=600)
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp / "empty"
    work.mkdir()
    return {"wheel": wheel, "python": python, "bin": venv / "bin", "work": work}


def run(env: dict[str, Path], args: list[str], timeout: float = 600):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "PYTHON"))}
    clean.update(HOME=str(env["work"]), WANDB_MODE="offline", PYTHONNOUSERSITE="1")
    return subprocess.run(
        args, cwd=env["work"], env=clean, capture_output=True, text=True, timeout=timeout
    )


def test_wheel_holds_the_configs_and_no_checkout_is_used(wheel_env):
    with zipfile.ZipFile(wheel_env["wheel"]) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "pl-pac-trs = pl_pac_trs.apps.cli:main" in archive.read(entry_points).decode()
    assert not any(n.startswith(("tests/", "configs/", "notebooks/", "benchmarks/")) for n in names)
    assert "pl_pac_trs/configs/sweeps/pac_friedman.yml" in names  # the W&B sweeps too
    assert "pl_pac_trs/py.typed" in names  # PEP 561: a user's type checker reads our hints
    shipped = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml"))
    assert sorted(n.removeprefix("pl_pac_trs/") for n in names if n.endswith(".yaml")) == shipped
    out = run(
        wheel_env, [wheel_env["python"], "-c", "import pl_pac_trs; print(pl_pac_trs.__file__)"]
    )
    assert out.returncode == 0, out.stderr
    assert str(ROOT) not in out.stdout and "site-packages" in out.stdout


def test_configs_by_name_from_an_empty_directory(wheel_env):
    cli = str(wheel_env["bin"] / "pl-pac-trs")
    listed = run(wheel_env, [cli, "configs"])
    assert listed.returncode == 0, listed.stderr
    assert "trs/exp1/quick/trs_oden" in listed.stdout.split()
    assert "pac/duffing/source" in listed.stdout.split()
    fit = [cli, "fit", "--config", "trs/exp1/quick/trs_oden", "--trainer.max_epochs=2"]
    out = run(wheel_env, [*fit, "--trainer.enable_progress_bar=false"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert not [u for u in UNWANTED if u in out.stdout + out.stderr]
    run_dir = wheel_env["work"] / "runs" / "trs" / "exp1" / "quick" / "trs_oden" / "version_0"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_pac_pipeline_and_demo_from_an_empty_directory(wheel_env):
    cli = str(wheel_env["bin"] / "pl-pac-trs")
    pac = [cli, "pac", "friedman", "--epochs-scale", "0.05", "--baselines", "finetune"]
    out = run(wheel_env, pac)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not [u for u in UNWANTED if u in out.stdout + out.stderr], out.stdout + out.stderr
    summary = wheel_env["work"] / "runs" / "pac" / "friedman" / "summary.json"
    assert summary.is_file()
    demo = [wheel_env["python"], "-m", "pl_pac_trs.demo", "--trs-epochs", "2"]
    out = run(wheel_env, [*demo, "--pac-epochs-scale", "0.05", "--out", "demo"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert not [u for u in UNWANTED if u in out.stdout + out.stderr], out.stdout + out.stderr
    assert "TRS-ODEN demo" in out.stdout
    assert (wheel_env["work"] / "demo" / "pac").is_dir()
