"""Runs a test's DDP script as a subprocess (Lightning launches the second rank itself)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_ddp_script(script: Path, out_dir: Path, timeout: float = 300) -> None:
    """``python script out_dir`` in ``out_dir`` (never the source tree), offline, 1 thread per rank.

    Raises:
        AssertionError: the script failed (with the end of its stderr).
    """
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, str(Path(script).resolve()), str(out_dir)],
        cwd=out_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
