"""PAC-Net stages as Weights & Biases artifacts: checkpoints and masks, with their lineage.

:class:`WandbArtifacts` is opt-in: add it to a stage's callbacks (``pl-pac-trs pac --artifacts``
adds it to every stage). When the fit ends it logs, to the trainer's ``WandbLogger`` run,

* the stage's final checkpoint as a ``"model"`` artifact (the file of
  :class:`~pl_pac_trs.pac.FinalCheckpoint`; without one, the model as the fit ends),
* the PAC-Net masks that checkpoint carries as a ``"pac-masks"`` artifact (one small file written
  by :func:`~pl_pac_trs.pac.save_masks`),
* the dense checkpoint :class:`~pl_pac_trs.pac.MagnitudePruning` wrote before pruning (a
  ``"model"`` artifact too: the fine-tuning baselines start from it),

each with metadata: the stage, the file's size in bytes and the fraction of pruned weights. When
the fit starts it declares the checkpoint of :class:`~pl_pac_trs.pac.LoadSourceWeights` as an
input of the run, under the name the source stage logged it with, so W&B draws
``source run -> source artifact -> calibrate run``.

Names: ``<prefix>-<file stem>`` (``friedman-source``, ``friedman-source-masks``,
``friedman-source_dense``, ``friedman-calibrate``), where ``prefix`` defaults to the name of the
checkpoint's directory. A calibrate stage reading ``runs/pac/friedman/source.ckpt`` thus names
the artifact the source stage wrote to that path; W&B matches the versions by content.

Offline (``WANDB_MODE=offline``) the outputs are recorded in the offline run and created by
``wandb sync``. wandb's public ``use_artifact`` refuses offline runs, so offline the input is
named in the model artifact's metadata (``sources``) only; online W&B records the lineage edge.
When all stages log to one W&B run (as under a sweep agent), a source checkpoint that run wrote is
not declared as the run's own input: every checkpoint a logged fit writes names its W&B run
(:data:`RUN_KEY`).
Without a ``WandbLogger`` the callback does nothing (one debug message). A W&B failure never
fails the fit: it is reported as a warning.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from pl_pac_trs.pac.checkpoint import FinalCheckpoint, save_checkpoint_atomic
from pl_pac_trs.pac.pruning import MagnitudePruning
from pl_pac_trs.pac.state import load_masks, mask_sparsity, save_masks
from pl_pac_trs.pac.transfer import LoadSourceWeights

__all__ = [
    "MASKS_TYPE",
    "MODEL_TYPE",
    "RUN_KEY",
    "WandbArtifacts",
    "artifact_name",
    "declare_input",
    "written_by_run",
]

#: W&B artifact type of checkpoints.
MODEL_TYPE = "model"
#: W&B artifact type of PAC-Net masks files.
MASKS_TYPE = "pac-masks"

_log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")  # what W&B accepts in artifact names
#: Top-level checkpoint key of the id of the W&B run whose fit wrote the checkpoint.
RUN_KEY = "wandb_run"


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
    """Declares a local artifact as an input of ``run`` with W&B's public ``use_artifact``;
    returns how it was recorded: ``"use_artifact"``, or ``"offline: in metadata"`` (offline
    runs refuse ``use_artifact``; the input is then named in the outputs' metadata only)."""
    if getattr(run, "offline", False):
        return "offline: in metadata"
    run.use_artifact(artifact)
    return "use_artifact"


def written_by_run(path: Path, run_id: str) -> bool:
    """Whether the checkpoint at ``path`` was written by a fit that logged to the W&B run
    ``run_id`` (:class:`WandbArtifacts` writes the run's id under :data:`RUN_KEY`). Read as data,
    memory-mapped: the weights are not loaded."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint, unreadable: not known to be this run's
        return False
    return isinstance(obj, dict) and obj.get(RUN_KEY) == run_id


def _check_name(what: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"WandbArtifacts: {what} must be None or a non-empty name of letters, digits, '.', "
            f"'_' and '-' (a W&B artifact name), got {value!r}"
        )
    return value


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class WandbArtifacts(Callback):
    """Logs a PAC-Net stage's checkpoint and masks as W&B artifacts and declares its source.

    See the module documentation for what is logged, the names and the offline behaviour. The
    files are those of the trainer's ``FinalCheckpoint``, ``MagnitudePruning`` and
    ``LoadSourceWeights`` callbacks.

    Args:
        checkpoint_path: The file to log as the stage's model (default: the path of the
            trainer's :class:`~pl_pac_trs.pac.FinalCheckpoint`; without one, the model as the fit
            ends, saved to a temporary ``<stage>.ckpt``). Only a file written during this fit is
            logged (an older one is skipped with a warning).
        stage: Stage name for the metadata (default: the checkpoint's file stem, else the W&B
            run's name).
        prefix: Artifact name prefix (default: the name of each file's directory; none for the
            temporary checkpoint).
        masks: Also log the masks the checkpoint carries, if any.
        dense: Also log :class:`~pl_pac_trs.pac.MagnitudePruning`'s ``dense_checkpoint`` when
            this fit wrote it.
        lineage: Declare :class:`~pl_pac_trs.pac.LoadSourceWeights`' checkpoint as an input.
        aliases: Extra aliases for the logged artifacts (W&B adds ``latest``).

    Attributes:
        logged: One dictionary per artifact logged in the last fit (``name``, ``type``,
            ``file``, ``size_bytes``) and per input declared (``name``, ``type``, ``file``,
            ``used``: ``True``, ``how``: see :func:`declare_input`, or ``"logged by this run"``
            when the source checkpoint was written by a fit of this very run), in order.

    Raises:
        ValueError: For an argument of the wrong type or value.

    Example::

        >>> WandbArtifacts(prefix="friedman", aliases=["paper"]).aliases
        ['paper']
    """

    def __init__(
        self,
        checkpoint_path: str | os.PathLike | None = None,
        stage: str | None = None,
        prefix: str | None = None,
        masks: bool = True,
        dense: bool = True,
        lineage: bool = True,
        aliases: Sequence[str] = (),
    ) -> None:
        if checkpoint_path is not None:
            if (
                not isinstance(checkpoint_path, (str, os.PathLike))
                or not str(checkpoint_path).strip()
            ):
                raise ValueError(
                    "WandbArtifacts: checkpoint_path must be None or a non-empty file path, "
                    f"got {checkpoint_path!r}"
                )
            if Path(checkpoint_path).is_dir():
                raise ValueError(
                    f"WandbArtifacts: checkpoint_path {str(checkpoint_path)!r} is a directory"
                )
        for what, flag in (("masks", masks), ("dense", dense), ("lineage", lineage)):
            if not isinstance(flag, bool):
                raise ValueError(f"WandbArtifacts: {what} must be true or false, got {flag!r}")
        if isinstance(aliases, str):
            aliases = [aliases]
        bad = [a for a in aliases if not isinstance(a, str) or not a or set(a) & set("/:")]
        if bad:
            raise ValueError(
                f"WandbArtifacts: aliases must be non-empty strings without '/' or ':', "
                f"got {bad[0]!r}"
            )
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.stage = _check_name("stage", stage)
        self.prefix = _check_name("prefix", prefix)
        self.masks = masks
        self.dense = dense
        self.lineage = lineage
        self.aliases = list(aliases)
        self.logged: list[dict[str, Any]] = []
        self._logger: WandbLogger | None = None
        self._said_no_logger = False
        self._before: dict[Path, tuple[int, int, int] | None] = {}
        self._final: Path | None = None  # the trainer FinalCheckpoint file
        self._dense: list[Path] = []  # MagnitudePruning's dense checkpoints

    # -- hooks --------------------------------------------------------------------------------

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.logged = []
        self._logger = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        if self._logger is None:
            if not self._said_no_logger and trainer.is_global_zero:
                _log.debug("WandbArtifacts: the trainer has no WandbLogger; nothing is logged")
            self._said_no_logger = True

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._logger is None:
            return
        cbs = trainer.callbacks  # the files of the stage's own callbacks
        self._final = next((c.path for c in cbs[::-1] if isinstance(c, FinalCheckpoint)), None)
        pruning = [c for c in cbs if isinstance(c, MagnitudePruning) and c.dense_checkpoint]
        self._dense = [Path(c.dense_checkpoint) for c in pruning]
        # what the files were before the fit: only files this fit writes are logged
        self._before = {p: _stat(p) for p in self._outputs()}
        loads = [Path(c.checkpoint) for c in cbs if isinstance(c, LoadSourceWeights)]
        source = loads[-1] if loads else None
        if self.lineage and trainer.is_global_zero and source and source.is_file():
            self._guarded(f"declare {source} as input", self._use, source)

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._logger is None:
            return
        checkpoint = self._checkpoint()
        tmp: str | None = None
        if checkpoint is None:  # no FinalCheckpoint: save the model as it is (every rank)
            tmp = tempfile.mkdtemp(prefix="pac-artifact-")
            stage = self._stage(None) if trainer.is_global_zero else "model"
            checkpoint = save_checkpoint_atomic(trainer, Path(tmp) / f"{stage}.ckpt")
        try:
            if trainer.is_global_zero:
                self._guarded(f"log {checkpoint}", self._log_stage, trainer, checkpoint, tmp)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    @override
    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # the W&B run this fit logs to (``WandbLogger.version``: its id, without starting it), so
        # that a later stage of the same run knows the checkpoint is this run's own (a key of the
        # checkpoint, not a callback state: a fit without this callback reads it without a word)
        version = self._logger.version if self._logger is not None else None
        if isinstance(version, str) and version:
            checkpoint[RUN_KEY] = version

    # -- helpers ------------------------------------------------------------------------------

    def _checkpoint(self) -> Path | None:
        return self.checkpoint_path if self.checkpoint_path is not None else self._final

    def _dense_paths(self) -> list[Path]:
        return self._dense if self.dense else []

    def _outputs(self) -> list[Path]:
        checkpoint = self._checkpoint()
        return [*([checkpoint] if checkpoint is not None else []), *self._dense_paths()]

    def _written(self, path: Path) -> bool:
        """Whether ``path`` is a file this fit wrote (else a warning)."""
        now = _stat(path)
        if now is None:
            rank_zero_warn(f"WandbArtifacts: {path} was not written; not logged")
            return False
        if path in self._before and self._before[path] == now:
            rank_zero_warn(f"WandbArtifacts: {path} was not written by this fit; not logged")
            return False
        return True

    def _stage(self, checkpoint: Path | None) -> str:
        if self.stage:
            return self.stage
        if checkpoint is not None:
            return checkpoint.stem
        name = getattr(self._run(), "name", None)
        return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") if name else "model"

    def _run(self) -> Any:
        assert self._logger is not None
        return self._logger.experiment

    def _guarded(self, what: str, fn, *args) -> None:
        """Runs ``fn``; a failure is a warning, never the end of the fit."""
        try:
            fn(*args)
        except Exception as err:  # W&B, the file system: report, go on
            rank_zero_warn(f"WandbArtifacts: could not {what}: {type(err).__name__}: {err}")

    def _name(self, path: Path, temporary: bool, suffix: str = "") -> str:
        prefix = self.prefix if (self.prefix is not None or not temporary) else ""
        return artifact_name(path, prefix, suffix)

    def _log_stage(self, trainer: Trainer, checkpoint: Path, tmp: str | None) -> None:
        import wandb

        run = self._run()
        if getattr(run, "disabled", False):
            _log.debug("WandbArtifacts: W&B is disabled; nothing is logged")
            return
        temporary = tmp is not None
        if not temporary and not self._written(checkpoint):
            return
        stage = self._stage(checkpoint)
        try:
            masks = load_masks(checkpoint) if self.masks else None
        except ValueError:  # no masks in this checkpoint (a dense or baseline model)
            masks = None
        sparsity = mask_sparsity(masks) if masks else None
        metadata: dict[str, Any] = {
            "stage": stage,
            "file": checkpoint.name,
            "size_bytes": checkpoint.stat().st_size,
        }
        if sparsity is not None:
            metadata["sparsity"] = sparsity["global"]
        sources = [e["name"] for e in self.logged if e.get("used")]
        if sources:
            metadata["sources"] = sources
        name = self._name(checkpoint, temporary)
        if masks:
            with tempfile.TemporaryDirectory(prefix="pac-masks-") as masks_dir:
                masks_file = save_masks(
                    masks, Path(masks_dir) / f"{checkpoint.stem}-masks.pt", stage=stage
                )
                masks_name = self._name(checkpoint, temporary, "-masks")
                metadata["masks_artifact"] = masks_name
                assert sparsity is not None
                masks_meta = {
                    "stage": stage,
                    "file": masks_file.name,
                    "size_bytes": masks_file.stat().st_size,
                    "checkpoint": checkpoint.name,
                    "sparsity": sparsity["global"],
                    "masked_tensors": len(masks),
                    "entries": sum(m.numel() for m in masks.values()),
                    "pruned": sum(int((~m).sum()) for m in masks.values()),
                    "sparsity_per_tensor": {k: v for k, v in sparsity.items() if k != "global"},
                }
                self._log_file(wandb, run, masks_name, MASKS_TYPE, masks_file, masks_meta)
        self._log_file(wandb, run, name, MODEL_TYPE, checkpoint, metadata)
        for dense in self._dense_paths():
            if self._written(dense):
                meta = {"stage": stage, "file": dense.name, "size_bytes": dense.stat().st_size}
                meta["dense"] = True
                self._log_file(wandb, run, self._name(dense, False), MODEL_TYPE, dense, meta)

    def _log_file(
        self, wandb, run, name: str, kind: str, path: Path, metadata: dict[str, Any]
    ) -> None:
        artifact = wandb.Artifact(name, type=kind, metadata=metadata)
        artifact.add_file(str(path), name=path.name)
        run.log_artifact(artifact, aliases=self.aliases or None)
        self.logged.append(
            {"name": name, "type": kind, "file": str(path), "size_bytes": metadata["size_bytes"]}
        )
        rank_zero_info(f"WandbArtifacts: logged {kind} artifact {name!r} ({path.name})")

    def _use(self, path: Path) -> None:
        import wandb

        run = self._run()
        if getattr(run, "disabled", False):
            return
        name = self._name(path, False)
        entry = {"name": name, "type": MODEL_TYPE, "file": str(path), "used": True}
        run_id = getattr(run, "id", None)
        if isinstance(run_id, str) and written_by_run(path, run_id):
            # written by a fit of this very run (all stages in one run): not its own input
            self.logged.append({**entry, "how": "logged by this run"})
            return
        artifact = wandb.Artifact(
            name, type=MODEL_TYPE, metadata={"file": path.name, "size_bytes": path.stat().st_size}
        )
        artifact.add_file(str(path), name=path.name)
        how = declare_input(run, artifact)
        self.logged.append({**entry, "how": how})
        rank_zero_info(f"WandbArtifacts: {name!r} ({path.name}) declared as input ({how})")
