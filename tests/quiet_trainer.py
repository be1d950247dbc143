"""A Lightning ``Trainer`` that writes and prints nothing the test did not ask for (shared by
the model tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl


def quiet_trainer(root: str | Path, max_epochs: int, **kwargs: Any) -> pl.Trainer:
    """No logger, checkpoints, progress bar or model summary unless ``kwargs`` ask for them;
    anything written goes under ``root``."""
    defaults = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return pl.Trainer(max_epochs=max_epochs, default_root_dir=root, **{**defaults, **kwargs})
