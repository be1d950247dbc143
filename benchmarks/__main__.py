"""``python -m benchmarks {trs,pac,speed,all} --budget {ci,full} --seeds N --out DIR``.

Reproduces the TRS-ODEN and PAC-Net experiments and collects the speed benchmarks, writing JSON +
markdown into ``--out`` (default ``docs/results``). See ``docs/results.md``.

``python -m benchmarks trs_study --budget {smoke,ci,full} --seeds N --out DIR --workers K``: when
does TRS-ODEN help, on five systems outside the paper's (:mod:`benchmarks.trs_study`; resumable,
results written as each job finishes; default ``--out docs/results/trs_study``).

``python -m benchmarks gpu [--device cuda] [--budget full|smoke] [--out DIR]``: the GPU checks of
:mod:`benchmarks.gpu` (one report, ``gpu.json`` / ``gpu.md``; under 8 minutes on one GPU; not
part of ``all``). Exits non-zero when one of its checks fails.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import quiet
from benchmarks.reproduce_pac import TASKS as PAC_TASKS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=f"Reproduce TRS-ODEN (exps I-VI) and PAC-Net ({', '.join(PAC_TASKS)}) and "
        "collect speed ratios; results as JSON + markdown.",
    )
    p.add_argument("suite", choices=("trs", "pac", "speed", "all", "gpu", "trs_study"))
    p.add_argument(
        "--budget",
        choices=("ci", "full", "smoke"),
        default=None,
        help="ci: quick configs, ~20 min TRS / ~15 min PAC on 2 CPU cores; full: the reference "
        "configs (GPU advised); smoke: seconds, for the tests (default ci; gpu suite: full "
        "or smoke, default full)",
    )
    p.add_argument(
        "--device",
        default="cuda",
        help="gpu suite: the device, cuda[:N] or cpu (default cuda; cpu with --budget smoke is "
        "the suite's CPU smoke test)",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="model seeds (default: 3 for trs, 5 for pac)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results directory (default docs/results; trs_study: docs/results/trs_study)",
    )
    p.add_argument("--work", type=Path, default=Path("runs/bench"), help="scratch directory")
    p.add_argument(
        "--experiments",
        default="1,2,3,4,5,6",
        help="TRS experiments, comma-separated (default all)",
    )
    p.add_argument(
        "--conditions",
        default=None,
        help="TRS conditions, comma-separated (e.g. oden,trs_oden; default all)",
    )
    p.add_argument("--tasks", default=",".join(PAC_TASKS), help="PAC tasks, comma-separated")
    p.add_argument("--no-sweeps", action="store_true", help="skip the PAC Friedman sweeps")
    p.add_argument(
        "--no-paper",
        action="store_true",
        help="pac suite: skip the run with the paper's settings (PAC-Net and L2-SP (paper) rows)",
    )
    p.add_argument("--sweep-seeds", type=int, default=None, help="seeds per PAC sweep point")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the small models here run faster on one thread, "
        "and much faster when other processes share the cores)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="trs and trs_study suites: fits (jobs) at once, each in its own one-thread process "
        "(default 1)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="trs suite: keep the fits already in the job log (<work>/trs/<budget>_runs.jsonl)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="trs and trs_study suites: run nothing, report the fits in the job log (missing "
        "cells stay empty)",
    )
    p.add_argument(
        "--systems",
        default=None,
        help="trs_study: systems, comma-separated (default all five)",
    )
    p.add_argument("--name", default=None, help="trs suite: stem of the output files (default trs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 on success."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.seeds is not None and args.seeds < 1:
        raise SystemExit(f"--seeds must be >= 1, got {args.seeds}")
    if args.workers < 1:
        raise SystemExit(f"--workers must be >= 1, got {args.workers}")
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    os.environ.setdefault("WANDB_MODE", "disabled")  # bench runs log nothing to W&B
    import torch

    torch.set_num_threads(args.threads)
    quiet()
    progress = not args.no_progress
    if args.suite == "trs_study":
        from benchmarks import trs_study

        out = args.out or Path("docs/results/trs_study")
        try:
            payload = trs_study.run(
                args.budget or "ci",
                args.seeds or 3,
                out,
                args.work / "trs_study",
                workers=args.workers,
                systems=args.systems.split(",") if args.systems else None,
                progress=progress,
                report_only=args.report_only,
            )
        except ValueError as err:  # bad input, found before anything runs
            print(f"python -m benchmarks trs_study: error: {err}", file=sys.stderr)
            return 2
        print(trs_study.to_markdown(payload), flush=True)
        print(f"written: {out / trs_study.NAME}.json, .md, _runs.jsonl", flush=True)
        return 0
    args.out = args.out or Path("docs/results")
    if args.suite == "gpu":
        from benchmarks import gpu

        if args.budget == "ci":
            raise SystemExit("the gpu suite has the budgets full and smoke, not ci")
        payload = gpu.run(
            args.device, args.out, args.work / "gpu", args.budget or "full", progress=progress
        )
        print(gpu.to_markdown(payload), flush=True)
        print(f"written: {args.out / 'gpu'}.json, {args.out / 'gpu'}.md", flush=True)
        return 1 if payload["failed"] else 0
    args.budget = args.budget or "ci"
    suites = ("trs", "pac", "speed") if args.suite == "all" else (args.suite,)
    for suite in suites:
        if suite == "trs":
            from benchmarks import reproduce_trs

            exps = [int(e) for e in args.experiments.split(",") if e.strip()]
            payload = reproduce_trs.run(
                exps,
                args.budget,
                args.seeds or 3,
                args.out,
                args.work / "trs",
                progress=progress,
                conditions=args.conditions.split(",") if args.conditions else None,
                workers=args.workers,
                resume=args.resume,
                name=args.name or "trs",
                report_only=args.report_only,
            )
            print(reproduce_trs.to_markdown(payload), flush=True)
        elif suite == "pac":
            from benchmarks import reproduce_pac

            tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
            payload = reproduce_pac.run(
                tasks,
                args.budget,
                args.seeds or 5,
                args.out,
                args.work / "pac",
                sweeps=not args.no_sweeps,
                sweep_seeds=args.sweep_seeds,
                progress=progress,
                paper=not args.no_paper,
            )
            print(reproduce_pac.to_markdown(payload), flush=True)
        else:
            from benchmarks import speed

            payload = speed.run(args.out, args.work / "speed", args.budget, progress=progress)
            print(speed.to_markdown(payload), flush=True)
        stem = args.out / (args.name if suite == "trs" and args.name else suite)
        print(f"written: {stem}.json, {stem}.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
