"""W&B mode selection and run directories."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from pl_pac_trs.apps import runs

ROOT = runs.Path(__file__).resolve().parents[2]


KEY = "k" * 40  # the shape of a W&B API key (40+ word characters)


@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    """No W&B mode, key, server or settings from the machine: a private netrc and config dir."""
    for key in (
        "WANDB_MODE",
        "WANDB_API_KEY",
        "WANDB_IDENTITY_TOKEN_FILE",
        "WANDB_BASE_URL",
        "WANDB_SILENT",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
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
    netrc = f"machine wandb.example.org\n  login user\n  password {KEY}\n"
    (no_wandb_env / "netrc").write_text(netrc)
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert runs.ensure_wandb_mode() == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://api.wandb.ai")
    assert runs.ensure_wandb_mode() == "offline"


def test_wandb_login_netrc_is_detected(no_wandb_env, monkeypatch):
    """The entry `wandb login` writes today (wandb's own writer, for wandb's default server) is
    found; the old parser looked for `api.wandb.ai` only and ran such a user offline."""
    from wandb.sdk.lib import urls, wbauth

    assert runs.wandb_credentials() is None
    wbauth.write_netrc_auth(host=urls.DEFAULT_BASE_URL, api_key=KEY)  # what `wandb login` calls
    text = (no_wandb_env / "netrc").read_text()
    assert f"password {KEY}" in text
    assert "machine api.wandb.ai" not in text  # another host than the one the old check read
    assert runs.wandb_base_url() == urls.DEFAULT_BASE_URL
    assert runs.wandb_credentials() == "netrc"
    monkeypatch.setattr(runs, "wandb_reachable", lambda: True)
    assert runs.ensure_wandb_mode() == "online"
    assert "WANDB_MODE" not in os.environ


def test_netrc_in_home_as_wandb_login_writes_it(no_wandb_env, monkeypatch):
    """No NETRC variable: ~/.netrc, with the lines wandb 0.31 writes for its default server."""
    monkeypatch.delenv("NETRC")
    monkeypatch.setenv("HOME", str(no_wandb_env))
    assert runs.wandb_has_credentials() is False
    (no_wandb_env / ".netrc").write_text(
        f"machine api.forge.coreweave.com\n  login user\n  password {KEY}\n"
    )
    assert runs.wandb_has_credentials() is True
    # an entry from an older `wandb login` (api.wandb.ai) serves the same cloud
    (no_wandb_env / ".netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {KEY}\n")
    assert runs.wandb_credentials() == "netrc"


def test_api_key_is_detected_and_nothing_is_not(no_wandb_env, monkeypatch):
    (no_wandb_env / "netrc").write_text(f"machine other.example.org\n  login u\n  password {KEY}\n")
    assert runs.wandb_credentials() is None
    assert runs.wandb_has_credentials() is False
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert runs.wandb_credentials() == "WANDB_API_KEY"


def test_wandb_login_host_is_read_from_wandb_settings(no_wandb_env, monkeypatch):
    """`wandb login --host URL` keeps the server in wandb's settings file, the key in netrc."""
    settings = no_wandb_env / "wandb_config" / "settings"
    settings.parent.mkdir()
    settings.write_text("[default]\nbase_url = https://wandb.example.org/\n")
    (no_wandb_env / "netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {KEY}\n")
    assert runs.wandb_base_url() == "https://wandb.example.org"
    assert runs.wandb_credentials() is None  # a key for another server does not count
    (no_wandb_env / "netrc").write_text(
        f"machine wandb.example.org\n  login user\n  password {KEY}\n"
    )
    assert runs.wandb_credentials() == "netrc"
    monkeypatch.setenv("WANDB_BASE_URL", "https://api.wandb.ai")  # the variable wins
    assert runs.wandb_credentials() is None


def test_wandb_offline_setting_is_respected(no_wandb_env, monkeypatch):
    settings = no_wandb_env / "wandb_config" / "settings"
    settings.parent.mkdir()
    settings.write_text("[default]\nmode = offline\n")
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setattr(runs, "wandb_reachable", lambda: pytest.fail("probed"))
    assert runs.ensure_wandb_mode() == "offline"


def test_netrc_fallback_without_wandbs_credential_module(no_wandb_env, monkeypatch):
    """Should wandb move its credential module, the netrc file is read here, for the same hosts."""
    monkeypatch.setitem(sys.modules, "wandb.sdk.lib.wbauth", None)  # import fails
    assert runs.wandb_credentials() is None
    (no_wandb_env / "netrc").write_text(
        f"machine api.forge.coreweave.com\n  login user\n  password {KEY}\n"
    )
    assert runs.wandb_credentials() == "netrc"
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert runs.wandb_credentials() is None


def test_detection_leaves_wandbs_settings_unloaded(tmp_path):
    """wandb freezes its settings when first loaded: had the detection loaded them, the
    WANDB_MODE=offline it sets afterwards would be ignored and wandb.init would ask for a login.
    A fresh process, no credentials, no terminal: the run must come out offline."""
    code = (
        "from pl_pac_trs.apps import runs\n"
        "assert runs.ensure_wandb_mode() == 'offline'\n"
        "from wandb.sdk import wandb_setup\n"
        "s = wandb_setup._singleton\n"
        "assert s is None or s.settings_if_loaded is None, 'wandb settings were loaded'\n"
        "import wandb\n"
        f"run = wandb.init(project='p', dir={str(tmp_path)!r})\n"
        "print('mode', run.settings.mode)\n"
        "run.finish()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT), WANDB_CONFIG_DIR=str(tmp_path / "cfg"))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mode offline" in out.stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_with_credentials_goes_offline_and_says_so_once(
    no_wandb_env, monkeypatch, capsys
):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    assert runs.ensure_wandb_mode() == "offline"
    assert runs.ensure_wandb_mode() == "offline"  # decided once: WANDB_MODE is now set
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
    """A lookup or server that never answers costs the probe's timeout, not the lookup's."""
    release, returned = threading.Event(), threading.Event()

    def stalled(*args, **kwargs):
        release.wait()  # until the probe has given up: it must not wait for this call
        returned.set()
        raise OSError("the stalled lookup ends")

    monkeypatch.setattr(runs.urllib.request, "urlopen", stalled)
    try:
        assert runs.wandb_reachable(timeout=0.2) is False
        assert not returned.is_set()  # it gave up while the lookup still hung
    finally:
        release.set()  # the probe's thread ends with the test, not in a later one
    assert returned.wait(30)


@pytest.mark.slow
def test_fit_with_api_key_and_no_server_completes_offline(tmp_path):
    """The whole CLI run: a fake key, a closed port: the fit completes offline, said once."""
    assets = Path(__file__).parent / "cli_assets"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    env.update(
        HOME=str(tmp_path),
        PYTHONPATH=os.pathsep.join((str(ROOT), str(assets))),  # this tree, not an installed one
        WANDB_API_KEY="x" * 40,
        WANDB_BASE_URL=f"http://127.0.0.1:{_closed_port()}",
    )
    out = subprocess.run(
        [sys.executable, "-m", "pl_pac_trs", "fit", "--config", str(assets / "tiny.yaml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
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


def test_run_dir_with_wandb_disabled_is_the_runs_own_root(tmp_path):
    """WANDB_MODE=disabled hands every run one shared temporary ``files`` directory: outputs go
    to the trainer's ``default_root_dir`` instead, and no W&B note is printed."""
    roots = [tmp_path / "a", tmp_path / "b"]
    dirs = []
    for root in roots:  # mode as WANDB_MODE=disabled sets it (wandb's settings may be loaded)
        logger = WandbLogger(project="p", save_dir=str(tmp_path / "wandb"), mode="disabled")
        trainer = Trainer(logger=logger, default_root_dir=root)
        dirs.append(runs.run_dir(trainer))
        assert runs.wandb_run_summary(trainer) is None
        runs.finish_wandb()
    assert dirs == roots and all(d.is_dir() for d in dirs)
