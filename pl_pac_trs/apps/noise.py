"""The known third-party noise that the CLI, the pipeline and the demo hide.

Only messages about our dependencies' own internals or their advertising are hidden; every
warning about the user's set-up (a missing validation loader, a slow ``num_workers``, a GPU left
unused, ...) still shows. Hidden:

* Lightning's "💡 Tip: ..." lines advertising litlogger / litmodels (at every fit);
* Lightning's own use of a deprecated torch pytree API (``isinstance(treespec, LeafSpec)``);
* wandb's "The anonymous setting has no effect" warning, which Lightning's ``WandbLogger``
  triggers by always passing ``anonymous=None``, and its "git root ... does not exist" when the
  logger's ``save_dir`` is not made yet (``WANDB_MODE=disabled`` does not make it):
  :func:`prepare_wandb_loggers` removes the one and makes the other.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger

__all__ = ["prepare_wandb_loggers", "quiet_known_noise"]

#: Messages (prefixes) of Lightning's rank-zero info log that advertise other products.
TIP_PREFIXES = ("💡 Tip:",)
_RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(TIP_PREFIXES)


_FILTER = _DropTips()


def quiet_known_noise() -> None:
    """Installs the filters (idempotent; affects this process only)."""
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def prepare_wandb_loggers(trainer: Trainer) -> None:
    """Before the W&B run starts: removes the ``anonymous=None`` that ``WandbLogger`` hands to
    ``wandb.init`` (it has no effect and makes wandb warn) and makes the logger's ``save_dir``."""
    for logger in trainer.loggers:
        if not isinstance(logger, WandbLogger):
            continue
        init = getattr(logger, "_wandb_init", None)
        if isinstance(init, dict) and init.get("anonymous", False) is None:
            del init["anonymous"]
        if logger.save_dir:
            Path(logger.save_dir).mkdir(parents=True, exist_ok=True)
