"""PAC-Net reproduction: target error of PAC-Net and the baselines, source retention, two sweeps.

Every seed runs the whole pipeline (:func:`pl_pac_trs.apps.pipeline.run_pipeline`: source fit with
pruning + allocate, calibrate, and the baselines scratch / finetune / linear_probe / l2sp) with
``--seed_everything=<seed>`` given to every stage. The data keep the configs' seeds (Friedman
``data_seed`` 0, task seeds 0/1; digits split seed, the same for ``digits`` (small CNN) and
``digits_resnet`` (over-parameterised ResNet); Duffing train seed 0 / test seed 999), so the
seeds vary the model initialisation and the batch order only.

Outputs ``pac.json`` / ``pac.md`` and, for the sweeps on Friedman, ``pac/sweep_n_target.png`` and
``pac/sweep_pruning.png``.

Budgets: ``full`` = the shipped epochs (``epochs_scale`` 1); ``ci`` = :data:`CI_SCALE` per task;
``smoke`` = a tiny scale for the tests.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    fmt_mean_std,
    machine,
    markdown_table,
    mean_std,
    read_job_log,
    write_outputs,
)
from benchmarks.pac_costs import CostProbes, stage_costs

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "pac"
TASKS = ("friedman", "digits", "digits_resnet", "duffing")
METHODS = {  # summary stage name -> row label (the run with the shipped, validation-chosen configs)
    "scratch": "scratch",
    "finetune": "fine-tuning",
    "linear_probe": "linear probe",
    "l2sp": "L2-SP (ours: every weight but the head)",
    "lora": "LoRA (validation-chosen rank, alpha, lr)",
    "PAC-Net (calibrate)": "PAC-Net (validation-chosen settings)",
}
#: The baselines every seed runs beside PAC-Net.
BASELINE_STAGES = ("scratch", "finetune", "linear_probe", "l2sp", "lora")
#: Pipeline stage -> summary stage name, for the costs (benchmarks.pac_costs).
COST_STAGES = {"calibrate": "PAC-Net (calibrate)", **{b: b for b in BASELINE_STAGES}}
PAPER_METHODS = {  # ... and in the run with the paper's settings
    "PAC-Net (calibrate)": "PAC-Net (paper: 0.8 layer-wise, λ=0.01)",
    "l2sp": "L2-SP (paper: conv layers, λ=0.01)",
}
#: L2-SP as the paper applies it: strength 0.01 on the convolution layers only (tasks with any).
PAPER_L2SP = {"L2SP": {"lam": 0.01, "module_types": ["torch.nn.Conv2d"]}}
CONV_TASKS = ("digits", "digits_resnet")
#: Target metric per task: (test metric key, label, transform to an error, lower is better).
METRICS = {
    "friedman": ("test/mse", "test MSE (standardised y)", lambda v: v),
    "digits": ("test/acc", "test error (1 - accuracy)", lambda v: 1.0 - v),
    "digits_resnet": ("test/acc", "test error (1 - accuracy)", lambda v: 1.0 - v),
    "duffing": ("test/traj_mse", "trajectory MSE x1e2", lambda v: v),
}
CI_SCALE = {"friedman": 0.35, "digits": 0.3, "digits_resnet": 0.5, "duffing": 0.15}
SMOKE_SCALE = 0.02
SWEEP_N_TARGET = (10, 30, 100, 300)
SWEEP_PRUNING = (0.5, 0.7, 0.8, 0.9, 0.95)
BUDGETS = ("ci", "full", "smoke")
EMPTY = "n/a"  # as benchmarks.common.fmt_mean_std writes an empty cell


def scale_for(task: str, budget: str) -> float:
    """``epochs_scale`` of a task under a budget."""
    return {"full": 1.0, "ci": CI_SCALE.get(task, 0.3), "smoke": SMOKE_SCALE}[budget]


def _metric(task: str, metrics: dict[str, float]) -> float | None:
    key, _, transform = METRICS[task]
    return transform(metrics[key]) if key in metrics else None


def _pipeline(
    task, out, baselines, scale, seed, extra=(), amount=None, callback_args=None, probes=None
) -> dict[str, Any]:
    from pl_pac_trs.apps.pipeline import run_pipeline

    args = [f"--seed_everything={seed}", *extra]
    return run_pipeline(
        task,
        out=out,
        baselines=baselines,
        epochs_scale=scale,
        amount=amount,
        wandb=False,
        extra_args=args,
        callback_args=callback_args,
        stage_callbacks=probes,
    )


def _paper_run(task, out, scale, seed) -> dict[str, Any]:
    """PAC-Net with the paper's settings (and, on image tasks, the paper's L2-SP)."""
    from pl_pac_trs.apps.pipeline import PAPER_SETTINGS

    conv = task in CONV_TASKS
    args = {**PAPER_SETTINGS, **({"l2sp": PAPER_L2SP} if conv else {})}
    return _pipeline(task, out, ("l2sp",) if conv else (), scale, seed, callback_args=args)


def extract(task: str, summary: dict[str, Any], paper: dict[str, Any] | None = None):
    """Target error per method, source metric of each stage, and the bit-identity flags."""
    row: dict[str, Any] = {"target": {}, "source": {}}
    runs = [(summary, METHODS)] + ([(paper, PAPER_METHODS)] if paper else [])
    for result, methods in runs:
        st = result["stages"]
        for stage, label in methods.items():
            if stage in st and "target" in st[stage]:
                row["target"][label] = _metric(task, st[stage]["target"])
            if stage in st and "source" in st[stage]:
                row["source"][label] = _metric(task, st[stage]["source"])
    st = summary["stages"]
    for stage in (
        "source (dense)",
        "source (dense, whole source budget)",
        "source (pruned + allocated)",
    ):
        if stage in st:
            row["source"][stage] = _metric(task, st[stage]["source"])
    flags = [r["stages"]["PAC-Net (calibrate)"].get("source_outputs_identical") for r, _ in runs]
    row["identical"] = all(bool(f) for f in flags)
    if "lora" in st:
        row["lora_identical"] = bool(st["lora"].get("source_outputs_identical"))
    return row


def run(
    tasks: Sequence[str] = TASKS,
    budget: str = "ci",
    seeds: int = 5,
    out: str | Path = "docs/results",
    work: str | Path = "runs/bench/pac",
    sweeps: bool = True,
    sweep_seeds: int | None = None,
    progress: bool = True,
    paper: bool = True,
) -> dict[str, Any]:
    """Runs the PAC-Net pipeline on ``tasks`` for ``seeds`` seeds, and the Friedman sweeps.

    Args:
        tasks: Task directories of ``configs/pac``.
        budget: ``ci``, ``full`` or ``smoke``.
        seeds: Seeds of the main comparison (0 .. seeds-1).
        out: Where ``pac.json``, ``pac.md`` and the sweep plots go.
        work: Scratch directory (pipeline outputs and checkpoints).
        sweeps: Run the target-count and pruning-ratio sweeps on Friedman.
        sweep_seeds: Seeds per sweep point (default: ``min(seeds, 3)``).
        progress: Show tqdm progress bars.
        paper: Also run PAC-Net (and, on image tasks, L2-SP) with the paper's settings.

    Returns:
        The JSON payload.
    """
    from tqdm.auto import tqdm

    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}")
    bad = [t for t in tasks if t not in METRICS or not (CONFIGS / t / "source.yaml").is_file()]
    if bad:
        raise ValueError(f"unknown PAC task {bad[0]!r}; choose from {TASKS}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    out, work = Path(out), Path(work)
    started = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    jobs = [(t, s) for t in tasks for s in range(seeds)]
    bar = tqdm(jobs, desc=f"pac {budget}", disable=not progress, unit="pipeline")
    log = work / "pac_runs.jsonl"  # one line per finished (task, seed): a killed run resumes
    done = _read_log(log)
    for task, seed in bar:
        bar.set_postfix_str(f"{task} seed {seed}")
        if (task, seed, budget) in done:
            runs.setdefault(task, []).append(done[(task, seed, budget)])
            continue
        scale = scale_for(task, budget)
        probes = CostProbes()
        try:
            summary = _pipeline(
                task, work / task / f"seed{seed}", BASELINE_STAGES, scale, seed, probes=probes
            )
            paper_summary = (
                _paper_run(task, work / task / f"seed{seed}_paper", scale, seed) if paper else None
            )
        except Exception as exc:  # a task that does not run is reported, not hidden
            errors[task] = f"{type(exc).__name__}: {exc}"
            continue
        row = {"seed": seed, **extract(task, summary, paper_summary)}
        costs = stage_costs(work / task / f"seed{seed}", probes, COST_STAGES)
        row["costs"] = {METHODS[k]: v for k, v in costs.items()}
        work.mkdir(parents=True, exist_ok=True)
        with log.open("a") as f:
            f.write(json.dumps({"task": task, "budget": budget, **row}) + "\n")
        runs.setdefault(task, []).append(row)

    payload: dict[str, Any] = {
        "budget": budget,
        "seeds": list(range(seeds)),
        "epochs_scale": {t: scale_for(t, budget) for t in tasks},
        "machine": machine(),
        "metrics": {t: METRICS[t][1] for t in tasks},
        "runs": runs,
        "errors": errors,
        "summary": summarise(runs),
    }
    if sweeps and "friedman" in tasks:
        n_sweep = sweep_seeds or min(seeds, 3)
        payload["sweeps"] = run_sweeps(budget, n_sweep, out, work / "sweeps", progress)
    payload["seconds_total"] = round(time.perf_counter() - started, 1)
    write_outputs(out, "pac", payload, to_markdown(payload))
    return payload


def _read_log(log: Path) -> dict[tuple[str, int, str], dict[str, Any]]:
    done = {}
    for entry in read_job_log(log):
        done[(entry.pop("task"), entry["seed"], entry.pop("budget"))] = entry
    return done


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Mean/std over seeds of every target and source entry; identity flags all true?"""
    summary: dict[str, Any] = {}
    for task, rows in runs.items():
        entry: dict[str, Any] = {"target": {}, "source": {}}
        for side in ("target", "source"):
            labels = list(dict.fromkeys(k for r in rows for k in r[side]))
            for label in labels:
                values = [r[side][label] for r in rows if r[side].get(label) is not None]
                m, s = mean_std(values)
                entry[side][label] = {"mean": m, "std": s, "values": values}
        entry["identical_all_seeds"] = all(r["identical"] for r in rows)
        lora_flags = [r["lora_identical"] for r in rows if "lora_identical" in r]
        if lora_flags:
            entry["lora_identical_all_seeds"] = all(lora_flags)
        costs: dict[str, dict[str, list[float]]] = {}
        for r in rows:
            for label, cost in (r.get("costs") or {}).items():
                for key, value in cost.items():
                    if value is not None:
                        costs.setdefault(label, {}).setdefault(key, []).append(value)
        if costs:
            entry["costs"] = costs
        summary[task] = entry
    return summary


def run_sweeps(
    budget: str, seeds: int, out: Path, work: Path, progress: bool = True
) -> dict[str, Any]:
    """Friedman: PAC-Net vs fine-tuning over target sample count and over pruning ratio."""
    from tqdm.auto import tqdm

    scale = scale_for("friedman", budget)
    n_values = SWEEP_N_TARGET if budget != "smoke" else SWEEP_N_TARGET[:2]
    p_values = SWEEP_PRUNING if budget != "smoke" else SWEEP_PRUNING[:2]
    jobs = [("n_target", n, s) for n in n_values for s in range(seeds)]
    jobs += [("pruning", p, s) for p in p_values for s in range(seeds)]
    result: dict[str, dict[str, dict[str, list[float]]]] = {"n_target": {}, "pruning": {}}
    bar = tqdm(jobs, desc="pac sweeps (friedman)", disable=not progress, unit="pipeline")
    for kind, value, seed in bar:
        bar.set_postfix_str(f"{kind}={value} seed {seed}")
        tag = f"{kind}{value}_seed{seed}"
        if kind == "n_target":
            summary = _pipeline(
                "friedman",
                work / tag,
                ("finetune",),
                scale,
                seed,
                extra=[f"--data.init_args.n_target={value}"],
            )
        else:
            summary = _pipeline("friedman", work / tag, ("finetune",), scale, seed, amount=value)
        row = extract("friedman", summary)
        point = result[kind].setdefault(str(value), {"PAC-Net": [], "fine-tuning": []})
        point["PAC-Net"].append(row["target"][METHODS["PAC-Net (calibrate)"]])
        point["fine-tuning"].append(row["target"]["fine-tuning"])
    plot_sweeps(result, out / "pac")
    return {"seeds": list(range(seeds)), "epochs_scale": scale, **result}


def plot_sweeps(result: dict[str, Any], dest: Path) -> list[Path]:
    """``sweep_n_target.png`` and ``sweep_pruning.png``: mean ± std error bars per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    labels = {"n_target": "target samples", "pruning": "pruning ratio (PAC-Net)"}
    for kind, points in result.items():
        if not points:
            continue
        xs = [float(x) for x in points]
        fig, ax = plt.subplots(figsize=(4.2, 3.0), dpi=90)
        for method in ("PAC-Net", "fine-tuning"):
            stats = [mean_std(points[x][method]) for x in points]
            ax.errorbar(
                xs, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", label=method
            )
        if kind == "n_target":
            ax.set_xscale("log")
        ax.set_xlabel(labels[kind])
        ax.set_ylabel("Friedman target test MSE")
        ax.legend()
        fig.tight_layout()
        path = dest / f"sweep_{kind}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def main_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows = method, columns = task (target error, mean ± std over seeds)."""
    tasks = list(summary)
    header = ["method", *[f"{t}: {METRICS[t][1]}" for t in tasks]]
    rows = []
    for label in [*METHODS.values(), *PAPER_METHODS.values()]:
        row = [label]
        for task in tasks:
            cell = summary[task]["target"].get(label)
            row.append(fmt_mean_std(cell["values"]) if cell and cell["values"] else EMPTY)
        rows.append(row)
    return header, rows


def source_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Source-task metric of the source models and of each transferred model."""
    tasks = list(summary)
    header = ["model evaluated on the source task", *tasks]
    pac, paper = METHODS["PAC-Net (calibrate)"], PAPER_METHODS["PAC-Net (calibrate)"]
    order = [
        ("source (dense)", "dense source model at pruning time"),
        ("source (dense, whole source budget)", "dense source model, whole source budget"),
        ("source (pruned + allocated)", "pruned + allocated source model"),
        (pac, f"{pac} after calibration (calibrated weights zeroed)"),
        (paper, f"{paper} after calibration (calibrated weights zeroed)"),
        ("fine-tuning", "fine-tuned (forgetting)"),
        (METHODS["l2sp"], f"{METHODS['l2sp']} (forgetting)"),
        (METHODS["lora"], f"{METHODS['lora']} with the adapters disabled"),
    ]
    rows = []
    for key, label in order:
        row = [label]
        for task in tasks:
            cell = summary[task]["source"].get(key)
            row.append(fmt_mean_std(cell["values"]) if cell and cell["values"] else EMPTY)
        rows.append(row)
    rows.append(
        ["PAC-Net source outputs bit-identical (all seeds)"]
        + [str(summary[t]["identical_all_seeds"]) for t in tasks]
    )
    if any("lora_identical_all_seeds" in summary[t] for t in tasks):
        rows.append(
            ["LoRA source outputs (adapters disabled) bit-identical to the dense source"]
            + [str(summary[t].get("lora_identical_all_seeds", EMPTY)) for t in tasks]
        )
    return header, rows


def cost_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per method and task: trainable parameters, bytes to keep both tasks (source and target),
    training step time (ms: the median over seeds of each fit's median step, and the seeds'
    range), all measured in the same runs."""
    tasks = [t for t in summary if summary[t].get("costs")]
    header = ["method", *[f"{t}: trainable / both tasks / step" for t in tasks]]
    rows = []
    for label in METHODS.values():
        row = [label]
        for task in tasks:
            cost = summary[task]["costs"].get(label)
            if not cost:
                row.append(EMPTY)
                continue
            params = statistics.median(cost["trainable"])
            kib = statistics.median(cost["bytes_both"]) / 1024
            steps = cost.get("step_ms") or []
            step = (
                f"{statistics.median(steps):.3g} ms ({min(steps):.3g}-{max(steps):.3g})"
                if steps
                else EMPTY
            )
            row.append(f"{params:,.0f} / {kib:,.1f} KiB / {step}")
        rows.append(row)
    return header, rows


def paired_table(runs: dict[str, list[dict[str, Any]]]) -> tuple[list[str], list[list[str]]]:
    """PAC-Net (chosen settings) minus each baseline on the target, paired by seed (the same
    data, source model and seed): mean ± std of the differences (negative: PAC-Net better) and
    on how many seeds PAC-Net was strictly better."""
    pac = METHODS["PAC-Net (calibrate)"]
    baselines = [label for key, label in METHODS.items() if key != "PAC-Net (calibrate)"]
    tasks = list(runs)
    header = ["PAC-Net minus", *tasks]
    rows = []
    for label in baselines:
        row = [label]
        for task in tasks:
            pairs = [
                (r["target"][pac], r["target"][label])
                for r in runs[task]
                if r["target"].get(pac) is not None and r["target"].get(label) is not None
            ]
            diffs = [a - b for a, b in pairs]
            wins = sum(a < b for a, b in pairs)
            row.append(f"{fmt_mean_std(diffs)} ({wins}/{len(diffs)})" if diffs else EMPTY)
        rows.append(row)
    return header, rows


def sweep_table(sweep: dict[str, Any], kind: str) -> tuple[list[str], list[list[str]]]:
    points = sweep[kind]
    header = [kind, "PAC-Net", "fine-tuning"]
    rows = [
        [x, fmt_mean_std(p["PAC-Net"]), fmt_mean_std(p["fine-tuning"])] for x, p in points.items()
    ]
    return header, rows


def to_markdown(payload: dict[str, Any]) -> str:
    n = len(payload["seeds"])
    lines = [
        f"# PAC-Net reproduction ({payload['budget']} budget, {n} seeds)",
        "",
        f"epochs_scale per task: {payload['epochs_scale']}",
        "",
        "## Target task (lower is better), mean ± std over seeds",
        "",
        markdown_table(*main_table(payload["summary"])),
        "",
        "## PAC-Net minus each baseline, paired by seed (mean ± std; seeds PAC-Net won)",
        "",
        markdown_table(*paired_table(payload["runs"])),
        "",
        "## Source task after transfer (same metric, on the source test set)",
        "",
        markdown_table(*source_table(payload["summary"])),
    ]
    if any(payload["summary"][t].get("costs") for t in payload["summary"]):
        lines += [
            "",
            "## Costs: trainable parameters / bytes to keep both tasks / step time (median over"
            " seeds, range)",
            "",
            markdown_table(*cost_table(payload["summary"])),
        ]
    if payload["errors"]:
        lines += ["", "## Tasks that failed", ""]
        lines += [f"- {t}: {e}" for t, e in payload["errors"].items()]
    if "sweeps" in payload:
        sw = payload["sweeps"]
        lines += [
            "",
            f"## Friedman sweeps ({len(sw['seeds'])} seeds, target test MSE)",
            "",
            markdown_table(*sweep_table(sw, "n_target")),
            "",
            markdown_table(*sweep_table(sw, "pruning")),
        ]
    lines += ["", f"Total {payload['seconds_total']} s."]
    return "\n".join(lines) + "\n"
