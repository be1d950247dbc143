"""Weights & Biases records of PAC-Net stages: artifact names and inputs declared to a run.

Used by :class:`~pl_pac_trs.pac.WandbArtifacts`; kept apart from the callback because they talk to
wandb's run object only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = ["artifact_name", "declare_input"]


def artifact_name(path: str | os.PathLike, prefix: str | None = None, suffix: str = "") -> str:
    """The W&B artifact name :class:`WandbArtifacts` gives the file at ``path``.

    Args:
        path: The checkpoint file.
        prefix: Name prefix (default: the name of the file's directory).
        suffix: Appended to the file's stem (``"-masks"`` for its masks).

    Returns:
        ``<prefix>-<stem><suffix>``, with characters W&B does not accept replaced by ``-``.
    """
    path = Path(path)
    prefix = path.parent.name if prefix is None else prefix
    raw = f"{prefix}-{path.stem}{suffix}" if prefix else f"{path.stem}{suffix}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-") or "checkpoint"


def declare_input(run: Any, artifact: Any) -> str:
    """Declares a local (draft) artifact as an input of ``run``; returns how it was recorded.

    Online: ``run.use_artifact(artifact)``, W&B's public call (the version with the same
    content is used, or the artifact is stored first). Offline, where ``use_artifact`` refuses:
    the same record ``use_artifact`` makes online, an artifact marked ``use_after_commit``,
    through wandb's ``Run._log_artifact``; ``wandb sync`` then stores it (or finds the version
    with the same content) and marks it used by the run.

    Args:
        run: The W&B run.
        artifact: A ``wandb.Artifact`` with its files added.

    Returns:
        ``"use_artifact"``, ``"offline record"``, or ``"not recorded"`` when this wandb offers
        no way to record an input offline.
    """
    if not getattr(run, "offline", False):
        run.use_artifact(artifact)
        return "use_artifact"
    log_artifact = getattr(run, "_log_artifact", None)
    if log_artifact is None:
        return "not recorded"
    try:
        log_artifact(artifact, is_user_created=True, use_after_commit=True)
    except TypeError:  # the internal changed its signature
        return "not recorded"
    return "offline record"
