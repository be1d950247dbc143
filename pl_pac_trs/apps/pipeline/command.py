"""``pl-pac-trs pac TASK`` (argument parsing) and the PAC part of ``make demo``."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pl_pac_trs.apps.pipeline.run import (
    BASELINES,
    PAPER_SETTINGS,
    _check_amount,
    _check_lam,
    run_pipeline,
)
from pl_pac_trs.apps.pipeline.seeds import run_seeds, seeds_markdown
from pl_pac_trs.apps.pipeline.summary import summary_markdown
from pl_pac_trs.apps.runs import ensure_wandb_mode
from pl_pac_trs.configs import configs_root

__all__ = ["demo", "main"]


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


def build_parser() -> argparse.ArgumentParser:
    """The ``pl-pac-trs pac`` argument parser."""
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
    p.add_argument(
        "--seeds",
        type=_count,
        default=1,
        help="run seeds 0..N-1 (--seed_everything) into <out>/seed<k> and report mean ± std",
    )
    p.add_argument(
        "--settings",
        choices=("default", "paper"),
        default="default",
        help="default: the shipped configs' settings (chosen on validation, docs/pac.md); "
        "paper: pruning 0.8 layer-wise, calibrate λ=0.01 on sum(w_r^2), shared parameters frozen",
    )
    p.add_argument(
        "--dense-at-pruning",
        action="store_true",
        help="baselines start from the dense model saved at pruning time instead of a dense "
        "model trained for the whole source budget",
    )
    p.add_argument(
        "--val-only",
        action="store_true",
        help="evaluate validation splits only (for choosing settings; no test metric is computed)",
    )
    return p


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """``pl-pac-trs pac`` entry point. Returns 0 on success."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    ensure_wandb_mode()
    if args.baselines == "all":
        baselines: Sequence[str] = BASELINES
    elif args.baselines in ("", "none"):
        baselines = ()
    else:
        baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    extra = [f"--{item}" if not item.startswith("--") else item for item in args.set]
    kwargs = dict(
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
        callback_args=PAPER_SETTINGS if args.settings == "paper" else None,
        split="val" if args.val_only else "test",
        equal_budget=not args.dense_at_pruning,
    )
    if args.seeds > 1:
        result = run_seeds(args.task, range(args.seeds), **kwargs)
        print(seeds_markdown(result), flush=True)
        print(f"written: {result['out']}/summary_seeds.json, summary_seeds.md, seed*/")
        return 0
    summary = run_pipeline(args.task, **kwargs)
    print(summary_markdown(summary), flush=True)
    print(f"written: {summary['out']}/summary.json, summary.md and the stage checkpoints")
    return 0


def _dense_source_mse(stages: dict[str, Any]) -> float:
    for name in ("source (dense, whole source budget)", "source (dense)"):
        if name in stages:
            return stages[name]["source"]["test/mse"]
    return float("nan")


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
        f"  (dense source model it started from: {_dense_source_mse(st):.4f})",
        f"  ({summary['seconds']} s; details in {summary['out']}/summary.md)",
    ]
    print("\n".join(lines), flush=True)
    return summary
