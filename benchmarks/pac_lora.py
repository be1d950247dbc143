"""LoRA settings (rank, alpha, learning rate) chosen on validation splits only.

Stage 1: rank in :data:`RANKS` x learning rate in :data:`LR_FACTORS` times the task's
fine-tuning learning rate (``configs/pac/<task>/finetune.yaml``), alpha = 2 x rank. Stage 2: the
best cell with alpha = rank (half the scaling). The setting with the lowest mean validation error
over the seeds is chosen. Every cell runs the pipeline
(:func:`~pl_pac_trs.apps.pipeline.run_pipeline`) with ``split="val"`` and the ``lora`` baseline,
from the equal-budget dense source model of that seed (as the fair comparison does); the cells of
one seed share its source fits (the pipeline resumes them). Each cell's stage configs are the
shipped ones with ``lora.yaml`` changed (model ``lr``, ``LoRA`` ``rank`` / ``alpha``), written
under ``<work>/configs``.

    python -m benchmarks.pac_lora --tasks friedman --seeds 3 --budget full --work W --out O
    python -m benchmarks.pac_lora --tasks friedman --seeds 1 --budget smoke --work W --out O

Writes ``pac_lora_grid.json`` / ``.md`` to ``--out``; ``--write-configs`` puts the chosen setting
into ``configs/pac/<task>/lora.yaml``. The job log ``<work>/lora_grid.jsonl`` (one line per
finished cell) lets a killed run resume.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import machine, markdown_table, quiet, read_job_log
from benchmarks.pac_ablation import VAL_METRICS, grid_arguments, grid_tasks
from benchmarks.reproduce_pac import CONFIGS, scale_for

RANKS = (2, 4, 8)
LR_FACTORS = (1.0, 3.0, 10.0)


def model_lr(config: dict[str, Any]) -> float:
    """A stage config's learning rate: ``model.init_args.lr``, or its optimizer's
    (``model.init_args.optimizer.init_args.lr``)."""
    args = config["model"]["init_args"]
    return float(args["lr"] if "lr" in args else args["optimizer"]["init_args"]["lr"])


def base_lr(task: str, configs: Path = CONFIGS) -> float:
    """The task's fine-tuning learning rate (of ``finetune.yaml``)."""
    return model_lr(yaml.safe_load((configs / task / "finetune.yaml").read_text()))


def grid(task: str) -> list[dict[str, Any]]:
    """Stage 1's cells: rank x lr, alpha = 2 x rank."""
    lr0 = base_lr(task)
    return [{"rank": r, "alpha": 2 * r, "lr": round(lr0 * f, 6)} for r in RANKS for f in LR_FACTORS]


def label(setting: dict[str, Any]) -> str:
    return f"rank={setting['rank']}, alpha={setting['alpha']}, lr={setting['lr']}"


def lora_yaml(text: str, setting: dict[str, Any]) -> str:
    """``lora.yaml``'s text with the model ``lr`` and the LoRA ``rank`` / ``alpha`` replaced."""
    text = re.sub(r"(?m)^(    lr: |        lr: )\S+", rf"\g<1>{setting['lr']}", text, count=1)
    text = re.sub(r"(?m)^(        rank: )\S+", rf"\g<1>{setting['rank']}", text, count=1)
    text = re.sub(r"(?m)^(        alpha: )\S+", rf"\g<1>{setting['alpha']}", text, count=1)
    config = yaml.safe_load(text)
    lora = next(c for c in config["trainer"]["callbacks"] if c["class_path"].endswith(".LoRA"))
    assert model_lr(config) == setting["lr"]
    assert lora["init_args"]["rank"] == setting["rank"]
    assert lora["init_args"]["alpha"] == setting["alpha"]
    return text


def config_dir(task: str, setting: dict[str, Any], root: Path) -> Path:
    """The shipped stage configs of ``task`` with ``lora.yaml`` set to ``setting``."""
    dest = root / f"{task}_r{setting['rank']}_a{setting['alpha']}_lr{setting['lr']}" / task
    dest.mkdir(parents=True, exist_ok=True)
    for path in (CONFIGS / task).glob("*.yaml"):
        shutil.copyfile(path, dest / path.name)
    (dest / "lora.yaml").write_text(lora_yaml((CONFIGS / task / "lora.yaml").read_text(), setting))
    return dest


def run_cell(task, seed, setting, work: Path, budget: str) -> dict[str, Any]:
    from pl_pac_trs.apps.pipeline import run_pipeline

    started = time.perf_counter()
    summary = run_pipeline(
        task,
        out=work / task / f"seed{seed}",
        baselines=("lora",),
        epochs_scale=scale_for(task, budget),
        config_dir=str(config_dir(task, setting, work / "configs")),
        wandb=False,
        extra_args=[f"--seed_everything={seed}"],
        split="val",
    )
    key, _, transform = VAL_METRICS[task]
    lora = summary["stages"]["lora"]
    return {
        "task": task,
        "seed": seed,
        "budget": budget,
        "setting": setting,
        "label": label(setting),
        "val_error": transform(lora["target"][key]),
        "identical": bool(lora.get("source_outputs_identical")),
        "seconds": round(time.perf_counter() - started, 1),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task and setting: mean and std of the validation error over seeds."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        cell = out.setdefault(r["task"], {}).setdefault(
            r["label"], {"setting": r["setting"], "values": [], "identical": []}
        )
        cell["values"].append(r["val_error"])
        cell["identical"].append(r["identical"])
    for cells in out.values():
        for cell in cells.values():
            v = cell["values"]
            cell["mean"] = statistics.fmean(v)
            cell["std"] = statistics.stdev(v) if len(v) > 1 else 0.0
    return out


def best(cells: dict[str, Any], seeds: int) -> str:
    """The setting with the lowest mean validation error among those run on every seed."""
    full = {k: c for k, c in cells.items() if len(c["values"]) >= seeds}
    return min(full, key=lambda k: full[k]["mean"])


def run(tasks, seeds, budget, work: Path, log: Path, write_configs: bool) -> list[dict]:
    done = {(r["task"], r["seed"], r["label"], r["budget"]): r for r in read_job_log(log)}
    rows: list[dict[str, Any]] = []

    def cell(task, seed, setting):
        key = (task, seed, label(setting), budget)
        if key in done:
            return done[key]
        row = run_cell(task, seed, setting, work, budget)
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{task} seed {seed} {row['label']}: val {row['val_error']:.4f}", flush=True)
        return row

    for task in tasks:
        task_rows = [cell(task, s, st) for s in range(seeds) for st in grid(task)]
        first = summarise(task_rows)[task]
        chosen = first[best(first, seeds)]["setting"]
        half = {**chosen, "alpha": chosen["rank"]}
        task_rows += [cell(task, s, half) for s in range(seeds)]
        rows += task_rows
        if write_configs:
            final = summarise(task_rows)[task]
            setting = final[best(final, seeds)]["setting"]
            path = CONFIGS / task / "lora.yaml"
            path.write_text(lora_yaml(path.read_text(), setting))
            print(f"{task}: wrote {label(setting)} into {path}", flush=True)
    return rows


def to_markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# LoRA settings (validation splits only)",
        "",
        f"`python -m benchmarks.pac_lora --budget {meta['budget']} --seeds {meta['seeds']}`; "
        + ", ".join(f"{k}={v}" for k, v in meta["machine"].items()),
        "",
    ]
    for task, cells in summary.items():
        _, metric, _ = VAL_METRICS[task]
        table = [
            [name, f"{c['mean']:.4f} ± {c['std']:.4f}", str(all(c["identical"]))]
            for name, c in sorted(cells.items(), key=lambda kv: kv[1]["mean"])
        ]
        lines += [
            f"## {task}",
            "",
            markdown_table(["setting", f"LoRA target {metric}", "source bit-exact"], table),
            "",
            f"Chosen (lowest mean validation error): **{best(cells, meta['seeds'])}**.",
            "",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = grid_arguments(__doc__, "runs/bench/pac_lora", "full")
    p.add_argument("--write-configs", action="store_true", help="write the choice to lora.yaml")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    tasks = grid_tasks(p, args)
    quiet()
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "lora_grid.jsonl"
    if args.report_only:
        rows = [
            r
            for r in read_job_log(log)
            if r["task"] in tasks and r["seed"] < args.seeds and r["budget"] == args.budget
        ]
    else:
        rows = run(tasks, args.seeds, args.budget, args.work, log, args.write_configs)
    summary = summarise(rows)
    meta = {"budget": args.budget, "seeds": args.seeds, "machine": machine()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pac_lora_grid.json").write_text(
        json.dumps({"meta": meta, "tasks": summary}, indent=1)
    )
    (args.out / "pac_lora_grid.md").write_text(to_markdown(summary, meta))
    print(to_markdown(summary, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
