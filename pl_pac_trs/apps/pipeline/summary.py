"""The pipeline's summary: a markdown table, and a W&B table with flat summary metrics."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["SIDES", "log_summary_wandb", "slug", "stage_table", "summary_markdown"]

SIDES = ("target", "source")
"""The two tasks a stage is evaluated on."""


def slug(text: str) -> str:
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
    rows = summary["stages"].values()
    columns = sorted({f"{side}/{k}" for row in rows for side in SIDES for k in row.get(side, {})})
    data = []
    metrics: dict[str, Any] = {}
    for stage, row in summary["stages"].items():
        cells = [row.get(c.split("/", 1)[0], {}).get(c.split("/", 1)[1]) for c in columns]
        data.append([stage, *cells])
        for column, value in zip(columns, cells, strict=True):
            if value is not None:
                metrics[f"summary/{slug(stage)}/{column}"] = value
        if "source_outputs_identical" in row:
            metrics[f"summary/{slug(stage)}/source_outputs_identical"] = bool(
                row["source_outputs_identical"]
            )
    run.log({"pac/summary": wb.Table(columns=["stage", *columns], data=data)})
    run.summary.update(metrics)
    run_id = run.id
    run.finish()
    return run_id


def stage_table(title: str, stages: dict[str, Any], cell: Callable[[Any], str]) -> list[str]:
    """A markdown title and table: one row per stage, one column per ``side:metric``, each
    value written by ``cell``."""
    keys = sorted({f"{s}:{m}" for row in stages.values() for s in SIDES for m in row.get(s, {})})
    lines = [title, "", "| stage | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for stage, row in stages.items():
        values = [row.get(k.split(":", 1)[0], {}).get(k.split(":", 1)[1]) for k in keys]
        cells = ["" if v is None else cell(v) for v in values]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return lines


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a markdown table: one row per stage, target and source metrics."""
    title = f"# PAC-Net pipeline: {summary['task']} ({summary['seconds']} s)"
    lines = stage_table(title, summary["stages"], lambda v: f"{v:.4f}")
    flags = [s for s, r in summary["stages"].items() if "source_outputs_identical" in r]
    for stage in flags:
        ok = summary["stages"][stage]["source_outputs_identical"]
        same = "bit-identical to" if ok else "DIFFERENT from"
        lines.append("")
        if stage == "lora":
            lines.append(
                f"{stage}: source outputs with the adapters disabled are {same} the dense "
                "source model it started from."
            )
        else:
            lines.append(
                f"{stage}: source outputs with calibrated weights zeroed are {same} the "
                "allocated source model."
            )
    return "\n".join(lines) + "\n"
