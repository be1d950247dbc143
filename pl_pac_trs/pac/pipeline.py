"""The whole PAC-Net pipeline in one command: ``pl-pac-trs pac TASK``.

Runs the stage configs of ``configs/pac/TASK/`` (in the working directory if there is one, else
the shipped configs, :mod:`pl_pac_trs.configs`) in order -- ``source`` (dense training, pruning,
allocate in one fit), ``calibrate`` and the chosen baselines -- with every checkpoint path
pointed into the output directory, then tests each stage on the target task and on the source
task (PAC-Net's source metrics are taken inside :func:`~pl_pac_trs.pac.source_view`, with the
calibrated weights zeroed) and writes ``summary.json`` and ``summary.md`` there.

Checkpoints written: ``source_dense.ckpt`` (before pruning), ``source.ckpt`` (pruned and
allocated, carries the masks) and ``calibrate.ckpt`` (the target model), plus ``<baseline>.ckpt``.

Every file is written under a temporary name and then renamed, so a killed run never leaves a
truncated checkpoint or summary. ``config_<stage>.yaml`` is the stage's fully resolved config,
``--set`` overrides included (``pl-pac-trs fit --config config_<stage>.yaml`` re-runs it).
``pipeline_state.json`` records, for every finished stage, a SHA-256 of its resolved config and
overrides, of its input checkpoints and of its outputs, and its test metrics. A re-run into the
same directory resumes: a stage whose record still matches (same config, same inputs, outputs
intact) is not fitted again; any other stage, and so every stage downstream of it, runs again.
``fresh=True`` (``--fresh``) starts the directory clean instead. Which one happened is said in
one line.

With W&B, each stage that runs logs to a run of its own and the summary is logged as a table
(:func:`log_summary_wandb`); ``--artifacts`` adds :class:`~pl_pac_trs.pac.WandbArtifacts` to every
stage; ``--lam`` / ``--amount`` set calibrate's λ and the pruned share (what the shipped W&B
sweep ``configs/sweeps/pac_friedman.yml`` varies).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from pl_pac_trs.configs import configs_root
from pl_pac_trs.pac.checkpoint import save_checkpoint_atomic
from pl_pac_trs.pac.masks import load_masks
from pl_pac_trs.pac.selection import matches_any
from pl_pac_trs.pac.transfer import LoadSourceWeights, source_state_dict, source_view

__all__ = ["BASELINES", "demo", "log_summary_wandb", "main", "run_pipeline"]

BASELINES = ("finetune", "l2sp", "scratch", "linear_probe")
_PATH_ARGS = ("checkpoint", "dense_checkpoint", "masks", "path")
_OUTPUT_ARGS = ("dense_checkpoint", "path")  # what a stage's callbacks write
STATE_FILE = "pipeline_state.json"


def _config_dir(task: str, config_dir: str | None) -> Path:
    roots = [
        Path.cwd() / "configs" / "pac",
        configs_root() / "pac",  # the shipped configs (installed with the package)
    ]
    if config_dir:
        path = Path(config_dir)
        roots = [path.parent]
    else:
        candidates = [root / task for root in roots]
        path = next((p for p in candidates if p.is_dir()), candidates[0])
    if not (path / "source.yaml").is_file():
        tasks = sorted(
            {p.name for root in roots for p in root.glob("*") if (p / "source.yaml").is_file()}
        )
        known = f"; tasks here: {', '.join(tasks)}" if tasks else ""
        raise FileNotFoundError(
            f"pac pipeline: no stage configs for task {task!r} in {str(path)!r} "
            f"(expected source.yaml, calibrate.yaml, ...){known}; or pass --config-dir"
        )
    return path


def _resolve_config(
    path: Path, out: Path, stage: str, epochs_scale: float, wandb: bool
) -> dict[str, Any]:
    cfg = yaml.safe_load(path.read_text())
    trainer = cfg.setdefault("trainer", {})
    trainer["default_root_dir"] = str(out / stage)
    trainer["enable_checkpointing"] = False
    trainer.setdefault("enable_progress_bar", False)
    trainer.setdefault("enable_model_summary", False)
    if "max_epochs" in trainer and epochs_scale != 1:
        trainer["max_epochs"] = max(2, round(trainer["max_epochs"] * epochs_scale))
    for cb in trainer.get("callbacks") or []:
        args = cb.setdefault("init_args", {})
        for key in _PATH_ARGS:
            if isinstance(args.get(key), str) and args[key].endswith((".ckpt", ".pt")):
                args[key] = str(out / Path(args[key]).name)
        if cb["class_path"].endswith("MagnitudePruning") and args.get("epoch") is not None:
            scaled = round(args["epoch"] * epochs_scale)
            args["epoch"] = min(max(1, scaled), trainer.get("max_epochs", scaled + 1) - 1)
    if not wandb:
        trainer["logger"] = False
    elif isinstance(trainer.get("logger"), dict):
        trainer["logger"].setdefault("init_args", {})["save_dir"] = str(out)
    return cfg


def _write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` under a temporary name, then renames it."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fit(cfg: dict[str, Any], out: Path, stage: str, extra: Sequence[str], run: bool = True):
    """Fits one stage (``run=False``: only builds it) through the CLI.

    ``config_<stage>.yaml`` is written first from the stage config, then, once the CLI has
    parsed it, replaced by the fully resolved config (overrides included).
    """
    from pl_pac_trs.cli import PacTrsCLI

    if not run:  # a rebuild: leave the stage's recorded config alone
        scratch = out / f".config_{stage}.rebuild.yaml"
        scratch.write_text(yaml.safe_dump(cfg, sort_keys=False))
        try:
            return PacTrsCLI(args=["--config", str(scratch), *extra], run=False)
        finally:
            scratch.unlink(missing_ok=True)
    resolved = out / f"config_{stage}.yaml"
    header = f"# pl-pac-trs pac: stage {stage!r}; overrides: {' '.join(extra) or 'none'}\n"
    _write_atomic(resolved, header + yaml.safe_dump(cfg, sort_keys=False))

    class StageCLI(PacTrsCLI):
        def before_fit(self) -> None:
            parser = self._parser(self.subcommand)
            dumped = parser.dump(self.config[self.subcommand], skip_none=False)
            _write_atomic(resolved, header + dumped)

    return StageCLI(args=["fit", "--config", str(resolved), *extra])


def _test(trainer, model, datamodule) -> dict[str, float]:
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in (results[0] if results else {}).items()}


def _target_metrics(trainer, model, datamodule) -> dict[str, float]:
    """The target task's validation (``val/...``: what to choose settings on, e.g. in a sweep)
    and test (``test/...``) metrics of the fitted stage."""
    results = trainer.validate(model, datamodule=datamodule, verbose=False)
    val = {k: float(v) for k, v in (results[0] if results else {}).items()}
    return {**val, **_test(trainer, model, datamodule)}


def _head_state(cli, checkpoint: Path) -> dict[str, torch.Tensor]:
    skip: tuple[str, ...] = ()
    for cb in cli.trainer.callbacks:
        if isinstance(cb, LoadSourceWeights):
            skip = cb.skip
    if not skip:
        return {}
    return {k: v for k, v in source_state_dict(checkpoint).items() if matches_any(k, skip)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _stage_files(cfg: dict[str, Any], out: Path, stage: str) -> tuple[list[Path], list[Path]]:
    """The stage's input checkpoints (read by its callbacks) and its outputs."""
    outputs = {out / f"{stage}.ckpt"}
    paths: set[Path] = set()
    for cb in (cfg.get("trainer") or {}).get("callbacks") or []:
        args = cb.get("init_args") or {}
        for key in _PATH_ARGS:
            value = args.get(key)
            if isinstance(value, str) and value.endswith((".ckpt", ".pt")):
                (outputs if key in _OUTPUT_ARGS else paths).add(Path(value))
    return sorted(paths - outputs), sorted(outputs)


class _StageRecords:
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
    def key(cfg: dict[str, Any], extra: Sequence[str]) -> str:
        text = json.dumps({"config": cfg, "overrides": list(extra)}, sort_keys=True)
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
        _write_atomic(self.path, json.dumps({"stages": self.stages}, indent=2))

    def forget(self, stage: str) -> None:
        if self.stages.pop(stage, None) is not None:
            _write_atomic(self.path, json.dumps({"stages": self.stages}, indent=2))


def _start_clean(out: Path) -> int:
    """Removes what an earlier pipeline run wrote to ``out``; returns the number of entries."""
    import shutil

    removed = 0
    names = [STATE_FILE, "summary.json", "summary.md"]
    for path in out.iterdir():
        ours = path.name in names or path.suffix in (".ckpt", ".partial")
        ours |= path.name.startswith("config_") and path.suffix == ".yaml"
        ours |= path.is_dir() and path.name in ("source", "calibrate", "wandb", *BASELINES)
        if ours and path.is_dir():
            shutil.rmtree(path)
        elif ours:
            path.unlink()
        removed += ours
    return removed


def _check_lam(lam: Any) -> float | None:
    ok = isinstance(lam, (int, float)) and not isinstance(lam, bool)
    if lam is not None and (not ok or not math.isfinite(lam) or lam < 0):
        raise ValueError(f"lam must be a finite number >= 0 (calibrate's λ), got {lam!r}")
    return None if lam is None else float(lam)


def _check_amount(amount: Any) -> float | None:
    ok = isinstance(amount, (int, float)) and not isinstance(amount, bool)
    if amount is not None and (not ok or not 0 <= amount < 1):
        raise ValueError(f"amount must be a fraction in [0, 1) (pruned share), got {amount!r}")
    return None if amount is None else float(amount)


def _set_callback_arg(cfg: dict[str, Any], cls: str, key: str, value: Any, what: str) -> None:
    """Sets ``key`` of the stage config's ``cls`` callbacks; there must be one."""
    found = [
        cb
        for cb in (cfg.get("trainer") or {}).get("callbacks") or []
        if str(cb.get("class_path", "")).rsplit(".", 1)[-1] == cls
    ]
    if not found:
        raise ValueError(f"pac pipeline: {what} needs a {cls} callback in the stage config")
    for cb in found:
        cb.setdefault("init_args", {})[key] = value


def _in_sweep() -> bool:
    """Whether a ``wandb agent`` launched this process (it then expects a single run)."""
    return bool(os.environ.get("WANDB_SWEEP_ID"))


def _end_stage_run() -> None:
    """Closes the stage's W&B run so that the next stage gets its own (not under a sweep)."""
    if not _in_sweep():
        from pl_pac_trs.runs import finish_wandb

        finish_wandb()


def _slug(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def log_summary_wandb(summary: dict[str, Any], cfg: dict[str, Any]) -> str | None:
    """Logs the pipeline summary to W&B: a table ``pac/summary`` and flat summary metrics.

    The metrics are named ``summary/<stage>/<target|source>/<metric>`` with the stage in
    lower case and underscores (``summary/pac_net_calibrate/target/val/mse``: a sweep's
    ``metric.name``). Under a ``wandb agent`` they go to the agent's run (the stages' run);
    otherwise to a run of their own named ``summary`` (job type ``pac-summary``) in the project
    and group of the stage config's ``WandbLogger``.

    Args:
        summary: What :func:`run_pipeline` returns.
        cfg: A resolved stage config (its ``WandbLogger`` init args name the project).

    Returns:
        The W&B run's id, or ``None`` when the config has no ``WandbLogger`` or W&B is disabled.
    """
    logger = (cfg.get("trainer") or {}).get("logger")
    if not isinstance(logger, dict) or not str(logger.get("class_path", "")).endswith(
        "WandbLogger"
    ):
        return None
    if os.environ.get("WANDB_MODE") == "disabled":
        return None
    import wandb as wb

    init = logger.get("init_args") or {}
    run = wb.run
    if run is None:
        run = wb.init(
            project=init.get("project"),
            entity=init.get("entity"),
            group=init.get("group"),
            dir=init.get("save_dir"),
            name="summary",
            job_type="pac-summary",
            config={"task": summary["task"], "out": summary["out"]},
        )
    sides = ("target", "source")
    rows = summary["stages"].values()
    columns = sorted({f"{side}/{k}" for row in rows for side in sides for k in row.get(side, {})})
    data = []
    metrics: dict[str, Any] = {}
    for stage, row in summary["stages"].items():
        cells = [row.get(c.split("/", 1)[0], {}).get(c.split("/", 1)[1]) for c in columns]
        data.append([stage, *cells])
        for column, value in zip(columns, cells, strict=True):
            if value is not None:
                metrics[f"summary/{_slug(stage)}/{column}"] = value
        if "source_outputs_identical" in row:
            metrics[f"summary/{_slug(stage)}/source_outputs_identical"] = bool(
                row["source_outputs_identical"]
            )
    run.log({"pac/summary": wb.Table(columns=["stage", *columns], data=data)})
    run.summary.update(metrics)
    run_id = run.id
    run.finish()
    return run_id


def run_pipeline(
    task: str,
    out: str | Path | None = None,
    baselines: Sequence[str] = ("finetune",),
    epochs_scale: float = 1.0,
    config_dir: str | None = None,
    wandb: bool = True,
    extra_args: Sequence[str] = (),
    fresh: bool = False,
    artifacts: bool = False,
    lam: float | None = None,
    amount: float | None = None,
) -> dict[str, Any]:
    """Runs source (prune + allocate), calibrate and ``baselines``; returns the summary.

    With W&B (``wandb=True`` and a ``WandbLogger`` in the configs) every stage that runs logs to
    a W&B run of its own, and the summary goes to W&B too (:func:`log_summary_wandb`); under a
    ``wandb agent`` (a sweep) all stages and the summary share the agent's run.

    Args:
        task: Name of a directory under ``configs/pac`` (``friedman``, ``digits``, ``duffing``).
        out: Output directory (default ``runs/pac/<task>``).
        baselines: Any of ``finetune``, ``l2sp``, ``scratch``, ``linear_probe``.
        epochs_scale: Multiplies every stage's ``max_epochs`` (and the pruning epoch).
        config_dir: Directory of the stage configs (default ``configs/pac/<task>`` in the
            working directory if it exists, else the shipped ``pac/<task>``).
        wandb: Keep the configs' ``WandbLogger`` (else ``logger: false``).
        extra_args: Extra LightningCLI arguments given to every stage.
        fresh: Start ``out`` clean instead of resuming the stages an earlier run finished.
        artifacts: Add :class:`~pl_pac_trs.pac.WandbArtifacts` to every stage (checkpoints and
            masks as W&B artifacts, the source checkpoint as the input of the later stages);
            needs ``wandb``.
        lam: Overrides the calibrate stage's ``GradientMask`` λ (for sweeps).
        amount: Overrides the source stage's ``MagnitudePruning`` amount (for sweeps).

    Returns:
        ``{"task", "out", "stages": {stage: {"target": {...}, "source": {...}}}, "resumed",
        ...}``.
    """
    bad = [b for b in baselines if b not in BASELINES]
    if bad:
        raise ValueError(f"unknown baseline {bad[0]!r}; choose from {', '.join(BASELINES)}")
    scale_ok = isinstance(epochs_scale, (int, float)) and not isinstance(epochs_scale, bool)
    if not scale_ok or not math.isfinite(epochs_scale) or epochs_scale <= 0:
        raise ValueError(f"epochs_scale must be a finite number > 0, got {epochs_scale!r}")
    lam, amount = _check_lam(lam), _check_amount(amount)
    if artifacts and not wandb:
        raise ValueError("pac pipeline: --artifacts logs to W&B; drop --no-wandb")
    cdir = _config_dir(task, config_dir)
    for stage in ("calibrate", *baselines):
        if not (cdir / f"{stage}.yaml").is_file():
            raise FileNotFoundError(f"pac pipeline: missing stage config {cdir / stage}.yaml")
    out = Path(out or Path("runs") / "pac" / task)
    out.mkdir(parents=True, exist_ok=True)
    removed = _start_clean(out) if fresh else 0
    for partial in out.glob("*.partial"):  # left by a run killed while writing
        partial.unlink()
    records = _StageRecords(out, fresh)
    started = time.perf_counter()
    stages: dict[str, dict[str, Any]] = {}
    extra = list(extra_args)

    def stage_cfg(stage: str) -> dict[str, Any]:
        cfg = _resolve_config(cdir / f"{stage}.yaml", out, stage, epochs_scale, wandb)
        if lam is not None and stage == "calibrate":
            _set_callback_arg(cfg, "GradientMask", "lam", lam, "--lam")
        if amount is not None and stage == "source":
            _set_callback_arg(cfg, "MagnitudePruning", "amount", amount, "--amount")
        if artifacts:
            callbacks = cfg["trainer"].get("callbacks") or []
            cfg["trainer"]["callbacks"] = [
                *callbacks,
                {
                    "class_path": "pl_pac_trs.pac.WandbArtifacts",
                    "init_args": {"stage": stage, "prefix": _slug(out.name) or "pac"},
                },
            ]
        return cfg

    # 1. source: dense -> prune -> allocate (one fit)
    cfg = stage_cfg("source")
    key = records.key(cfg, extra)
    inputs, outputs = _stage_files(cfg, out, "source")
    dense_path = out / "source_dense.ckpt"
    context: dict[str, Any] = {}
    rows = records.finished("source", key, inputs, outputs)
    if rows is None:
        records.forget("source")
        src = _fit(cfg, out, "source", extra)
        save_checkpoint_atomic(src.trainer, out / "source.ckpt")
        context.update(trainer=src.trainer, model=src.model, datamodule=src.datamodule)
        rows = {}
        if dense_path.is_file():
            dense = copy.deepcopy(src.model)
            dense.load_state_dict(source_state_dict(dense_path))
            rows["source (dense)"] = {"source": _test(src.trainer, dense, src.datamodule)}
        rows["source (pruned + allocated)"] = {
            "source": _test(src.trainer, src.model, src.datamodule)
        }
        records.record("source", key, inputs, outputs, rows)
        _end_stage_run()
    stages.update(rows)

    def source_context() -> dict[str, Any]:
        """The allocated source model, its data and a trainer to test with (rebuilt on resume)."""
        if not context:
            built = _fit(cfg, out, "source", [*extra, "--trainer.logger=false"], run=False)
            built.model.load_state_dict(source_state_dict(out / "source.ckpt"))
            context.update(trainer=built.trainer, model=built.model, datamodule=built.datamodule)
        return context

    # 2. calibrate, and the source task recovered from the calibrated model
    cfg_cal = stage_cfg("calibrate")
    key = records.key(cfg_cal, extra)
    inputs, outputs = _stage_files(cfg_cal, out, "calibrate")
    rows = records.finished("calibrate", key, inputs, outputs)
    if rows is None:
        records.forget("calibrate")
        cal = _fit(cfg_cal, out, "calibrate", extra)
        save_checkpoint_atomic(cal.trainer, out / "calibrate.ckpt")
        row = {"target": _target_metrics(cal.trainer, cal.model, cal.datamodule)}
        masks = load_masks(out / "source.ckpt")
        state = source_state_dict(out / "source.ckpt")
        src_ctx = source_context()
        with source_view(cal.model, masks, source_state=state):
            row["source"] = _test(cal.trainer, cal.model, src_ctx["datamodule"])
            row["source_outputs_identical"] = _identical(
                src_ctx["model"], cal.model, src_ctx["datamodule"]
            )
        rows = {"PAC-Net (calibrate)": row}
        records.record("calibrate", key, inputs, outputs, rows)
        _end_stage_run()
    stages.update(rows)

    # 3. baselines, with the source head put back for the source metrics
    for name in baselines:
        cfg_b = stage_cfg(name)
        key = records.key(cfg_b, extra)
        inputs, outputs = _stage_files(cfg_b, out, name)
        rows = records.finished(name, key, inputs, outputs)
        if rows is None:
            records.forget(name)
            run = _fit(cfg_b, out, name, extra)
            save_checkpoint_atomic(run.trainer, out / f"{name}.ckpt")
            row = {"target": _target_metrics(run.trainer, run.model, run.datamodule)}
            src_ctx = source_context()
            head = _head_state(run, dense_path) if dense_path.is_file() else {}
            needs_head = head or _head_shape_differs(run.model, src_ctx["model"])
            if not needs_head or head:
                with source_view(run.model, {}, source_state=head):
                    row["source"] = _test(run.trainer, run.model, src_ctx["datamodule"])
            rows = {name: row}
            records.record(name, key, inputs, outputs, rows)
            _end_stage_run()
        stages.update(rows)

    if fresh:
        note = f"started clean (--fresh; removed {removed} earlier entries)"
    elif records.resumed:
        note = (
            f"resumed: {', '.join(records.resumed)} finished earlier with the same config and "
            f"inputs; ran: {', '.join(records.ran) or 'nothing'}"
        )
    elif records.earlier:
        note = "ran every stage again: the earlier run's configs, overrides or inputs differ"
    else:
        note = "new run: no finished stage to resume"
    print(f"pac pipeline ({out}): {note}", flush=True)
    summary = {
        "task": task,
        "out": str(out),
        "seconds": round(time.perf_counter() - started, 1),
        "resumed": records.resumed,
        "stages": stages,
    }
    _write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    _write_atomic(out / "summary.md", summary_markdown(summary))
    if wandb:
        try:
            log_summary_wandb(summary, cfg)
        except Exception as err:  # the results are on disk: W&B trouble is a warning here
            print(f"pac pipeline: summary not logged to W&B: {err}", file=sys.stderr)
    return summary


def _head_shape_differs(model, source_model) -> bool:
    a, b = model.state_dict(), source_model.state_dict()
    return any(k in b and a[k].shape != b[k].shape for k in a)


def _identical(source_model, model, datamodule) -> bool:
    """Whether ``model`` (inside ``source_view``) equals the allocated source model bit for bit:
    every state entry, and the outputs on the source test set when batches are ``(x, y)``."""
    own = model.state_dict()
    for name, value in source_model.state_dict().items():
        if name not in own or not torch.equal(own[name].cpu(), value.cpu()):
            return False
    was = (source_model.training, model.training)
    source_model.eval()
    model.eval()
    same = True
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            if not (isinstance(batch, (list, tuple)) and isinstance(batch[0], torch.Tensor)):
                break  # a structured batch: the state comparison above decides
            x = batch[0].to(model.device)
            same &= torch.equal(source_model.to(model.device)(x), model(x))
    source_model.train(was[0])
    model.train(was[1])
    return bool(same)


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a markdown table: one row per stage, target and source test metrics."""
    keys = sorted(
        {
            f"{side}:{k}"
            for row in summary["stages"].values()
            for side in ("target", "source")
            for k in row.get(side, {})
        }
    )
    lines = [
        f"# PAC-Net pipeline: {summary['task']} ({summary['seconds']} s)",
        "",
        "| stage | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for stage, row in summary["stages"].items():
        cells = []
        for key in keys:
            side, metric = key.split(":", 1)
            value = row.get(side, {}).get(metric)
            cells.append("" if value is None else f"{value:.4f}")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    flags = [s for s, r in summary["stages"].items() if "source_outputs_identical" in r]
    for stage in flags:
        ok = summary["stages"][stage]["source_outputs_identical"]
        lines.append("")
        lines.append(
            f"{stage}: source outputs with calibrated weights zeroed are "
            f"{'bit-identical to' if ok else 'DIFFERENT from'} the allocated source model."
        )
    return "\n".join(lines) + "\n"


class _Parser(argparse.ArgumentParser):
    """Errors as two lines (the message, a ``--help`` tip) instead of the usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n(options: {self.prog} --help)\n")


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _lam_arg(text: str) -> float:
    try:
        return _check_lam(float(text))  # type: ignore[return-value]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}") from err


def _amount_arg(text: str) -> float:
    try:
        return _check_amount(float(text))  # type: ignore[return-value]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text!r}") from err


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="pl-pac-trs pac",
        description="Run the PAC-Net pipeline (source: dense + prune + allocate; calibrate; "
        "baselines) for a task from configs/pac/<task>/ (the working directory's, else the "
        "shipped ones) and summarise source/target metrics.",
    )
    tasks = ", ".join(sorted(p.name for p in (configs_root() / "pac").iterdir() if p.is_dir()))
    p.add_argument("task", help=f"task name: a directory of configs/pac ({tasks})")
    p.add_argument("--out", default=None, help="output directory (default runs/pac/<task>)")
    p.add_argument(
        "--baselines",
        default="finetune",
        help=f"comma-separated baselines from {','.join(BASELINES)}; 'all' or 'none'",
    )
    p.add_argument("--epochs-scale", type=_scale, default=1.0, help="multiply all max_epochs")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="start the output directory clean instead of resuming finished stages",
    )
    p.add_argument("--config-dir", default=None, help="directory with the stage configs")
    p.add_argument("--no-wandb", action="store_true", help="run without the WandbLogger")
    p.add_argument(
        "--artifacts",
        action="store_true",
        help="log every stage's checkpoint and masks as W&B artifacts, with their lineage",
    )
    p.add_argument("--lam", type=_lam_arg, default=None, help="calibrate's λ (GradientMask lam)")
    p.add_argument(
        "--amount", type=_amount_arg, default=None, help="source's pruned share (0 <= a < 1)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ARG=VALUE",
        help="extra LightningCLI argument for every stage, e.g. --set trainer.accelerator=cpu",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``pl-pac-trs pac`` entry point. Returns 0 on success."""
    from pl_pac_trs.runs import ensure_wandb_mode

    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    ensure_wandb_mode()
    if args.baselines == "all":
        baselines: Sequence[str] = BASELINES
    elif args.baselines in ("", "none"):
        baselines = ()
    else:
        baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    extra = [f"--{item}" if not item.startswith("--") else item for item in args.set]
    summary = run_pipeline(
        args.task,
        out=args.out,
        baselines=baselines,
        epochs_scale=args.epochs_scale,
        config_dir=args.config_dir,
        wandb=not args.no_wandb,
        extra_args=extra,
        fresh=args.fresh,
        artifacts=args.artifacts,
        lam=args.lam,
        amount=args.amount,
    )
    print(summary_markdown(summary), flush=True)
    print(f"written: {summary['out']}/summary.json, summary.md and the stage checkpoints")
    return 0


def demo(out: str | Path = "runs/pac/demo", epochs_scale: float = 0.35) -> dict[str, Any]:
    """``make demo``: the Friedman pipeline on a small budget, PAC-Net vs fine-tuning.

    Prints the target MSE of PAC-Net and of fine-tuning and the source MSE PAC-Net retains
    (equal to the allocated source model's, bit for bit).
    """
    summary = run_pipeline(
        "friedman", out=out, baselines=("finetune",), epochs_scale=epochs_scale, wandb=False
    )
    st = summary["stages"]
    pac, ft = st["PAC-Net (calibrate)"], st["finetune"]
    lines = [
        "PAC-Net demo: Friedman #1 transfer (50 target samples), test MSE (standardised units)",
        f"  target  PAC-Net     {pac['target']['test/mse']:.4f}",
        f"  target  fine-tuning {ft['target']['test/mse']:.4f}",
        f"  source  PAC-Net (calibrated weights zeroed) {pac['source']['test/mse']:.4f}"
        f"  (allocated source model: "
        f"{st['source (pruned + allocated)']['source']['test/mse']:.4f}, "
        f"identical outputs: {pac['source_outputs_identical']})",
        f"  source  fine-tuned model {ft.get('source', {}).get('test/mse', float('nan')):.4f}"
        f"  (dense source model: "
        f"{st.get('source (dense)', {}).get('source', {}).get('test/mse', float('nan')):.4f})",
        f"  ({summary['seconds']} s; details in {summary['out']}/summary.md)",
    ]
    print("\n".join(lines), flush=True)
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
