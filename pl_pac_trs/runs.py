"""Run directories and Weights & Biases set-up shared by the CLI, the callbacks and the modules.

Every run has one *run directory* where its artefacts go (resolved config, plots, metric tables):
the W&B run's ``files`` directory when a :class:`~lightning.pytorch.loggers.WandbLogger` is
attached (so that ``wandb sync`` uploads them), else the trainer's ``log_dir``.
"""

from __future__ import annotations

import netrc
import os
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

__all__ = [
    "ensure_wandb_mode",
    "find_wandb_logger",
    "finish_wandb",
    "run_dir",
    "wandb_reachable",
    "wandb_run_summary",
]

#: Seconds the W&B server may take to accept a TCP connection before runs go offline.
WANDB_PROBE_TIMEOUT = 3.0


def _wandb_host() -> str:
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    return urlparse(base).hostname or "api.wandb.ai"


def wandb_has_credentials() -> bool:
    """Whether W&B could log in without asking: an API key in the environment or in ``~/.netrc``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = os.environ.get("NETRC", os.path.join(os.path.expanduser("~"), ".netrc"))
    try:
        return netrc.netrc(netrc_path).authenticators(_wandb_host()) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def ensure_wandb_mode() -> str:
    """Pick the W&B mode for this process before any run starts.

    An explicit ``WANDB_MODE`` is respected. Without it and without credentials, W&B would prompt
    for a login (and hang with no terminal) or fail, so the run goes offline instead; the
    process environment is updated so that DDP workers launched later inherit the choice.

    Returns:
        The mode in force: ``"online"``, ``"offline"``, ``"disabled"`` or whatever was set.
    """
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    if wandb_has_credentials():
        return _offline_if_unreachable()
    os.environ["WANDB_MODE"] = "offline"
    # We print where the offline run went and how to sync it ourselves, once, on rank zero.
    os.environ.setdefault("WANDB_SILENT", "true")
    return "offline"


def wandb_reachable(timeout: float = WANDB_PROBE_TIMEOUT) -> bool:
    """Whether the W&B server (``WANDB_BASE_URL``) answers an HTTP request within ``timeout`` s.

    Any answer below 500 counts (``/healthz`` may well be a 404 on some servers); a refused or
    timed-out connection, a failed name lookup or a gateway error (5xx) does not. The request
    runs in a daemon thread, so a stalled DNS lookup cannot hold the run past ``timeout``.
    """
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").rstrip("/")
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
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
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
        On global rank zero with a ``WandbLogger``: the W&B run's ``files`` directory. Otherwise
        the logger's ``log_dir`` (TensorBoard, CSV), its ``save_dir``, or
        ``trainer.default_root_dir`` without a logger.
    """
    wandb_logger = find_wandb_logger(trainer)
    path: str | None = None
    if wandb_logger is not None and trainer.is_global_zero:
        path = getattr(wandb_logger.experiment, "dir", None)
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
    if files_dir is None:
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
