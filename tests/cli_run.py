"""``pl-pac-trs`` in a subprocess, as a user with no W&B credentials runs it (shared by the CLI,
resume and README tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: ``tiny_user_module`` (a user's own LightningModule, callbacks) and ``tiny.yaml``.
ASSETS = Path(__file__).parent / "apps" / "cli_assets"


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a user with no W&B credentials and no WANDB_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    # the checked-out tree first (not whatever copy of the package is installed), then the assets
    pythonpath = os.pathsep.join((str(ROOT), str(ASSETS)))
    env.update(HOME=str(home), PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1")
    return env


def run_cli(
    args: list[str], cwd: Path, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m pl_pac_trs ARGS`` in ``cwd`` (also its ``HOME``), output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "pl_pac_trs", *args],
        cwd=cwd,
        env=env if env is not None else clean_env(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
