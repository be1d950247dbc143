"""Run directories and Weights & Biases set-up shared by the CLI, the callbacks and the modules.

Every ``pl-pac-trs fit/validate/test/predict`` gets a directory of its own,
``<trainer.default_root_dir>/version_<N>`` (:func:`claim_run_dir`: an exclusive ``mkdir``, so two
runs started at once never get the same one), unless ``--run_dir`` names it. Its checkpoints go to
``<run directory>/checkpoints/`` and its record (:data:`RUN_RECORD`: the W&B run id) beside them,
so that ``--ckpt_path=last`` resumes that run's last checkpoint and continues its W&B run.

Artefacts (resolved config, plots, metric tables) go to :func:`run_dir`: the W&B run's ``files``
directory when a :class:`~lightning.pytorch.loggers.WandbLogger` logs (so that ``wandb sync``
uploads them), else the trainer's ``default_root_dir`` or ``log_dir``.
"""

from __future__ import annotations

import configparser
import json
import netrc
import os
import re
import secrets
import string
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

__all__ = [
    "CHECKPOINTS",
    "RUN_RECORD",
    "claim_run_dir",
    "ensure_wandb_mode",
    "find_wandb_logger",
    "finish_wandb",
    "last_checkpoint",
    "new_wandb_id",
    "read_run_record",
    "resumable_runs",
    "run_dir",
    "wandb_base_url",
    "wandb_credentials",
    "wandb_has_credentials",
    "wandb_reachable",
    "wandb_run_summary",
    "write_run_record",
]

#: Seconds the W&B server may take to accept a TCP connection before runs go offline.
WANDB_PROBE_TIMEOUT = 3.0

#: The W&B server when neither ``WANDB_BASE_URL`` nor a settings file names one and wandb's own
#: default cannot be read (``wandb.sdk.lib.urls.DEFAULT_BASE_URL`` moved).
_FALLBACK_BASE_URL = "https://api.wandb.ai"
#: Hosts of the W&B cloud: a ``wandb login`` for one of them also serves the others (wandb reads
#: the ``api.wandb.ai`` netrc entry for its CoreWeave Forge address).
_WANDB_CLOUD_HOSTS = ("api.wandb.ai", "api.forge.coreweave.com", "forge.coreweave.com")


def _wandb_settings_files() -> list[Path]:
    """wandb's settings files, highest precedence first: workspace, then global.

    ``wandb login --host URL`` writes ``base_url`` to the global file
    (``$WANDB_CONFIG_DIR/settings``, default ``~/.config/wandb/settings``); ``wandb init`` writes
    the workspace file (``wandb/settings`` under ``WANDB_DIR`` or the working directory).
    """
    root = Path(os.environ.get("WANDB_DIR") or Path.cwd()).expanduser()
    workspace = root / (".wandb" if (root / ".wandb").exists() else "wandb") / "settings"
    config_dir = os.environ.get("WANDB_CONFIG_DIR")
    global_dir = Path(config_dir).expanduser() if config_dir else Path.home() / ".config" / "wandb"
    return [workspace, global_dir / "settings"]


def _wandb_setting(key: str) -> str | None:
    """A value from wandb's settings files (an INI ``[default]`` section), or ``None``."""
    for path in _wandb_settings_files():
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
            value = parser.get("default", key, fallback=None)
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        if value and value.strip():
            return value.strip()
    return None


def wandb_base_url() -> str:
    """The W&B server that runs of this process talk to, the way wandb resolves it.

    ``WANDB_BASE_URL``, else ``base_url`` in wandb's settings files (``wandb login --host``),
    else wandb's default server. Read afresh on every call: wandb's own settings object is not
    loaded (once loaded, wandb would ignore a ``WANDB_MODE`` set afterwards).

    Returns:
        The server URL, without a trailing slash.
    """
    url = os.environ.get("WANDB_BASE_URL") or _wandb_setting("base_url")
    if not url:
        try:
            from wandb.sdk.lib.urls import DEFAULT_BASE_URL as url
        except ImportError:  # moved in another wandb version
            url = _FALLBACK_BASE_URL
    return url.rstrip("/")


def wandb_credentials() -> str | None:
    """Where wandb would take its credentials from, asking neither the user nor the server.

    The same sources, in the same order, as wandb itself: ``WANDB_API_KEY`` (or
    ``WANDB_IDENTITY_TOKEN_FILE``), credentials set earlier in this process
    (``wandb.login(key=...)``), the netrc file entry for :func:`wandb_base_url` as ``wandb login``
    writes it (``NETRC``, else ``~/.netrc``; read by wandb's own ``wbauth.read_netrc_auth``), and
    an ``api_key`` in wandb's settings files. A key that wandb finds malformed still counts: the
    run then tries to log in and wandb names the problem, instead of a silent offline run. When
    wandb's credential module cannot be imported (another wandb version), the netrc file is
    parsed here for the server's host (and the other W&B cloud hosts).

    Returns:
        The source (``"WANDB_API_KEY"``, ``"WANDB_IDENTITY_TOKEN_FILE"``, ``"session"``,
        ``"netrc"``, ``"settings"``), or ``None`` when no credentials are configured.
    """
    for variable in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        if os.environ.get(variable):
            return variable
    host = wandb_base_url()
    found = _wandb_auth_lookup(host)
    if found is None and _wandb_setting("api_key"):
        found = "settings"
    return found


def _wandb_auth_lookup(host: str) -> str | None:
    """Session or netrc credentials for ``host``, through wandb's own ``wbauth`` module."""
    try:
        from wandb.errors import AuthenticationError
        from wandb.sdk.lib import wbauth

        read_netrc_auth, session_credentials = wbauth.read_netrc_auth, wbauth.session_credentials
    except (ImportError, AttributeError):
        return "netrc" if _netrc_has_entry(host) else None
    try:
        if session_credentials(host=host) is not None:
            return "session"
        return "netrc" if read_netrc_auth(host=host) else None
    except AuthenticationError:  # an entry with a malformed key: wandb.init will say so
        return "netrc"
    except (ValueError, TypeError):  # a URL wandb refuses: it will say so; read the file here
        return "netrc" if _netrc_has_entry(host) else None


def _netrc_has_entry(base_url: str) -> bool:
    """Fallback: whether the netrc file has an entry with a password for the server's host."""
    host = urlparse(base_url).netloc or base_url
    hosts = set(_WANDB_CLOUD_HOSTS) if host in _WANDB_CLOUD_HOSTS else {host}
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        parsed = netrc.netrc(os.path.expanduser(path))
    except (netrc.NetrcParseError, OSError):
        return False
    return any((parsed.authenticators(h) or (None, None, None))[2] for h in hosts)


def wandb_has_credentials() -> bool:
    """Whether W&B could log in without asking (see :func:`wandb_credentials`)."""
    return wandb_credentials() is not None


def ensure_wandb_mode() -> str:
    """Pick the W&B mode for this process before any run starts.

    An explicit ``WANDB_MODE`` is respected, and so is ``mode = offline`` / ``disabled`` in
    wandb's settings files (``wandb offline``). With credentials (:func:`wandb_credentials`:
    ``wandb login``, ``WANDB_API_KEY``, ...) runs log online, or offline with one line on stderr
    when the server does not answer (:func:`wandb_reachable`). Without credentials, W&B would
    prompt for a login (and hang with no terminal) or fail, so the run goes offline instead. The
    process environment is updated so that DDP workers launched later inherit the choice.

    Returns:
        The mode in force: ``"online"``, ``"offline"``, ``"disabled"`` or whatever was set.
    """
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    configured = _wandb_setting("mode")
    if configured in ("offline", "dryrun", "disabled"):
        return configured
    if wandb_has_credentials():
        return _offline_if_unreachable()
    os.environ["WANDB_MODE"] = "offline"
    # We print where the offline run went and how to sync it ourselves, once, on rank zero.
    os.environ.setdefault("WANDB_SILENT", "true")
    return "offline"


def wandb_reachable(timeout: float = WANDB_PROBE_TIMEOUT) -> bool:
    """Whether the W&B server (:func:`wandb_base_url`) answers an HTTP request within ``timeout`` s.

    Any answer below 500 counts (``/healthz`` may well be a 404 on some servers); a refused or
    timed-out connection, a failed name lookup or a gateway error (5xx) does not. The request
    runs in a daemon thread, so a stalled DNS lookup cannot hold the run past ``timeout``.
    """
    base = wandb_base_url()
    result: list[bool] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=timeout) as response:
                result.append(response.status < 500)
        except urllib.error.HTTPError as err:
            result.append(err.code < 500)
        except (OSError, ValueError):
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _offline_if_unreachable() -> str:
    """With credentials: ``"online"``, or ``"offline"`` (said once) when no server answers."""
    if wandb_reachable():
        return "online"
    os.environ["WANDB_MODE"] = "offline"  # inherited by DDP workers: said once per run
    host = urlparse(wandb_base_url()).hostname
    print(
        f"W&B: {host} is not reachable; logging offline (WANDB_MODE=offline), upload the run "
        "later with `wandb sync <run directory>`",
        file=sys.stderr,
        flush=True,
    )
    return "offline"


def find_wandb_logger(trainer: Trainer) -> WandbLogger | None:
    """The first :class:`WandbLogger` among the trainer's loggers, if any."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return logger
    return None


def run_dir(trainer: Trainer) -> Path:
    """This run's artefact directory (created if missing).

    Safe to call from any subset of ranks: unlike ``trainer.log_dir`` it makes no collective
    call (a ``broadcast`` reached by rank zero alone would hang a DDP run).

    Args:
        trainer: The trainer of the run.

    Returns:
        On global rank zero with a ``WandbLogger``: the W&B run's ``files`` directory, or
        ``trainer.default_root_dir`` when W&B is disabled (``WANDB_MODE=disabled``) and on the
        other ranks. Otherwise the logger's ``log_dir`` (TensorBoard, CSV), its ``save_dir``, or
        ``trainer.default_root_dir`` without a logger.
    """
    wandb_logger = find_wandb_logger(trainer)
    path: str | None = None
    if wandb_logger is not None and trainer.is_global_zero:
        experiment = wandb_logger.experiment
        if not getattr(experiment, "disabled", False):  # WANDB_MODE=disabled: a shared tmp dir
            path = getattr(experiment, "dir", None)
    if path is None and wandb_logger is not None:
        path = trainer.default_root_dir  # not the W&B save_dir, which every run shares
    if path is None:
        logger = trainer.logger
        if isinstance(logger, (TensorBoardLogger, CSVLogger)):
            path = logger.log_dir
        elif logger is not None:
            path = logger.save_dir
    out = Path(path or trainer.default_root_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def wandb_run_summary(trainer: Trainer) -> str | None:
    """A one-paragraph note on where the W&B run was written and, offline, how to sync it."""
    logger = find_wandb_logger(trainer)
    if logger is None or not trainer.is_global_zero:
        return None
    experiment = logger.experiment
    files_dir = getattr(experiment, "dir", None)
    if files_dir is None or getattr(experiment, "disabled", False):  # WANDB_MODE=disabled
        return None
    run_path = Path(files_dir).parent
    if getattr(getattr(experiment, "settings", None), "mode", None) == "offline" or (
        os.environ.get("WANDB_MODE") == "offline"
    ):
        return (
            f"W&B run written offline to {run_path}\n  upload it later with: wandb sync {run_path}"
        )
    url = getattr(experiment, "url", None)
    return f"W&B run directory: {run_path}" + (f"\n  view it at: {url}" if url else "")


def finish_wandb() -> None:
    """Close the active W&B run, if any, so that the next logger in this process gets a new one."""
    wandb = sys.modules.get("wandb")  # never import wandb just to find there is nothing to close
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


# --- one directory per run ------------------------------------------------------------------

#: The folder of a run directory that its ``ModelCheckpoint`` writes to.
CHECKPOINTS = "checkpoints"
#: The run's record in its directory: ``{"wandb_id": ...}``, read when the run is resumed.
RUN_RECORD = "run.json"
_VERSION = re.compile(r"^version_(\d+)$")


def claim_run_dir(root: str | os.PathLike) -> Path:
    """A new, empty ``version_<N>`` directory under ``root``, created here.

    ``N`` is one more than the highest existing version; the directory is made with an exclusive
    ``mkdir``, so runs started at the same moment never share one (the loser takes the next).

    Args:
        root: Where the runs of a config live (its ``trainer.default_root_dir``).

    Returns:
        The new directory.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    versions = [int(m.group(1)) for p in root.iterdir() if (m := _VERSION.match(p.name))]
    n = max(versions, default=-1) + 1
    while True:
        path = root / f"version_{n}"
        try:
            path.mkdir()
        except FileExistsError:
            n += 1
            continue
        return path


def last_checkpoint(run: str | os.PathLike) -> Path | None:
    """The newest ``last*.ckpt`` in ``<run>/checkpoints`` (Lightning's "last"), or ``None``."""
    folder = Path(run) / CHECKPOINTS
    found = [p for p in folder.glob("last*.ckpt") if p.is_file()] if folder.is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resumable_runs(root: str | os.PathLike) -> list[Path]:
    """The run directories under ``root`` that hold a last checkpoint, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and last_checkpoint(p) is not None]
    return sorted(runs, key=lambda p: last_checkpoint(p).stat().st_mtime)  # type: ignore[union-attr]


def read_run_record(run: str | os.PathLike) -> dict:
    """The run's record (:data:`RUN_RECORD`), or ``{}`` when it has none or it is unreadable."""
    try:
        record = json.loads((Path(run) / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_run_record(run: str | os.PathLike, record: dict) -> None:
    """Write the run's record (:data:`RUN_RECORD`), replacing it atomically."""
    path = Path(run) / RUN_RECORD
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def new_wandb_id() -> str:
    """A fresh W&B run id (8 lowercase letters and digits, as wandb makes them)."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))
