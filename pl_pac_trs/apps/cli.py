"""The ``pl-pac-trs`` command line: a :class:`~lightning.pytorch.cli.LightningCLI` in subclass mode.

Any ``LightningModule`` / ``LightningDataModule`` — from this package or from the user's own import
path — is chosen in YAML by ``class_path``::

    pl-pac-trs fit --config configs/trs/exp1/quick/trs_oden.yaml --trainer.max_epochs=50
    pl-pac-trs fit --config trs/exp1/quick/trs_oden   # a shipped config by name, from anywhere
    python -m pl_pac_trs test --config my.yaml --ckpt_path runs/.../last.ckpt
    pl-pac-trs test --ckpt_path runs/.../version_0/checkpoints/last.ckpt  # that run's config

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

Every run has a directory of its own: ``<trainer.default_root_dir>/version_<N>``, new for each
run (or the one ``--run_dir`` names). The config's ``ModelCheckpoint`` without a ``dirpath`` writes
to its ``checkpoints/``; ``--ckpt_path=last`` resumes the last checkpoint of the run that
``--run_dir`` names (or of the only run of the config that has one) inside that same directory,
and continues its W&B run (the id is kept in the directory's ``run.json``). Set-up checks (the
``--ckpt_path`` file, the model against the data) run before the directory or a W&B run exists.

Every run saves its resolved config as ``config.yaml`` in its artefact directory
(:func:`pl_pac_trs.apps.runs.run_dir`) and, with a ``WandbLogger``, as the W&B run config. Without
W&B credentials and without ``WANDB_MODE`` set, runs go offline
(:func:`pl_pac_trs.apps.runs.ensure_wandb_mode`).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, LightningModule, Trainer
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
    CHECKPOINTS,
    claim_run_dir,
    ensure_wandb_mode,
    find_wandb_logger,
    finish_wandb,
    last_checkpoint,
    new_wandb_id,
    read_run_record,
    resumable_runs,
    run_dir,
    wandb_run_summary,
    write_run_record,
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
#: How a run hands its directory to the processes it launches (DDP workers re-run the command).
RUN_DIR_ENV = "PL_PAC_TRS_RUN_DIR"
#: The file in a run's directory that holds the run's resolved config.
RUN_CONFIG = "config.yaml"


@dataclass(frozen=True)
class _RunPlan:
    """Where a CLI run goes, decided when its arguments are parsed (nothing created yet)."""

    root: Path  # the config's trainer.default_root_dir: its runs are folders in it
    run: Path | None  # the run's directory; None: a new version_<N> under root
    inherited: bool = False  # a worker of a launch: the launching process made the directory
    resume: bool = False  # --ckpt_path=last: the run's own last checkpoint


def _run_plan(subcommand: str, sub: Any) -> _RunPlan:
    """The run's directory, and ``--ckpt_path=last`` resolved to that run's last checkpoint."""
    trainer = sub.get("trainer") or {}
    root = Path(trainer.get("default_root_dir") or os.getcwd())
    ckpt_path = sub.get("ckpt_path")
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:
        run = Path(inherited)
        if ckpt_path == "last" and (last := last_checkpoint(run)) is not None:
            sub["ckpt_path"] = str(last)
        return _RunPlan(root, run, inherited=True)
    given = sub.get("run_dir")
    if ckpt_path == "last" and not _explicit_checkpoint_dir(sub):
        if given:
            run = Path(given)
            last = last_checkpoint(run)
            if last is None:
                raise ValueError(
                    f"--ckpt_path=last: the run directory {given!r} holds no last checkpoint "
                    f"({CHECKPOINTS}/last.ckpt)"
                )
        else:
            runs = resumable_runs(root)
            if not runs:
                raise ValueError(
                    f"--ckpt_path=last: no run under {str(root)!r} holds a last checkpoint; "
                    "start the run without --ckpt_path"
                )
            if len(runs) > 1:
                names = ", ".join(p.name for p in runs[-3:])
                raise ValueError(
                    f"--ckpt_path=last: {len(runs)} runs under {str(root)!r} hold a last "
                    f"checkpoint (newest: {names}); name the one to resume with --run_dir"
                )
            run = runs[0]
            last = last_checkpoint(run)
        sub["ckpt_path"] = str(last)
        return _RunPlan(root, run, resume=True)
    if given:
        run = Path(given)
        if subcommand == "fit" and not ckpt_path and last_checkpoint(run) is not None:
            raise ValueError(
                f"--run_dir {given!r} holds the checkpoints of an earlier run: resume it with "
                "--ckpt_path=last, or name a new --run_dir"
            )
        return _RunPlan(root, run)
    return _RunPlan(root, None)


def _explicit_checkpoint_dir(sub: Any) -> bool:
    """Whether the ``checkpoint`` section or a ``ModelCheckpoint`` among the trainer's callbacks
    names its own ``dirpath`` (then ``last`` is Lightning's: the newest last checkpoint there)."""
    trainer = sub.get("trainer") or {}
    if _get(sub.get("checkpoint"), "dirpath"):
        return True
    return any(
        _is_subclass(_get(callback, "class_path"), ModelCheckpoint)
        and _get(_get(callback, "init_args"), "dirpath")
        for callback in _as_list(trainer.get("callbacks"))
    )


def _wandb_logger_args(trainer: Any) -> Iterator[Any]:
    """The ``init_args`` of each configured ``WandbLogger``."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in _as_list(trainer.get("logger")):
        if _is_subclass(_get(logger, "class_path"), WandbLogger):
            args = _get(logger, "init_args")
            if args is not None:
                yield args


def _as_list(value: Any) -> list:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _get(obj: Any, key: str) -> Any:
    try:
        return obj.get(key) if hasattr(obj, "get") else getattr(obj, key, None)
    except (KeyError, AttributeError):
        return None


def _is_subclass(class_path: Any, base: type) -> bool:
    if not isinstance(class_path, str) or "." not in class_path:
        return False
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        return False
    return isinstance(cls, type) and issubclass(cls, base)


class RunConfigSaver(SaveConfigCallback):
    """Saves the resolved config to the run's directory, its artefact directory and the W&B run
    config.

    Unlike the stock callback, which writes to ``trainer.log_dir`` (shared by every W&B run under
    the same ``save_dir``), the config goes to :func:`pl_pac_trs.apps.runs.run_dir`, one per run
    (the W&B run's files with W&B on), and to ``run_directory``, the run's own directory that the
    CLI made (where ``test --ckpt_path <run>/checkpoints/FILE`` finds it).
    """

    def __init__(self, *args, run_directory: Path | None = None, **kwargs) -> None:
        kwargs["save_to_log_dir"] = False
        kwargs.setdefault("config_filename", RUN_CONFIG)
        super().__init__(*args, **kwargs)
        self.run_directory = run_directory

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        directories = [run_dir(trainer)]
        if (
            self.run_directory is not None
            and self.run_directory.resolve() != directories[0].resolve()
        ):
            directories.append(self.run_directory)
        for directory in directories:
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
        # the run's directory: planned at parsing, made after the set-up checks (subclasses that
        # override a step still find these)
        self._plan: _RunPlan | None = None
        self._wandb_id: str | None = None
        self._created_run_dir: Path | None = None
        self.run_directory: Path | None = None
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_callback", RunConfigSaver)
        kwargs.setdefault("parser_class", PacTrsArgumentParser)
        kwargs.setdefault(
            "parser_kwargs",
            {"prog": "pl-pac-trs", "description": _description(), "version": __version__},
        )
        self._set_env = False
        try:
            super().__init__(args=list(args) if args is not None else None, run=run, **kwargs)
        except Exception:
            self._discard_run_dir()  # a failed start leaves no run behind
            raise
        finally:
            if self._set_env:  # (set for the processes this run launched)
                os.environ.pop(RUN_DIR_ENV, None)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """``--checkpoint.*``: the run's ``ModelCheckpoint`` (``--checkpoint.every_n_epochs=10``);
        ``--run_dir``: the run's directory."""
        parser.add_class_arguments(
            ModelCheckpoint, "checkpoint", fail_untyped=False, sub_configs=True
        )
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help=(
                "This run's directory (checkpoints in its checkpoints/, its record run.json). "
                "Default: a new version_<N> under trainer.default_root_dir. With "
                "--ckpt_path=last: the run to resume."
            ),
        )

    def _check_arguments(self) -> None:
        """Plans the run's directory and checks ``--ckpt_path`` right after parsing, before
        Lightning reads the checkpoint's hyper-parameters into the config.

        ``last`` becomes the last checkpoint of the run to resume (:func:`_run_plan`). The file
        is loaded as data (clear errors for missing, empty, corrupt and unsafe files), must be a
        Lightning checkpoint, and must be of the configured model class (Lightning would
        otherwise swap the model class silently). Its shapes are checked against the
        instantiated model before the trainer and the run directory exist
        (:meth:`_check_ckpt_shapes`).
        """
        self._ckpt_shapes: dict[str, tuple[int, ...]] | None = None
        subcommand = self.config.get("subcommand")
        if subcommand:
            sub = self.config[subcommand]
            # a file named by the user is trained on only with the config's model arguments;
            # '--ckpt_path=last' continues the run's own model (its arguments are the run's)
            other_model = subcommand == "fit" and sub.get("ckpt_path") != "last"
            self._plan = _run_plan(subcommand, sub)
            ckpt_path = sub.get("ckpt_path")
            if ckpt_path and str(ckpt_path) not in _SPECIAL_CKPT and "://" not in str(ckpt_path):
                self._check_ckpt(str(ckpt_path), sub, training=other_model)

    def _check_ckpt(self, ckpt_path: str, sub: Any, training: bool) -> None:
        self._ckpt_shapes = checkpoint_shapes(ckpt_path, sub, training=training)
        self._ckpt_path = ckpt_path

    def _check_ckpt_shapes(self) -> None:
        if self._ckpt_shapes:
            check_fits(self.model, self._ckpt_shapes, self._ckpt_path)

    def _check_data(self) -> None:
        """The model's own check against the data (``check_data``, e.g. a TRS field's
        ``state_dim``), before a run directory or a W&B run exists."""
        check = getattr(self.model, "check_data", None)
        if callable(check) and self.datamodule is not None:
            check(self.datamodule)

    def _set_wandb_id(self) -> None:
        """A ``WandbLogger`` without an ``id`` gets the resumed run's id (from its ``run.json``)
        or a new one, recorded in the run's directory: a resumed fit continues its W&B run."""
        plan = self._plan
        if plan is None:
            return
        trainer = self.config[self.subcommand].get("trainer") or {}
        recorded = read_run_record(plan.run).get("wandb_id") if plan.run else None
        for args in _wandb_logger_args(trainer):
            if _get(args, "id") or _get(args, "version"):
                self._wandb_id = str(_get(args, "id") or _get(args, "version"))
                continue
            self._wandb_id = recorded or new_wandb_id()
            args["id"] = self._wandb_id

    def extra_callbacks(self) -> list[Callback]:
        """Callbacks added to the configured ones (default: none; the pipeline's stages add
        theirs)."""
        return []

    def _section(self) -> Any:
        """The instantiated config of this run (its subcommand's, when it has one)."""
        return self.config_init[self.subcommand] if self.subcommand else self.config_init

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, with the run's ``ModelCheckpoint`` (the ``checkpoint`` section) in the
        run's ``checkpoints/``, Lightning's configuration errors as one line naming the setting,
        and checkpoints read as data (:class:`~pl_pac_trs.serialization.SafeCheckpointIO`).

        The ``checkpoint`` section stands aside for a ``ModelCheckpoint`` among
        ``trainer.callbacks`` (a user's config), and ``--trainer.enable_checkpointing=false``
        turns checkpoints off altogether instead of failing on them."""
        section = self._section()
        config = dict(section.get("trainer") or {})
        config.update(kwargs)
        configured = _as_list(config.get("callbacks"))
        off = config.get("enable_checkpointing") is False
        if off:
            configured = [c for c in configured if not isinstance(c, ModelCheckpoint)]
        extra = [c for c in (section.get("checkpoint"), *self.extra_callbacks()) if c is not None]
        if off or any(isinstance(c, ModelCheckpoint) for c in configured):
            extra = [c for c in extra if not isinstance(c, ModelCheckpoint)]
        kwargs["callbacks"] = [*configured, *extra]
        plan = self._plan
        run = None
        if plan is not None:  # (run=False, from pl_pac_trs.apps.experiment: as configured)
            self._check_ckpt_shapes()
            self._check_data()
            created = self._make_run_dir(plan)
            run = plan.run or created
            self._created_run_dir = created
            kwargs["default_root_dir"] = str(run)
            saver = self.save_config_callback
            if isinstance(saver, type) and issubclass(saver, RunConfigSaver):
                # the run's config also goes into the run's directory
                self.save_config_kwargs = {**self.save_config_kwargs, "run_directory": run}
            for callback in kwargs["callbacks"]:
                if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                    callback.dirpath = os.path.realpath(run / CHECKPOINTS)
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, TypeError, ValueError) as err:
            try:
                settings = {k: v for k, v in config.items() if not hasattr(v, "__dict__")}
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
        if run is not None:
            self.run_directory = run
            if not plan.inherited and self.subcommand == "fit":
                note = "resuming" if plan.resume else "run directory"
                print(f"{note} {run} (to resume it: --run_dir={run} --ckpt_path=last)", flush=True)
            if not os.environ.get(RUN_DIR_ENV):
                # processes this run launches (DDP workers re-run the command) use its directory
                os.environ[RUN_DIR_ENV] = str(run.resolve())
                self._set_env = True
        return trainer

    def _make_run_dir(self, plan: _RunPlan) -> Path | None:
        """Creates the run's directory and record; returns it when it was created here."""
        if plan.inherited:
            return None
        created = None
        if plan.run is None:
            created = claim_run_dir(plan.root)
        elif not plan.run.is_dir():
            plan.run.mkdir(parents=True)
            created = plan.run
        run = plan.run or created
        record = read_run_record(run)
        if self._wandb_id and record.get("wandb_id") != self._wandb_id:
            record["wandb_id"] = self._wandb_id
            write_run_record(run, record)
        elif created is not None:
            write_run_record(run, record)
        return created

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
        self._set_wandb_id()

    def _discard_run_dir(self) -> None:
        """Removes the run directory made here when the run failed before its first checkpoint
        (bad input found while setting up): a failed start leaves no run behind."""
        created = self._created_run_dir
        if created is not None and not any(created.rglob("*.ckpt")):
            shutil.rmtree(created, ignore_errors=True)

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """Parses, then plans the run's directory and checks ``--ckpt_path``
        (:meth:`_check_arguments`)."""
        if args is None:
            super().parse_arguments(parser, args)
        else:
            # Explicit args replace the process's command line (a benchmark's or pytest's
            # flags): hide it while parsing, or LightningCLI warns on every run that both were
            # given. Only while parsing: DDP relaunches workers from the real ``sys.argv``.
            with mock.patch.object(sys, "argv", sys.argv[:1]):
                super().parse_arguments(parser, args)
        self._check_arguments()


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


def _option(args: Sequence[str], name: str) -> str | None:
    """The value of ``name VALUE`` or ``name=VALUE`` in ``args`` (the last one), or ``None``."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def config_of_run(args: Sequence[str]) -> list[str]:
    """``validate|test|predict --ckpt_path FILE`` without ``--config`` (or ``--model``): the
    config the run that wrote FILE saved in its directory (``<run>/config.yaml``, with FILE in
    ``<run>/checkpoints/``), or the pipeline's resolved stage config beside a stage checkpoint
    (``config_<stage>.yaml`` beside ``<stage>.ckpt``), so that a checkpoint is evaluated with the
    model, data and trainer it was trained with. Other arguments come after it and still
    override it.

    Raises:
        FileNotFoundError: If FILE does not exist.
        ValueError: If no run config is found beside FILE (then ``--config`` is needed).
    """
    args = list(args)
    if not args or args[0] not in ("validate", "test", "predict"):
        return args
    rest = args[1:]
    given = ("-c", "--config", "--model")
    if any(a in given or a.startswith(("--config=", "--model=", "--model.")) for a in rest):
        return args
    ckpt = _option(rest, "--ckpt_path")
    if not ckpt or ckpt in _SPECIAL_CKPT or "://" in ckpt:
        return args
    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path {ckpt!r}: no such file")
    # a run's directory (FILE in its checkpoints/), or the resolved stage config the PAC pipeline
    # writes beside its stage checkpoints (config_<stage>.yaml beside <stage>.ckpt)
    candidates = [
        path.parent.parent / RUN_CONFIG,
        path.parent / RUN_CONFIG,
        path.parent / f"config_{path.stem}.yaml",
    ]
    for config in candidates:
        if config.is_file():
            return [args[0], "--config", str(config), *rest]
    raise ValueError(
        f"{args[0]} --ckpt_path {ckpt!r}: no {RUN_CONFIG} of the run that wrote it (looked for "
        f"{', '.join(str(c) for c in candidates)}); pass the config with --config"
    )


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
        args = config_of_run(args)
        if argv is None:
            sys.argv[1:] = args  # (DDP workers are relaunched from sys.argv)
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
