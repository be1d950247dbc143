"""Runs the PAC-Net pipeline's stages in order: :func:`run_pipeline` (see the package docs).

Checkpoints written: ``source_dense.ckpt`` (before pruning), ``source.ckpt`` (pruned and
allocated, carries the masks) and ``calibrate.ckpt`` (the target model), plus ``<baseline>.ckpt``.

Every file is written under a temporary name and then renamed, so a killed run never leaves a
truncated checkpoint or summary. ``config_<stage>.yaml`` is the stage's fully resolved config,
``--set`` overrides included (``pl-pac-trs fit --config config_<stage>.yaml`` re-runs it).
``pipeline_state.json`` records, for every finished stage, a SHA-256 of its config file, the
pipeline's overrides and the ``--set`` arguments, of its input checkpoints and of its outputs,
and its test metrics. A re-run into the
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

import copy
import importlib.util
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback

from pl_pac_trs.apps.pipeline.evaluate import (
    SPLITS,
    head_shape_differs,
    head_state,
    outputs_identical,
    source_metrics,
    target_metrics,
)
from pl_pac_trs.apps.pipeline.records import PipelineStage, StageRecords, start_clean
from pl_pac_trs.apps.pipeline.stage import StageOverrides, callback_names, write_atomic
from pl_pac_trs.apps.pipeline.summary import log_summary_wandb, slug, summary_markdown
from pl_pac_trs.configs import configs_root
from pl_pac_trs.pac import (
    WandbArtifacts,
    check_amount,
    check_strength,
    checkpoint_state_dict,
    source_view,
    state_swapped,
)
from pl_pac_trs.pac.lora import adapters_disabled, base_state_dict, is_adapted

__all__ = ["BASELINES", "run_pipeline"]

BASELINES = ("finetune", "l2sp", "scratch", "linear_probe", "lora")
#: The paper's stated values (pruning ratio 0.8, λ = 0.01 on ``sum(w_r ** 2)``; its "LWM" rule read
#: as layer-wise magnitude) with calibrate's shared parameters frozen: ``pl-pac-trs pac --settings
#: paper``. The shipped configs carry the settings chosen on validation (docs/pac.md).
PAPER_SETTINGS = {
    "source": {"MagnitudePruning": {"amount": 0.8, "pruning_fn": "layer"}},
    "calibrate": {"GradientMask": {"lam": 0.01, "penalty_norm": "sum", "train_shared": False}},
}
#: Left out of the source config for the dense, whole-budget source model of ``equal_budget``.
_PAC_SOURCE_CALLBACKS = ("MagnitudePruning", "GradientMask")


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


def _check_lam(lam: Any) -> float | None:
    return None if lam is None else check_strength("lam", lam)


def _check_amount(amount: Any) -> float | None:
    return None if amount is None else check_amount(amount)


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
    callback_args: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    split: str = "test",
    equal_budget: bool = True,
    stage_callbacks: Callable[[str], Sequence[Callback]] | None = None,
) -> dict[str, Any]:
    """Runs source (prune + allocate), calibrate and ``baselines``; returns the summary.

    With W&B (``wandb=True`` and a ``WandbLogger`` in the configs) every stage that runs logs to
    a W&B run of its own, and the summary goes to W&B too (:func:`log_summary_wandb`); under a
    ``wandb agent`` (a sweep) all stages and the summary share the agent's run.

    Args:
        task: Name of a directory under ``configs/pac`` (``friedman``, ``digits``, ``duffing``).
        out: Output directory (default ``runs/pac/<task>``).
        baselines: Any of ``finetune``, ``l2sp``, ``scratch``, ``linear_probe``, ``lora``
            (``peft`` LoRA adapters; its source metrics are taken with the adapters disabled).
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
        callback_args: ``{stage: {callback class name: {argument: value}}}`` set on the stage
            configs' callbacks, e.g. ``{"calibrate": {"GradientMask": {"lam": 0.1}}}``
            (``lam`` and ``amount`` are short for two of these).
        split: ``"test"``: validation and test metrics; ``"val"``: validation metrics only (the
            source task's too), so that settings can be chosen without touching a test split.
        equal_budget: The baselines start from a dense source model trained for the source
            stage's whole budget (stage ``dense``: the source config without pruning and
            allocate, ``dense.ckpt``), so PAC-Net and the baselines see the same number of source
            epochs; ``False``: from the dense model saved when pruning (``source_dense.ckpt``).
        stage_callbacks: Extra callbacks for a stage, by stage name (e.g. step timers); they
            are part of what a stage's record is keyed on.

    Returns:
        ``{"task", "out", "stages": {stage: {"target": {...}, "source": {...}}}, "resumed",
        ...}``.
    """
    bad = [b for b in baselines if b not in BASELINES]
    if bad:
        raise ValueError(f"unknown baseline {bad[0]!r}; choose from {', '.join(BASELINES)}")
    if "lora" in baselines and importlib.util.find_spec("peft") is None:
        raise ValueError("baseline 'lora' needs peft: pip install 'pl-pac-trs[peft]'")
    scale_ok = isinstance(epochs_scale, (int, float)) and not isinstance(epochs_scale, bool)
    if not scale_ok or not math.isfinite(epochs_scale) or epochs_scale <= 0:
        raise ValueError(f"epochs_scale must be a finite number > 0, got {epochs_scale!r}")
    lam, amount = _check_lam(lam), _check_amount(amount)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if artifacts and not wandb:
        raise ValueError("pac pipeline: --artifacts logs to W&B; drop --no-wandb")
    cdir = _config_dir(task, config_dir)
    for stage in ("calibrate", *baselines):
        if not (cdir / f"{stage}.yaml").is_file():
            raise FileNotFoundError(f"pac pipeline: missing stage config {cdir / stage}.yaml")
    out = Path(out or Path("runs") / "pac" / task)
    out.mkdir(parents=True, exist_ok=True)
    removed = start_clean(out) if fresh else 0
    for partial in out.glob("*.partial"):  # left by a run killed while writing
        partial.unlink()
    records = StageRecords(out, fresh)
    started = time.perf_counter()
    stages: dict[str, dict[str, Any]] = {}
    extra = list(extra_args)
    args = _stage_callback_args(callback_args, lam, amount)

    def stage(name: str, config: str | None = None, drop: tuple[str, ...] = ()) -> PipelineStage:
        added = [WandbArtifacts(stage=name, prefix=slug(out.name) or "pac")] if artifacts else []
        added += list(stage_callbacks(name)) if stage_callbacks is not None else []
        overrides = StageOverrides(
            out=out,
            root_dir=out / name,
            epochs_scale=epochs_scale,
            wandb=wandb,
            callback_args=args.get(name, {}),
            extra_callbacks=added,
            drop_callbacks=drop,
            run_name=name,
        )
        return PipelineStage(name, cdir / f"{config or name}.yaml", overrides, extra, records)

    # 1. source: dense -> prune -> allocate (one fit)
    source = stage("source")
    dense_path = out / "source_dense.ckpt"
    context: dict[str, Any] = {}
    rows = source.finished()
    if rows is None:
        src = source.fit()
        context.update(trainer=src.trainer, model=src.model, datamodule=src.datamodule)
        rows = {}
        if dense_path.is_file():
            dense = copy.deepcopy(src.model)
            dense.load_state_dict(checkpoint_state_dict(dense_path))
            rows["source (dense)"] = {
                "source": source_metrics(src.trainer, dense, src.datamodule, split)
            }
        rows["source (pruned + allocated)"] = {
            "source": source_metrics(src.trainer, src.model, src.datamodule, split)
        }
        source.record(rows)
    stages.update(rows)

    def source_context() -> dict[str, Any]:
        """The allocated source model, its data and a trainer to test with (rebuilt on resume)."""
        if not context:
            built = source.build()
            built.model.load_state_dict(checkpoint_state_dict(out / "source.ckpt"))
            context.update(trainer=built.trainer, model=built.model, datamodule=built.datamodule)
        return context

    # 2. calibrate, and the source task recovered from the calibrated model
    calibrate = stage("calibrate")
    rows = calibrate.finished()
    if rows is None:
        cal = calibrate.fit()
        row = {"target": target_metrics(cal.trainer, cal.model, cal.datamodule, split)}
        src_ctx = source_context()
        with source_view(cal.model):  # from the model's PAC-Net state (in calibrate.ckpt too)
            row["source"] = source_metrics(cal.trainer, cal.model, src_ctx["datamodule"], split)
            row["source_outputs_identical"] = outputs_identical(
                src_ctx["model"], cal.model, src_ctx["datamodule"], split
            )
        rows = {"PAC-Net (calibrate)": row}
        calibrate.record(rows)
    stages.update(rows)

    # 3. equal source budgets: a dense source model trained for the source stage's epochs
    baseline_source = dense_path
    if equal_budget and baselines:
        final = args.setdefault("dense", {}).setdefault("FinalCheckpoint", {})
        final["path"] = str(out / "dense.ckpt")
        dense_stage = stage("dense", config="source", drop=_PAC_SOURCE_CALLBACKS)
        rows = dense_stage.finished()
        if rows is None:
            fitted = dense_stage.fit()
            metrics = source_metrics(fitted.trainer, fitted.model, fitted.datamodule, split)
            rows = {"source (dense, whole source budget)": {"source": metrics}}
            dense_stage.record(rows)
        stages.update(rows)
        baseline_source = out / "dense.ckpt"
        for name in baselines:
            config = yaml.safe_load((cdir / f"{name}.yaml").read_text()) or {}
            if "LoadSourceWeights" in callback_names(config):
                loader = args.setdefault(name, {}).setdefault("LoadSourceWeights", {})
                loader["checkpoint"] = str(baseline_source)

    # 4. baselines, with the source head put back for the source metrics
    for name in baselines:
        baseline = stage(name)
        rows = baseline.finished()
        if rows is None:
            run = baseline.fit()
            row = {"target": target_metrics(run.trainer, run.model, run.datamodule, split)}
            src_ctx = source_context()
            has_source = baseline_source.is_file()
            head = head_state(run.trainer, baseline_source) if has_source else {}
            needs_head = head or head_shape_differs(run.model, src_ctx["model"])
            if not needs_head or head:
                adapted = is_adapted(run.model)  # LoRA: the source is the model, adapters off
                off = adapters_disabled(run.model) if adapted else nullcontext()
                with off, state_swapped(run.model, head):
                    row["source"] = source_metrics(
                        run.trainer, run.model, src_ctx["datamodule"], split
                    )
                    if adapted and has_source:
                        row["source_outputs_identical"] = _base_identical(
                            src_ctx, baseline_source, run.model, split
                        )
            rows = {name: row}
            baseline.record(rows)
        stages.update(rows)

    print(f"pac pipeline ({out}): {_resume_note(records, fresh, removed)}", flush=True)
    summary = {
        "task": task,
        "out": str(out),
        "seconds": round(time.perf_counter() - started, 1),
        "resumed": records.resumed,
        "stages": stages,
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    write_atomic(out / "summary.md", summary_markdown(summary))
    if wandb:
        try:
            log_summary_wandb(summary, _logger_config(cdir / "calibrate.yaml", out))
        except Exception as err:  # the results are on disk: W&B trouble is a warning here
            print(f"pac pipeline: summary not logged to W&B: {err}", file=sys.stderr)
    return summary


def _base_identical(src_ctx: dict[str, Any], checkpoint: Path, model: Any, split: str) -> bool:
    """Whether ``model`` (adapters disabled, source head back) is the source model it started
    from (``checkpoint``) bit for bit: every entry, and its outputs on the source ``split``."""
    source = copy.deepcopy(src_ctx["model"])
    source.load_state_dict(checkpoint_state_dict(checkpoint))
    return outputs_identical(
        source, model, src_ctx["datamodule"], split, state=base_state_dict(model)
    )


def _stage_callback_args(callback_args, lam, amount) -> dict[str, dict[str, dict[str, Any]]]:
    args = {s: {c: dict(v) for c, v in cbs.items()} for s, cbs in (callback_args or {}).items()}
    if lam is not None:
        args.setdefault("calibrate", {}).setdefault("GradientMask", {})["lam"] = lam
    if amount is not None:
        args.setdefault("source", {}).setdefault("MagnitudePruning", {})["amount"] = amount
    return args


def _logger_config(config: Path, out: Path) -> dict[str, Any]:
    """A stage config's logger, saving under ``out`` (where the summary run is logged)."""
    logger = ((yaml.safe_load(config.read_text()) or {}).get("trainer") or {}).get("logger")
    if isinstance(logger, dict):
        logger = {**logger, "init_args": {**(logger.get("init_args") or {}), "save_dir": str(out)}}
    return {"trainer": {"logger": logger}}


def _resume_note(records: StageRecords, fresh: bool, removed: int) -> str:
    if fresh:
        return f"started clean (--fresh; removed {removed} earlier entries)"
    if records.resumed:
        return (
            f"resumed: {', '.join(records.resumed)} finished earlier with the same config and "
            f"inputs; ran: {', '.join(records.ran) or 'nothing'}"
        )
    if records.earlier:
        return "ran every stage again: the earlier run's configs, overrides or inputs differ"
    return "new run: no finished stage to resume"
