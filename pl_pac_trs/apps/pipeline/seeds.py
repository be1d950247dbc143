"""The pipeline over several seeds: one run per seed, and their mean ± std per stage and metric."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pl_pac_trs.apps.pipeline.run import run_pipeline
from pl_pac_trs.apps.pipeline.stage import write_atomic
from pl_pac_trs.apps.pipeline.summary import SIDES, stage_table

__all__ = ["aggregate", "run_seeds", "seeds_markdown"]


def aggregate(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sample std (0 for one seed) and values of every stage's metrics over ``summaries``.

    Example::

        >>> row = lambda v: {"stages": {"finetune": {"target": {"test/mse": v}}}}
        >>> out = aggregate([row(1.0), row(3.0)])["finetune"]["target"]["test/mse"]
        >>> out["mean"], round(out["std"], 4), out["values"]
        (2.0, 1.4142, [1.0, 3.0])
    """
    stages: dict[str, Any] = {}
    for summary in summaries:
        for stage, row in summary["stages"].items():
            for side in SIDES:
                for metric, value in (row.get(side) or {}).items():
                    cell = stages.setdefault(stage, {}).setdefault(side, {}).setdefault(metric, [])
                    cell.append(float(value))
    return {
        stage: {
            side: {
                metric: {
                    "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "values": values,
                }
                for metric, values in metrics.items()
            }
            for side, metrics in sides.items()
        }
        for stage, sides in stages.items()
    }


def seeds_markdown(result: dict[str, Any]) -> str:
    """The aggregate as a markdown table: one row per stage, ``mean ± std`` per metric."""
    title = f"# PAC-Net pipeline: {result['task']}, seeds {result['seeds']} (mean ± std)"
    lines = stage_table(title, result["stages"], lambda c: f"{c['mean']:.4f} ± {c['std']:.4f}")
    flags = result.get("source_outputs_identical")
    if flags is not None:
        lines += ["", f"PAC-Net source outputs bit-identical to the allocated model: {flags}"]
    return "\n".join(lines) + "\n"


def run_seeds(
    task: str,
    seeds: Sequence[int],
    out: str | Path | None = None,
    extra_args: Sequence[str] = (),
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`~pl_pac_trs.apps.pipeline.run.run_pipeline` once per seed (``--seed_everything``)
    into ``out/seed<k>``; writes ``summary_seeds.json`` / ``.md`` in ``out`` and returns them.

    Args:
        task: As for ``run_pipeline``.
        seeds: The seeds (model initialisation and batch order; the data keep their own seeds).
        out: Output directory (default ``runs/pac/<task>``).
        extra_args: Extra LightningCLI arguments for every stage of every seed.
        **kwargs: Further ``run_pipeline`` arguments.

    Raises:
        ValueError: No seeds, or a seed repeated.
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    out = Path(out or Path("runs") / "pac" / task)
    summaries = [
        run_pipeline(
            task,
            out=out / f"seed{seed}",
            extra_args=[*extra_args, f"--seed_everything={seed}"],
            **kwargs,
        )
        for seed in seeds
    ]
    flags = [
        s["stages"]["PAC-Net (calibrate)"].get("source_outputs_identical")
        for s in summaries
        if "PAC-Net (calibrate)" in s["stages"]
    ]
    result = {
        "task": task,
        "out": str(out),
        "seeds": seeds,
        "stages": aggregate(summaries),
        "source_outputs_identical": all(flags) if flags else None,
    }
    write_atomic(out / "summary_seeds.json", json.dumps(result, indent=2))
    write_atomic(out / "summary_seeds.md", seeds_markdown(result))
    return result
