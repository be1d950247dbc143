"""PAC-Net ablation on validation splits only: the choices the paper leaves open, measured.

One factor at a time around the base setting (global magnitude ranking, pruning ratio 0.8,
calibrate λ = 0.01 on ``sum(w_r^2)``, biases/normalisation frozen in calibrate):

* ``scope``: ``global`` vs ``layer`` (the paper's "LWM", most likely layer-wise magnitude);
* ``shared``: calibrate's biases/normalisation ``frozen`` vs ``trained`` (the source is then
  recovered from the source checkpoint's values, :func:`~pl_pac_trs.pac.source_view`);
* ``penalty``: ``sum`` (the paper's form) and ``mean`` (scale-free) over a λ grid each;
* ``amount``: the pruning ratio.

Every setting runs the pipeline (:func:`pl_pac_trs.apps.pipeline.run_pipeline`) with
``split="val"``: no test split is evaluated, so nothing here can select on test data. Settings
sharing a source stage (same ranking and ratio) share its fit (the pipeline resumes it). For
reference, fine-tuning and L2-SP run once per task and seed from the equal-budget dense source.

    python -m benchmarks.pac_ablation --budget ci --seeds 3 --out docs/results
    python -m benchmarks.pac_ablation --tasks friedman --seeds 1 --budget smoke --out /tmp/abl

Writes ``pac_ablation.json`` / ``pac_ablation.md`` and ``pac/ablation_<task>.png``; the job log
``<work>/ablation_runs.jsonl`` (one line per finished setting) lets a killed run resume.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import machine, markdown_table, quiet, read_job_log
from benchmarks.reproduce_pac import TASKS, scale_for

#: Validation metric per task: (key, label, transform to an error, lower is better).
VAL_METRICS = {
    "friedman": ("val/mse", "val MSE (standardised y)", lambda v: v),
    "digits": ("val/acc", "val error (1 - accuracy)", lambda v: 1.0 - v),
    "digits_resnet": ("val/acc", "val error (1 - accuracy)", lambda v: 1.0 - v),
    "duffing": ("val/ode", "val rollout loss (ODE term)", lambda v: v),
}
BASE = {"scope": "global", "amount": 0.8, "lam": 0.01, "penalty_norm": "sum", "shared": "frozen"}
LAMS = {"sum": (0.0, 0.001, 0.01, 0.1, 1.0), "mean": (0.1, 1.0, 10.0, 100.0)}
AMOUNTS = (0.5, 0.7, 0.8, 0.9, 0.95)


def settings() -> list[dict[str, Any]]:
    """The ablation's settings: the base, then one factor changed at a time (no repeats)."""
    out = [dict(BASE)]
    out.append({**BASE, "scope": "layer"})
    out.append({**BASE, "shared": "trained"})
    out += [{**BASE, "amount": a} for a in AMOUNTS]
    out += [
        {**BASE, "penalty_norm": norm, "lam": lam} for norm, lams in LAMS.items() for lam in lams
    ]
    unique: list[dict[str, Any]] = []
    for setting in out:
        if setting not in unique:
            unique.append(setting)
    return unique


def callback_args(setting: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """A setting as the pipeline's ``callback_args``."""
    return {
        "source": {
            "MagnitudePruning": {"amount": setting["amount"], "pruning_fn": setting["scope"]}
        },
        "calibrate": {
            "GradientMask": {
                "lam": setting["lam"],
                "penalty_norm": setting["penalty_norm"],
                "train_shared": setting["shared"] == "trained",
            }
        },
    }


def label(setting: dict[str, Any]) -> str:
    """A setting's short name: what differs from the base (``base`` for the base)."""
    diff = [
        f"{k}={setting[k]}"
        for k in ("scope", "shared", "amount", "penalty_norm", "lam")
        if setting[k] != BASE[k]
    ]
    if setting["penalty_norm"] != BASE["penalty_norm"] and setting["lam"] == BASE["lam"]:
        diff.append(f"lam={setting['lam']}")
    return ", ".join(diff) or "base"


def _error(task: str, metrics: dict[str, float]) -> float | None:
    key, _, transform = VAL_METRICS[task]
    return transform(metrics[key]) if key in metrics else None


def run_setting(task, seed, setting, work, scale, baselines=()) -> dict[str, Any]:
    """One pipeline run on validation splits; PAC-Net's target error and source retention."""
    from pl_pac_trs.apps.pipeline import run_pipeline

    started = time.perf_counter()
    source_dir = work / task / f"seed{seed}" / f"{setting['scope']}_{setting['amount']}"
    summary = run_pipeline(
        task,
        out=source_dir,
        baselines=baselines,
        epochs_scale=scale,
        wandb=False,
        extra_args=[f"--seed_everything={seed}"],
        callback_args=callback_args(setting),
        split="val",
    )
    stages = summary["stages"]
    pac = stages["PAC-Net (calibrate)"]
    row = {
        "task": task,
        "seed": seed,
        "setting": setting,
        "label": label(setting),
        "target": _error(task, pac["target"]),
        "source": _error(task, pac.get("source", {})),
        "source_allocated": _error(task, stages["source (pruned + allocated)"]["source"]),
        "identical": pac.get("source_outputs_identical"),
    }
    for name in baselines:
        row[name] = _error(task, stages[name]["target"])
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def combined(cells: dict[str, Any]) -> dict[str, Any] | None:
    """Stage 2: the base with every factor's best level that beat the base by more than the
    base's seed std (``None`` when fewer than two factors did: nothing new to combine)."""
    base = cells["base"]
    margin = base["target_std"]
    chosen: dict[str, Any] = {}
    helped = 0  # factors whose best level is adopted (penalty form and λ count as one)
    for factors in (("scope",), ("shared",), ("amount",), ("penalty_norm", "lam")):
        others = [k for k in BASE if k not in factors]
        levels = [
            c
            for k, c in cells.items()
            if not k.startswith("_") and all(c["setting"][o] == BASE[o] for o in others)
        ]
        top = min(levels, key=lambda c: c["target_mean"])
        if top["target_mean"] < base["target_mean"] - margin:
            chosen.update({f: top["setting"][f] for f in factors})
            helped += 1
    return {**BASE, **chosen} if helped > 1 else None


def run(tasks, seeds, budget, work: Path, log: Path) -> list[dict[str, Any]]:
    """Every (task, seed, setting), resuming the settings the job log already holds; then, per
    task, the combination of the factor levels that helped (stage 2, see :func:`combined`)."""
    done = {(r["task"], r["seed"], r["label"]): r for r in read_job_log(log)}
    rows = []
    for task in tasks:
        scale = scale_for(task, budget)
        for seed in range(seeds):
            for i, setting in enumerate(settings()):
                key = (task, seed, label(setting))
                if key in done:
                    rows.append(done[key])
                    continue
                baselines = ("finetune", "l2sp") if i == 0 else ()
                rows.append(_logged(log, run_setting(task, seed, setting, work, scale, baselines)))
        stage2 = combined(summarise([r for r in rows if r["task"] == task])[task])
        for seed in range(seeds) if stage2 else ():
            key = (task, seed, label(stage2))
            if key in done:
                rows.append(done[key])
            else:
                rows.append(_logged(log, run_setting(task, seed, stage2, work, scale)))
    return rows


def _logged(log: Path, row: dict[str, Any]) -> dict[str, Any]:
    with log.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(
        f"{row['task']} seed {row['seed']} {row['label']}: target {row['target']:.4f}", flush=True
    )
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task and setting: mean and std over seeds of the target error and source retention."""
    out: dict[str, Any] = {}
    for row in rows:
        cell = out.setdefault(row["task"], {}).setdefault(
            row["label"], {"setting": row["setting"], "target": [], "source": [], "identical": []}
        )
        cell["target"].append(row["target"])
        cell["source"].append(row["source"])
        cell["identical"].append(bool(row["identical"]))
        for name in ("finetune", "l2sp"):
            if name in row:
                out[row["task"]].setdefault(f"_{name}", []).append(row[name])
    for cells in out.values():
        for name, cell in cells.items():
            if name.startswith("_"):
                continue
            for side in ("target", "source"):
                values = [v for v in cell[side] if v is not None]
                cell[f"{side}_mean"] = statistics.fmean(values) if values else None
                cell[f"{side}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def best(cells: dict[str, Any], setting_filter=lambda s: True) -> str:
    """The label with the lowest mean validation target error among the matching settings."""
    labels = [k for k, c in cells.items() if not k.startswith("_") and setting_filter(c["setting"])]
    return min(labels, key=lambda k: cells[k]["target_mean"])


def to_markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# PAC-Net ablation (validation splits only)",
        "",
        f"`python -m benchmarks.pac_ablation --budget {meta['budget']} --seeds {meta['seeds']}`; "
        + ", ".join(f"{k}={v}" for k, v in meta["machine"].items()),
        "",
    ]
    for task, cells in summary.items():
        _, metric, _ = VAL_METRICS[task]
        headers = ["setting", f"PAC-Net target {metric}", "source after transfer", "bit-exact"]
        table = []
        for name, cell in cells.items():
            if name.startswith("_"):
                continue
            table.append(
                [
                    name,
                    f"{cell['target_mean']:.4f} ± {cell['target_std']:.4f}",
                    f"{cell['source_mean']:.4f} ± {cell['source_std']:.4f}",
                    str(all(cell["identical"])),
                ]
            )
        for name in ("finetune", "l2sp"):
            values = cells.get(f"_{name}")
            if values:
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                table.append([name, f"{statistics.fmean(values):.4f} ± {std:.4f}", "", ""])
        lines += [f"## {task}", "", markdown_table(headers, table), ""]
        lines.append(f"Best (lowest mean validation error): **{best(cells)}**.")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict[str, Any], dest: Path) -> list[Path]:
    """Per task: validation error against λ (sum, mean) and against the pruning ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for task, cells in summary.items():
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for norm in ("sum", "mean"):
            pts = sorted(
                (c["setting"]["lam"], c["target_mean"], c["target_std"])
                for k, c in cells.items()
                if not k.startswith("_")
                and c["setting"]["penalty_norm"] == norm
                and {**c["setting"], "lam": BASE["lam"], "penalty_norm": "sum"} == BASE
            )
            if pts:
                x = [max(p[0], 1e-4) for p in pts]
                axes[0].errorbar(
                    x, [p[1] for p in pts], [p[2] for p in pts], marker="o", label=norm
                )
        axes[0].set_xscale("log")
        axes[0].set_xlabel("λ (0 drawn at 1e-4)")
        axes[0].set_ylabel(VAL_METRICS[task][1])
        axes[0].legend(title="penalty")
        pts = sorted(
            (c["setting"]["amount"], c["target_mean"], c["target_std"])
            for k, c in cells.items()
            if not k.startswith("_") and {**c["setting"], "amount": BASE["amount"]} == BASE
        )
        axes[1].errorbar([p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts], marker="o")
        axes[1].set_xlabel("pruning ratio")
        for color, name in (("C1", "finetune"), ("C2", "l2sp")):
            if cells.get(f"_{name}"):
                mean = statistics.fmean(cells[f"_{name}"])
                axes[1].axhline(mean, ls="--", color=color, label=name)
        axes[1].legend()
        fig.suptitle(f"PAC-Net ablation, {task} (validation, mean ± std over seeds)")
        fig.tight_layout()
        path = dest / f"ablation_{task}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def grid_arguments(doc: str, work: str, budget: str) -> argparse.ArgumentParser:
    """The options of a validation-grid benchmark (this one, ``pac_lora``)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", choices=("ci", "full", "smoke"), default=budget)
    p.add_argument("--work", type=Path, default=Path(work))
    p.add_argument("--out", type=Path, default=Path("docs/results"))
    p.add_argument("--report-only", action="store_true", help="report the job log, run nothing")
    return p


def grid_tasks(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """``--tasks`` as a list, after checking it and ``--seeds`` (exit 2 otherwise)."""
    tasks = [t for t in args.tasks.split(",") if t]
    bad = [t for t in tasks if t not in VAL_METRICS]
    if bad or args.seeds < 1:
        p.error(f"--tasks from {','.join(VAL_METRICS)} and --seeds >= 1 (got {args.tasks!r})")
    return tasks


def main(argv: Sequence[str] | None = None) -> int:
    p = grid_arguments(__doc__, "runs/bench/pac_ablation", "ci")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    tasks = grid_tasks(p, args)
    quiet()
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "ablation_runs.jsonl"
    if args.report_only:
        rows = [r for r in read_job_log(log) if r["task"] in tasks and r["seed"] < args.seeds]
    else:
        rows = run(tasks, args.seeds, args.budget, args.work, log)
    summary = summarise(rows)
    meta = {"budget": args.budget, "seeds": args.seeds, "machine": machine()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pac_ablation.json").write_text(
        json.dumps({"meta": meta, "tasks": summary}, indent=1)
    )
    (args.out / "pac_ablation.md").write_text(to_markdown(summary, meta))
    plot(summary, args.out / "pac")
    print(to_markdown(summary, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
