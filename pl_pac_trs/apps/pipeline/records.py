"""``pipeline_state.json``: what each finished stage was run from and produced, to resume."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pl_pac_trs.apps.pipeline.stage import write_atomic

__all__ = ["STATE_FILE", "StageRecords", "start_clean"]

STATE_FILE = "pipeline_state.json"
STAGE_DIRS = ("source", "calibrate", "wandb", "finetune", "l2sp", "scratch", "linear_probe")


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
