"""Run shipped LightningCLI configs from Python: fit, then test, and collect the metrics.

Used by ``make demo`` and the reproduction benchmarks; the same configs run from the shell with
``pl-pac-trs fit --config ...``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pl_pac_trs.apps.cli import PacTrsCLI
from pl_pac_trs.apps.runs import finish_wandb, run_dir, wandb_run_summary

__all__ = ["ConfigRun", "run_config"]


@dataclass
class ConfigRun:
    """What one fit (+ test) of a config left behind."""

    fit_metrics: dict[str, float]
    test_metrics: dict[str, float]
    run_dir: Path | None
    best_checkpoint: str | None
    wandb_note: str | None = None
    extra: dict = field(default_factory=dict)


def _floats(metrics) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return {k: v for k, v in out.items() if not math.isnan(v)}


def run_config(
    configs: Sequence[str | Path],
    overrides: Sequence[str] = (),
    test: bool = True,
) -> ConfigRun:
    """Fit a model from LightningCLI configs and optionally test it.

    Args:
        configs: One or more YAML files, applied in order (like repeated ``--config``).
        overrides: Extra command-line style arguments, e.g. ``["--trainer.max_epochs=5"]``.
        test: Whether to run ``trainer.test`` on the fitted model afterwards.

    Returns:
        The callback metrics after fit and after test, and the run directory.
    """
    args: list[str] = []  # ``run=False`` parses without a subcommand
    for config in configs:
        args += ["--config", str(config)]
    cli = PacTrsCLI(args=[*args, *overrides], run=False)
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    trainer.fit(model, datamodule=datamodule)
    fit_metrics = _floats(trainer.callback_metrics)
    test_metrics: dict[str, float] = {}
    if test:
        results = trainer.test(model, datamodule=datamodule, verbose=False)
        for result in results:
            test_metrics.update(_floats(result))
    checkpoint = getattr(trainer.checkpoint_callback, "best_model_path", None) or None
    directory = run_dir(trainer) if trainer.is_global_zero else None
    note = wandb_run_summary(trainer)
    finish_wandb()  # the next config run in this process gets its own W&B run
    return ConfigRun(fit_metrics, test_metrics, directory, checkpoint, note)
