"""The ``pl-pac-trs`` command line: a :class:`~lightning.pytorch.cli.LightningCLI` in subclass mode.

Any ``LightningModule`` / ``LightningDataModule`` — from this package or from the user's own import
path — is chosen in YAML by ``class_path``::

    pl-pac-trs fit --config configs/trs/exp1/quick/trs_oden.yaml --trainer.max_epochs=50
    python -m pl_pac_trs test --config my.yaml --ckpt_path runs/.../last.ckpt

Besides LightningCLI's ``fit``/``validate``/``test``/``predict``, ``pl-pac-trs pac ...`` runs the
whole PAC-Net pipeline (:mod:`pl_pac_trs.pac.pipeline`).

Every run saves its resolved config as ``config.yaml`` in its run directory
(:func:`pl_pac_trs.runs.run_dir`) and, with a ``WandbLogger``, as the W&B run config. Without
W&B credentials and without ``WANDB_MODE`` set, runs go offline
(:func:`pl_pac_trs.runs.ensure_wandb_mode`).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from unittest import mock

import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from pl_pac_trs import __version__
from pl_pac_trs.runs import (
    ensure_wandb_mode,
    find_wandb_logger,
    finish_wandb,
    run_dir,
    wandb_run_summary,
)

__all__ = ["PacTrsCLI", "RunConfigSaver", "main"]

#: Extra top-level subcommands: name -> ("module:function", one-line help). Each function takes the
#: remaining argv and returns an exit code.
EXTRA_COMMANDS: dict[str, tuple[str, str]] = {
    "pac": (
        "pl_pac_trs.pac.pipeline:main",
        "run the PAC-Net pipeline (source, allocate, calibrate)",
    ),
}

_DEBUG_ENV = "PL_PAC_TRS_DEBUG"


class RunConfigSaver(SaveConfigCallback):
    """Saves the resolved config to the run directory and to the W&B run config.

    Unlike the stock callback, which writes to ``trainer.log_dir`` (shared by every W&B run under
    the same ``save_dir``), the config goes to :func:`pl_pac_trs.runs.run_dir`, one per run.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs["save_to_log_dir"] = False
        super().__init__(*args, **kwargs)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        directory = run_dir(trainer)
        self.parser.save(
            self.config,
            str(directory / self.config_filename),
            skip_none=False,
            overwrite=True,
            multifile=self.multifile,
        )
        logger = find_wandb_logger(trainer)
        if logger is not None:
            resolved = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
            logger.experiment.config.update(resolved, allow_val_change=True)


class PacTrsArgumentParser(LightningArgumentParser):
    """Parser whose errors are the message and a ``--help`` tip, without the 50-line usage dump."""

    def print_usage(self, file=None) -> None:
        if file is sys.stderr:  # only argparse's error path prints usage to stderr
            return
        super().print_usage(file)


class PacTrsCLI(LightningCLI):
    """LightningCLI with subclass mode for model and data and per-run config saving."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True, **kwargs) -> None:
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_callback", RunConfigSaver)
        kwargs.setdefault("parser_class", PacTrsArgumentParser)
        kwargs.setdefault(
            "parser_kwargs",
            {"prog": "pl-pac-trs", "description": _description(), "version": __version__},
        )
        super().__init__(args=list(args) if args is not None else None, run=run, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        if args is None:
            return super().parse_arguments(parser, args)
        # Explicit args replace the process's command line (a benchmark's or pytest's flags): hide
        # it while parsing, or LightningCLI warns on every run that both were given. Only while
        # parsing: DDP relaunches workers from the real ``sys.argv``.
        with mock.patch.object(sys, "argv", sys.argv[:1]):
            return super().parse_arguments(parser, args)


def _description() -> str:
    extra = "; ".join(
        f"'pl-pac-trs {name} --help': {text}" for name, (_, text) in EXTRA_COMMANDS.items()
    )
    return (
        "PAC-Net callbacks and TRS-ODEN modules for PyTorch Lightning. LightningCLI "
        f"subcommands below; also {extra}."
    )


def _load(target: str) -> Callable[[list[str]], int | None]:
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pl-pac-trs`` and ``python -m pl_pac_trs``.

    Args:
        argv: Command-line arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code (also raised as ``SystemExit`` when run as a script).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    # Lightning's own use of deprecated jsonargparse APIs is not the user's concern.
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    ensure_wandb_mode()
    try:
        if args and args[0] in EXTRA_COMMANDS:
            code = _load(EXTRA_COMMANDS[args[0]][0])(args[1:]) or 0
        else:
            cli = PacTrsCLI(args=None if argv is None else args)
            summary = wandb_run_summary(cli.trainer)
            finish_wandb()
            if summary:
                print(summary, flush=True)
            code = 0
    except (ValueError, FileNotFoundError, KeyError) as err:
        # Bad input detected by our own validation (config values, files, masks, ...): one clear
        # line instead of a traceback wall. PL_PAC_TRS_DEBUG=1 re-raises for the full traceback.
        if os.environ.get(_DEBUG_ENV):
            raise
        print(f"pl-pac-trs: error: {err}", file=sys.stderr)
        print(f"(set {_DEBUG_ENV}=1 for the full traceback)", file=sys.stderr)
        code = 2
    if argv is None:
        raise SystemExit(code)
    return code
