"""The ``pl-pac-trs`` command line: a :class:`~lightning.pytorch.cli.LightningCLI` in subclass mode.

Any ``LightningModule`` / ``LightningDataModule`` — from this package or from the user's own import
path — is chosen in YAML by ``class_path``::

    pl-pac-trs fit --config configs/trs/exp1/quick/trs_oden.yaml --trainer.max_epochs=50
    pl-pac-trs fit --config trs/exp1/quick/trs_oden   # a shipped config by name, from anywhere
    python -m pl_pac_trs test --config my.yaml --ckpt_path runs/.../last.ckpt

Besides LightningCLI's ``fit``/``validate``/``test``/``predict``, ``pl-pac-trs pac ...`` runs the
whole PAC-Net pipeline (:mod:`pl_pac_trs.apps.pipeline`), ``pl-pac-trs trs-lambda`` chooses a
TRSODEN config's TRS weight on validation (:mod:`pl_pac_trs.apps.trs_lambda`) and
``pl-pac-trs configs`` lists, shows and copies out the shipped configs
(:mod:`pl_pac_trs.apps.config_commands`).

Bad input (:mod:`pl_pac_trs.apps.errors`): exit code 2 and at most three lines naming the
argument, file or value, raised before training; ``PL_PAC_TRS_DEBUG=1`` shows the full
traceback. Checkpoints given with ``--ckpt_path`` are read as data
(:class:`~pl_pac_trs.serialization.SafeCheckpointIO`), checked against the configured model's
class and shapes before anything runs.

Every run saves its resolved config as ``config.yaml`` in its run directory
(:func:`pl_pac_trs.apps.runs.run_dir`) and, with a ``WandbLogger``, as the W&B run config. Without
W&B credentials and without ``WANDB_MODE`` set, runs go offline
(:func:`pl_pac_trs.apps.runs.ensure_wandb_mode`).
"""

from __future__ import annotations

import importlib
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import (
    LightningArgumentParser,
    LightningCLI,
    LRSchedulerCallable,
    OptimizerCallable,
    SaveConfigCallback,
)
from lightning.pytorch.plugins.io import TorchCheckpointIO

from pl_pac_trs import __version__
from pl_pac_trs.apps.checkpoints import check_fits, checkpoint_shapes
from pl_pac_trs.apps.config_commands import resolve_config_args
from pl_pac_trs.apps.errors import DEBUG_ENV, short, trainer_culprits
from pl_pac_trs.apps.noise import prepare_wandb_loggers, quiet_known_noise
from pl_pac_trs.apps.runs import (
    ensure_wandb_mode,
    find_wandb_logger,
    finish_wandb,
    run_dir,
    wandb_run_summary,
)
from pl_pac_trs.serialization import SafeCheckpointIO

__all__ = ["PacTrsCLI", "RunConfigSaver", "main"]

#: Extra top-level subcommands: name -> ("module:function", one-line help). Each function takes the
#: remaining argv and returns an exit code.
EXTRA_COMMANDS: dict[str, tuple[str, str]] = {
    "pac": (
        "pl_pac_trs.apps.pipeline:main",
        "run the PAC-Net pipeline (source, allocate, calibrate)",
    ),
    "trs-lambda": (
        "pl_pac_trs.apps.trs_lambda:main",
        "choose a TRSODEN config's TRS weight on its validation split, write the chosen config",
    ),
    "configs": (
        "pl_pac_trs.apps.config_commands:main",
        "list, show or copy out the shipped configs (any runs by name: --config trs/exp1/oden)",
    ),
}

_DEBUG_ENV = DEBUG_ENV
#: ``ckpt_path`` values Lightning resolves itself (not file paths).
_SPECIAL_CKPT = ("last", "best", "hpc", "registry")


class RunConfigSaver(SaveConfigCallback):
    """Saves the resolved config to the run directory and to the W&B run config.

    Unlike the stock callback, which writes to ``trainer.log_dir`` (shared by every W&B run under
    the same ``save_dir``), the config goes to :func:`pl_pac_trs.apps.runs.run_dir`, one per run.
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


def _list_extra_commands(text: str) -> str:
    """Lightning's ``{fit,validate,test,predict}`` with this CLI's extra commands (``pac``)."""
    commands = ",".join(("fit", "validate", "test", "predict"))
    extended = ",".join((commands, *EXTRA_COMMANDS))
    return text.replace("{" + commands + "}", "{" + extended + "}")


class PacTrsArgumentParser(LightningArgumentParser):
    """Parser whose errors are one condensed message and a ``--help`` tip (three lines at most)."""

    def print_usage(self, file=None) -> None:
        if file is sys.stderr:  # only argparse's error path prints usage to stderr
            return
        super().print_usage(file)

    def format_usage(self) -> str:
        return _list_extra_commands(super().format_usage())

    def format_help(self, *args, **kwargs) -> str:
        return _list_extra_commands(super().format_help(*args, **kwargs))

    def error(self, message: str, ex: Exception | None = None):
        # jsonargparse also calls ``error`` on inner parsers that do not exit (to try the
        # alternatives of a union): only the final, exiting call is condensed
        if not self.exit_on_error or os.environ.get(_DEBUG_ENV):
            return super().error(message, ex)
        self._logger.error(message)
        prog = self.prog.replace(" [options]", "")
        sys.stderr.write(f"{prog}: error: {short(_list_extra_commands(message))}\n")
        sys.stderr.write(f"(options: {prog} --help; set {_DEBUG_ENV}=1 for the details)\n")
        self.exit(2)


class PacTrsCLI(LightningCLI):
    """LightningCLI with subclass mode for model and data and per-run config saving."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True, **kwargs) -> None:
        quiet_known_noise()
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_callback", RunConfigSaver)
        kwargs.setdefault("parser_class", PacTrsArgumentParser)
        kwargs.setdefault(
            "parser_kwargs",
            {"prog": "pl-pac-trs", "description": _description(), "version": __version__},
        )
        super().__init__(args=list(args) if args is not None else None, run=run, **kwargs)

    def _parse_ckpt_path(self) -> None:
        """Checks ``--ckpt_path`` before Lightning reads its hyper-parameters into the config.

        The file is loaded as data (clear errors for missing, empty, corrupt and unsafe files),
        must be a Lightning checkpoint, and must be of the configured model class (Lightning
        would otherwise swap the model class silently). Its shapes are checked against the
        instantiated model before the subcommand runs (:meth:`_check_ckpt_shapes`).
        """
        self._ckpt_shapes: dict[str, tuple[int, ...]] | None = None
        subcommand = self.config.get("subcommand")
        if subcommand:
            sub = self.config[subcommand]
            ckpt_path = sub.get("ckpt_path")
            if ckpt_path and str(ckpt_path) not in _SPECIAL_CKPT and "://" not in str(ckpt_path):
                self._check_ckpt(str(ckpt_path), sub)
        return super()._parse_ckpt_path()

    def _check_ckpt(self, ckpt_path: str, sub: Any) -> None:
        self._ckpt_shapes = checkpoint_shapes(ckpt_path, sub)
        self._ckpt_path = ckpt_path

    def _check_ckpt_shapes(self) -> None:
        if self._ckpt_shapes:
            check_fits(self.model, self._ckpt_shapes, self._ckpt_path)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, with Lightning's configuration errors as one line naming the setting,
        and checkpoints read as data (:class:`~pl_pac_trs.serialization.SafeCheckpointIO`)."""
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, TypeError, ValueError) as err:
            config = self._get(self.config_init, "trainer", default={}) or {}
            try:
                settings = {k: v for k, v in dict(config).items() if not hasattr(v, "__dict__")}
            except (TypeError, ValueError):
                settings = {}
            named = trainer_culprits(str(err), settings)
            raise ValueError(
                f"invalid trainer setting{f' {named}' if named else ''}: {err}"
            ) from err
        prepare_wandb_loggers(trainer)
        strategy = trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:
            strategy.checkpoint_io = SafeCheckpointIO()
        return trainer

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Trainer:
        # ``--trainer.enable_checkpointing=false`` turns off the config's own ModelCheckpoint
        # callbacks (every shipped config has one) instead of failing on them
        configured = config.get("callbacks")
        if config.get("enable_checkpointing") is False and configured is not None:
            configured = configured if isinstance(configured, list) else [configured]
            config["callbacks"] = [c for c in configured if not isinstance(c, ModelCheckpoint)]
        return super()._instantiate_trainer(config, callbacks)

    def before_instantiate_classes(self) -> None:
        """``--optimizer`` / ``--lr_scheduler`` become the model's own ``optimizer`` /
        ``lr_scheduler`` arguments when it takes callables of those names (as
        :class:`~pl_pac_trs.trs.TRSODEN`): its ``configure_optimizers`` then builds them, and its
        hyper-parameters (checkpoints, ``load_from_checkpoint``) record what trained it. Other
        models keep LightningCLI's own handling."""
        config = self.config[self.config["subcommand"]] if self.config.get("subcommand") else None
        config = self.config if config is None else config
        model = config.get("model")
        accepted = _callable_arguments(model.get("class_path") if model is not None else None)
        for key in ("optimizer", "lr_scheduler"):
            if config.get(key) is not None and key in accepted:
                model.init_args[key] = config[key]
                config[key] = None

    def _run_subcommand(self, subcommand: str) -> None:
        self._check_ckpt_shapes()
        return super()._run_subcommand(subcommand)

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        if args is None:
            return super().parse_arguments(parser, args)
        # Explicit args replace the process's command line (a benchmark's or pytest's flags): hide
        # it while parsing, or LightningCLI warns on every run that both were given. Only while
        # parsing: DDP relaunches workers from the real ``sys.argv``.
        with mock.patch.object(sys, "argv", sys.argv[:1]):
            return super().parse_arguments(parser, args)


def _callable_arguments(class_path: str | None) -> set[str]:
    """Which of ``optimizer`` / ``lr_scheduler`` the model class ``class_path`` takes as
    LightningCLI's ``OptimizerCallable`` / ``LRSchedulerCallable``."""
    if not class_path:
        return set()
    try:
        module_name, _, name = str(class_path).rpartition(".")
        hints = typing.get_type_hints(getattr(importlib.import_module(module_name), name).__init__)
    except Exception:  # not importable or not introspectable: LightningCLI's own handling
        return set()
    wanted = {"optimizer": OptimizerCallable, "lr_scheduler": LRSchedulerCallable}
    out = set()
    for key, hint in wanted.items():
        got = hints.get(key)
        if got == hint or hint in typing.get_args(got):
            out.add(key)
    return out


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


def _check_config_files(args: Sequence[str]) -> None:
    """Names the ``--config`` file that is not valid YAML (jsonargparse would not name it)."""
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        else:
            continue
        path = Path(value)
        if not path.is_file():
            continue  # a missing file, or YAML given inline: jsonargparse's own message
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(
                f"config file {str(path)!r} is not valid YAML{where}: {problem}"
            ) from None
        except UnicodeDecodeError:
            raise ValueError(f"config file {str(path)!r} is not a text (YAML) file") from None


def _unknown_command(args: Sequence[str]) -> str | None:
    first = next((a for a in args if not a.startswith("-")), None)
    if not args or not first or args[0].startswith("-"):
        return None
    known = ("fit", "validate", "test", "predict", *EXTRA_COMMANDS)
    if first in known:
        return None
    return f"unknown command {first!r}; choose from {', '.join(known)}"


def _report(err: BaseException) -> None:
    print(f"pl-pac-trs: error: {short(str(err))}", file=sys.stderr)
    print(f"(set {_DEBUG_ENV}=1 for the full traceback)", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pl-pac-trs`` and ``python -m pl_pac_trs``.

    Args:
        argv: Command-line arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code (also raised as ``SystemExit`` when run as a script).
    """
    args = resolve_config_args(sys.argv[1:] if argv is None else argv)
    if argv is None:  # shipped config names as paths, for DDP workers relaunched from sys.argv
        sys.argv[1:] = args
    # Lightning's own use of deprecated jsonargparse APIs is not the user's concern.
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    ensure_wandb_mode()
    try:
        unknown = _unknown_command(args)
        if unknown:
            raise ValueError(unknown)
        _check_config_files(args)
        if args and args[0] in EXTRA_COMMANDS:
            code = _load(EXTRA_COMMANDS[args[0]][0])(args[1:]) or 0
        else:
            cli = PacTrsCLI(args=None if argv is None else args)
            summary = wandb_run_summary(cli.trainer)
            finish_wandb()
            if summary:
                print(summary, flush=True)
            code = 0
    except (
        ValueError,
        FileNotFoundError,
        FileExistsError,
        KeyError,
        MisconfigurationException,
    ) as err:
        # Bad input detected by our own validation (config values, files, masks, ...): one clear
        # line instead of a traceback wall. PL_PAC_TRS_DEBUG=1 re-raises for the full traceback.
        if os.environ.get(_DEBUG_ENV):
            raise
        _report(err)
        code = 2
    except FloatingPointError as err:  # a PAC phase diverged (GradientMask's NonFiniteError)
        if os.environ.get(_DEBUG_ENV):
            raise
        _report(err)
        code = 1
    if argv is None:
        raise SystemExit(code)
    return code
