"""Resumable stages: ``pipeline_state.json`` records what each finished stage was run from and
produced; :class:`PipelineStage` fits a stage unless its record still holds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pl_pac_trs.apps.pipeline.stage import StageOverrides, fit_stage, stage_files, write_atomic
from pl_pac_trs.apps.runs import finish_wandb
from pl_pac_trs.pac.checkpoint import save_checkpoint_atomic

__all__ = ["STATE_FILE", "PipelineStage", "StageRecords", "start_clean"]

STATE_FILE = "pipeline_state.json"
STAGE_DIRS = (
    "source",
    "calibrate",
    "dense",
    "wandb",
    "finetune",
    "l2sp",
    "scratch",
    "linear_probe",
    "lora",
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class StageRecords:
    """``pipeline_state.json``: what each finished stage was run from and what it produced."""

    def __init__(self, out: Path, fresh: bool) -> None:
        self.path = out / STATE_FILE
        self.stages: dict[str, Any] = {}
        if not fresh and self.path.is_file():
            try:
                self.stages = dict(json.loads(self.path.read_text()).get("stages") or {})
            except (ValueError, AttributeError):
                self.stages = {}
        self.earlier = bool(self.stages)
        self.resumed: list[str] = []
        self.ran: list[str] = []

    @staticmethod
    def key(config_text: str, overrides: dict[str, Any], extra: Sequence[str]) -> str:
        """What a stage is run from: its config file's text, the pipeline's overrides and the
        user's extra arguments."""
        text = json.dumps(
            {"config": config_text, "overrides": overrides, "extra": list(extra)}, sort_keys=True
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def finished(self, stage: str, key: str, inputs: list[Path], outputs: list[Path]) -> Any:
        """The recorded result of ``stage`` if it still holds, else ``None``."""
        rec = self.stages.get(stage)
        if not isinstance(rec, dict) or rec.get("key") != key:
            return None
        files = {str(p): p for p in (*inputs, *outputs)}
        recorded = {**(rec.get("inputs") or {}), **(rec.get("outputs") or {})}
        if set(recorded) != set(files):
            return None
        for name, p in files.items():
            if not p.is_file() or _sha256(p) != recorded[name]:
                return None
        self.resumed.append(stage)
        return rec.get("rows")

    def record(self, stage: str, key: str, inputs: list[Path], outputs: list[Path], rows) -> None:
        self.ran.append(stage)
        self.stages[stage] = {
            "key": key,
            "inputs": {str(p): _sha256(p) for p in inputs if p.is_file()},
            "outputs": {str(p): _sha256(p) for p in outputs if p.is_file()},
            "rows": rows,
        }
        write_atomic(self.path, json.dumps({"stages": self.stages}, indent=2))

    def forget(self, stage: str) -> None:
        if self.stages.pop(stage, None) is not None:
            write_atomic(self.path, json.dumps({"stages": self.stages}, indent=2))


def start_clean(out: Path) -> int:
    """Removes what an earlier pipeline run wrote to ``out``; returns the number of entries."""
    removed = 0
    names = [STATE_FILE, "summary.json", "summary.md"]
    for path in out.iterdir():
        ours = path.name in names or path.suffix in (".ckpt", ".partial")
        ours |= path.name.startswith("config_") and path.suffix == ".yaml"
        ours |= path.is_dir() and path.name in STAGE_DIRS
        if ours and path.is_dir():
            shutil.rmtree(path)
        elif ours:
            path.unlink()
        removed += ours
    return removed


def _in_sweep() -> bool:
    """Whether a ``wandb agent`` launched this process (it then expects a single run)."""
    return bool(os.environ.get("WANDB_SWEEP_ID"))


def _end_stage_run() -> None:
    """Closes the stage's W&B run so that the next stage gets its own (not under a sweep)."""
    if not _in_sweep():
        finish_wandb()


class PipelineStage:
    """One stage of a pipeline run: its config, overrides and record."""

    def __init__(
        self, name: str, config: Path, overrides: StageOverrides, extra: list[str], records
    ) -> None:
        self.name, self.config, self.overrides = name, config, overrides
        self.extra, self.records = extra, records
        text = config.read_text()
        self.key = records.key(text, overrides.describe(), extra)
        self.inputs, self.outputs = stage_files(yaml.safe_load(text) or {}, overrides, name)

    def finished(self) -> Any:
        """The recorded rows if an earlier run finished this stage from the same inputs."""
        rows = self.records.finished(self.name, self.key, self.inputs, self.outputs)
        if rows is None:
            self.records.forget(self.name)
        return rows

    def fit(self):
        out = self.overrides.out
        cli = fit_stage(self.config, self.overrides, self.extra, out / f"config_{self.name}.yaml")
        save_checkpoint_atomic(cli.trainer, out / f"{self.name}.ckpt")
        return cli

    def build(self):
        """The stage's trainer, model and data, not fitted and not logging."""
        return fit_stage(
            self.config, self.overrides, [*self.extra, "--trainer.logger=false"], run=False
        )

    def record(self, rows: dict[str, Any]) -> None:
        self.records.record(self.name, self.key, self.inputs, self.outputs, rows)
        _end_stage_run()
