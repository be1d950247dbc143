"""W&B mode selection and run directories."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

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
    monkeypatch.setattr(runs, "wandb_reachable", lambda: True)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert runs.ensure_wandb_mode() == "online"
    assert "WANDB_MODE" not in runs.os.environ


def test_netrc_login_keeps_online_for_its_host(no_wandb_env, monkeypatch):
    monkeypatch.setattr(runs, "wandb_reachable", lambda: True)
    (no_wandb_env / "netrc").write_text("machine wandb.example.org\n  login user\n  password k\n")
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert runs.ensure_wandb_mode() == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://api.wandb.ai")
    assert runs.ensure_wandb_mode() == "offline"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_with_credentials_goes_offline_fast_and_says_so_once(
    no_wandb_env, monkeypatch, capsys
):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    started = time.perf_counter()
    assert runs.ensure_wandb_mode() == "offline"
    assert runs.ensure_wandb_mode() == "offline"  # decided once: WANDB_MODE is now set
    assert time.perf_counter() - started < 5
    assert os.environ["WANDB_MODE"] == "offline"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "WANDB_MODE=offline" in err[0] and "wandb sync" in err[0] and "127.0.0.1" in err[0]


def test_reachable_server_with_credentials_stays_online(no_wandb_env, monkeypatch, capsys):
    handler = type(
        "Health", (BaseHTTPRequestHandler,), {"do_GET": _answer_404, "log_message": _quiet}
    )
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
        assert runs.ensure_wandb_mode() == "online"
    finally:
        thread.join(5)
        server.server_close()
    assert "WANDB_MODE" not in os.environ
    assert capsys.readouterr().err == ""


def _answer_404(handler) -> None:
    handler.send_response(404)  # any answer below 500: the server is there
    handler.end_headers()


def _quiet(*args) -> None:
    pass


def test_probe_gives_up_within_its_timeout(monkeypatch):
    """A lookup or server that never answers costs the probe's timeout, not minutes."""

    def stalled(*args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(runs.urllib.request, "urlopen", stalled)
    started = time.perf_counter()
    assert runs.wandb_reachable(timeout=1.0) is False
    assert time.perf_counter() - started < 2.5


@pytest.mark.slow
def test_fit_with_api_key_and_no_server_completes_offline(tmp_path):
    """The whole CLI run: a fake key, a closed port; offline within seconds, said once."""
    assets = Path(__file__).parent / "cli_assets"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    env.update(
        HOME=str(tmp_path),
        PYTHONPATH=os.pathsep.join((str(ROOT), str(assets))),  # this tree, not an installed one
        WANDB_API_KEY="x" * 40,
        WANDB_BASE_URL=f"http://127.0.0.1:{_closed_port()}",
    )
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "pl_pac_trs", "fit", "--config", str(assets / "tiny.yaml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert time.perf_counter() - started < 90
    assert out.stderr.count("WANDB_MODE=offline") == 1
    assert list((tmp_path / "runs" / "wandb").glob("offline-run-*"))


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
