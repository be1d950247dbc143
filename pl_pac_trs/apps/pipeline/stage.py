"""One pipeline stage: a stage config fitted through the CLI, with the pipeline's changes as data.

The stage config file is read as it is (``--config``); what the pipeline changes is a
:class:`StageOverrides`: fixed trainer settings go in as command-line overrides after the config,
settings that depend on the config's own values (the scaled epochs, checkpoint paths moved into
the output directory, a callback argument a sweep varies) are applied to the parsed config before
anything is instantiated, and extra callbacks are Python objects handed to the trainer. The
resolved config (``config_<stage>.yaml``) is the parser's dump of what was actually run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback

from pl_pac_trs.apps.cli import PacTrsCLI

__all__ = [
    "PATH_ARGS",
    "StageOverrides",
    "callback_names",
    "fit_stage",
    "stage_files",
    "write_atomic",
]

PATH_ARGS = ("checkpoint", "dense_checkpoint", "masks", "path")
"""Callback arguments naming a checkpoint file; moved into the output directory, name kept."""
OUTPUT_ARGS = ("dense_checkpoint", "path")  # the ones a stage writes


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` under a temporary name, then renames it."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def _is_checkpoint(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike)) and str(value).endswith((".ckpt", ".pt"))


def _short_name(class_path: Any) -> str:
    return str(class_path or "").rsplit(".", 1)[-1]


@dataclass(frozen=True)
class StageOverrides:
    """What the pipeline changes in one stage config.

    Args:
        out: The pipeline's output directory: checkpoint paths named in callbacks
            (:data:`PATH_ARGS`) move here, keeping their file names.
        root_dir: The stage's ``trainer.default_root_dir``.
        epochs_scale: Multiplies ``trainer.max_epochs`` (at least 2) and a ``MagnitudePruning``
            epoch (kept inside the fit).
        wandb: Keep the config's logger (saving under ``out``); ``False``: no logger.
        callback_args: ``{callback class name: {argument: value}}`` set on the config's
            callbacks of that class, e.g. ``{"GradientMask": {"lam": 0.01}}``; the config must
            have one.
        extra_callbacks: Callback objects added to the stage's trainer.
        drop_callbacks: Class names of the config's callbacks left out (e.g. a dense source fit
            from the source config: ``("MagnitudePruning", "GradientMask")``).
        run_name: The logger's run name (``None``: the config's).
    """

    out: Path
    root_dir: Path
    epochs_scale: float = 1.0
    wandb: bool = True
    callback_args: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    extra_callbacks: Sequence[Callback] = ()
    drop_callbacks: tuple[str, ...] = ()
    run_name: str | None = None

    def arguments(self) -> list[str]:
        """The fixed settings, as command-line overrides placed after the stage config."""
        args = [
            f"--trainer.default_root_dir={self.root_dir}",
            "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ]
        if not self.wandb:
            args.append("--trainer.logger=false")
        return args

    def relocate(self, value: Any) -> Any:
        """A checkpoint path moved into :attr:`out`; anything else unchanged."""
        return str(self.out / Path(value).name) if _is_checkpoint(value) else value

    def describe(self) -> dict[str, Any]:
        """The overrides as plain data (what a finished stage's record is keyed on)."""
        return {
            "out": str(self.out),
            "root_dir": str(self.root_dir),
            "epochs_scale": self.epochs_scale,
            "wandb": self.wandb,
            "callback_args": {k: dict(v) for k, v in self.callback_args.items()},
            "extra_callbacks": [type(cb).__name__ for cb in self.extra_callbacks],
            "drop_callbacks": list(self.drop_callbacks),
            "run_name": self.run_name,
        }

    def apply(self, config: Any) -> None:
        """Applies the value-dependent changes to a parsed stage config (a jsonargparse
        namespace with ``trainer``), before its classes are instantiated.

        Raises:
            ValueError: ``callback_args`` names a callback the config does not have.
        """
        trainer = config.trainer
        max_epochs = trainer.get("max_epochs")
        if max_epochs is not None and self.epochs_scale != 1:
            trainer.max_epochs = max(2, round(max_epochs * self.epochs_scale))
        if self.wandb and hasattr(trainer.get("logger"), "get"):
            logger = trainer.logger
            if logger.get("init_args") is not None and "save_dir" in logger.init_args:
                logger.init_args.save_dir = str(self.out)
            if logger.get("init_args") is not None and self.run_name is not None:
                logger.init_args.name = self.run_name
        callbacks = [
            cb
            for cb in trainer.get("callbacks") or []
            if not (hasattr(cb, "get") and _short_name(cb.get("class_path")) in self.drop_callbacks)
        ]
        if trainer.get("callbacks") is not None:
            trainer.callbacks = callbacks
        for cb in callbacks:
            args = cb.get("init_args") if hasattr(cb, "get") else None
            if args is None:
                continue
            for key in PATH_ARGS:
                if key in args:
                    args[key] = self.relocate(args[key])
            name = _short_name(cb.get("class_path"))
            if name == "MagnitudePruning" and args.get("epoch") is not None:
                scaled = round(args["epoch"] * self.epochs_scale)
                last = (trainer.get("max_epochs") or scaled + 1) - 1
                args["epoch"] = min(max(1, scaled), last)
            for key, value in self.callback_args.get(name, {}).items():
                args[key] = value
        have = {_short_name(cb.get("class_path")) for cb in callbacks if hasattr(cb, "get")}
        for name in self.callback_args:
            if name not in have:
                raise ValueError(f"pac pipeline: the stage config has no {name} callback to set")


def callback_names(config: Mapping[str, Any]) -> set[str]:
    """The class names of a stage config's callbacks (the config as loaded from its file)."""
    return {
        _short_name(cb.get("class_path"))
        for cb in (config.get("trainer") or {}).get("callbacks") or []
    }


def stage_files(config: Mapping[str, Any], overrides: StageOverrides, stage: str):
    """The stage's input checkpoints (read by its callbacks) and outputs, from the stage config
    as loaded from its file (read only) and where ``overrides`` puts them."""
    outputs = {overrides.out / f"{stage}.ckpt"}
    inputs: set[Path] = set()
    for cb in (config.get("trainer") or {}).get("callbacks") or []:
        name = _short_name(cb.get("class_path"))
        if name in overrides.drop_callbacks:
            continue
        args = {**(cb.get("init_args") or {}), **overrides.callback_args.get(name, {})}
        for key in PATH_ARGS:
            if _is_checkpoint(args.get(key)):
                (outputs if key in OUTPUT_ARGS else inputs).add(Path(overrides.relocate(args[key])))
    return sorted(inputs - outputs), sorted(outputs)


class _StageCLI(PacTrsCLI):
    """The CLI for one stage: applies :class:`StageOverrides` and records the resolved config."""

    def __init__(self, overrides: StageOverrides, resolved: Path | None, header: str, **kw):
        self._overrides, self._resolved, self._header = overrides, resolved, header
        super().__init__(**kw)

    def _stage_config(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        config = self._stage_config()
        self._overrides.apply(config)
        super().before_instantiate_classes()  # (the CLI's own: optimizers, the W&B run id)
        if self._resolved is not None:
            # the whole config as the parser dumps it, then this stage's part
            dumped = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
            if self.subcommand:
                dumped = dumped[self.subcommand]
            text = yaml.safe_dump(dumped, sort_keys=False, allow_unicode=True)
            write_atomic(self._resolved, self._header + text)

    def extra_callbacks(self) -> list[Callback]:
        return [*super().extra_callbacks(), *self._overrides.extra_callbacks]


def fit_stage(
    config: Path,
    overrides: StageOverrides,
    extra_args: Sequence[str] = (),
    resolved: Path | None = None,
    run: bool = True,
) -> PacTrsCLI:
    """Fits one stage config with ``overrides`` (``run=False``: only builds it).

    Args:
        config: The stage config file (read, never rewritten).
        overrides: The pipeline's changes.
        extra_args: Further command-line overrides (a user's ``--set``), applied last.
        resolved: Where to write the resolved config (``None``: nowhere).
        run: Fit (``True``) or only instantiate trainer, model and data.

    Returns:
        The CLI, with ``trainer``, ``model`` and ``datamodule``.
    """
    names = [type(cb).__name__ for cb in overrides.extra_callbacks]
    header = (
        f"# pl-pac-trs pac: stage {Path(config).stem!r}; overrides: "
        f"{' '.join(extra_args) or 'none'}"
        + (f"; added callbacks (not in this file): {', '.join(names)}" if names else "")
        + "\n"
    )
    args = [*(["fit"] if run else []), "--config", str(config), *overrides.arguments()]
    return _StageCLI(overrides, resolved, header, args=[*args, *extra_args], run=run)
