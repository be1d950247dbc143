"""The whole PAC-Net pipeline in one command: ``pl-pac-trs pac TASK``.

Runs the stage configs of ``configs/pac/TASK/`` in order -- ``source`` (dense training, pruning,
allocate in one fit), ``calibrate`` and the chosen baselines -- with every checkpoint path
pointed into the output directory, then tests each stage on the target task and on the source
task (PAC-Net's source metrics are taken inside :func:`~pl_pac_trs.pac.source_view`, with the
calibrated weights zeroed) and writes ``summary.json`` and ``summary.md`` there.

Checkpoints written: ``source_dense.ckpt`` (before pruning), ``source.ckpt`` (pruned and
allocated, carries the masks) and ``calibrate.ckpt`` (the target model), plus ``<baseline>.ckpt``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from pl_pac_trs.pac.masks import load_masks
from pl_pac_trs.pac.targets import matches_any
from pl_pac_trs.pac.transfer import LoadSourceWeights, source_state_dict, source_view

__all__ = ["BASELINES", "demo", "main", "run_pipeline"]

BASELINES = ("finetune", "l2sp", "scratch", "linear_probe")
_PATH_ARGS = ("checkpoint", "dense_checkpoint", "masks", "path")


def _config_dir(task: str, config_dir: str | None) -> Path:
    if config_dir:
        path = Path(config_dir)
    else:
        candidates = [
            Path.cwd() / "configs" / "pac" / task,
            Path(__file__).resolve().parents[2] / "configs" / "pac" / task,
        ]
        path = next((p for p in candidates if p.is_dir()), candidates[0])
    if not (path / "source.yaml").is_file():
        raise FileNotFoundError(
            f"pac pipeline: no stage configs for task {task!r} in {str(path)!r} "
            "(expected source.yaml, calibrate.yaml, ...); pass --config-dir"
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


def _fit(cfg: dict[str, Any], out: Path, stage: str, extra: Sequence[str]):
    from pl_pac_trs.cli import PacTrsCLI

    resolved = out / f"config_{stage}.yaml"
    resolved.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return PacTrsCLI(args=["fit", "--config", str(resolved), *extra])


def _test(trainer, model, datamodule) -> dict[str, float]:
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in (results[0] if results else {}).items()}


def _head_state(cli, checkpoint: Path) -> dict[str, torch.Tensor]:
    skip: tuple[str, ...] = ()
    for cb in cli.trainer.callbacks:
        if isinstance(cb, LoadSourceWeights):
            skip = cb.skip
    if not skip:
        return {}
    return {k: v for k, v in source_state_dict(checkpoint).items() if matches_any(k, skip)}


def run_pipeline(
    task: str,
    out: str | Path | None = None,
    baselines: Sequence[str] = ("finetune",),
    epochs_scale: float = 1.0,
    config_dir: str | None = None,
    wandb: bool = True,
    extra_args: Sequence[str] = (),
) -> dict[str, Any]:
    """Runs source (prune + allocate), calibrate and ``baselines``; returns the summary.

    Args:
        task: Name of a directory under ``configs/pac`` (``friedman``, ``digits``).
        out: Output directory (default ``runs/pac/<task>``).
        baselines: Any of ``finetune``, ``l2sp``, ``scratch``, ``linear_probe``.
        epochs_scale: Multiplies every stage's ``max_epochs`` (and the pruning epoch).
        config_dir: Directory of the stage configs (default ``configs/pac/<task>``).
        wandb: Keep the configs' ``WandbLogger`` (else ``logger: false``).
        extra_args: Extra LightningCLI arguments given to every stage.

    Returns:
        ``{"task", "out", "stages": {stage: {"target": {...}, "source": {...}}}, ...}``.
    """
    bad = [b for b in baselines if b not in BASELINES]
    if bad:
        raise ValueError(f"unknown baseline {bad[0]!r}; choose from {BASELINES}")
    if epochs_scale <= 0:
        raise ValueError(f"epochs_scale must be > 0, got {epochs_scale}")
    cdir = _config_dir(task, config_dir)
    for stage in ("calibrate", *baselines):
        if not (cdir / f"{stage}.yaml").is_file():
            raise FileNotFoundError(f"pac pipeline: missing stage config {cdir / stage}.yaml")
    out = Path(out or Path("runs") / "pac" / task)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stages: dict[str, dict[str, Any]] = {}

    # 1. source: dense -> prune -> allocate (one fit)
    src = _fit(
        _resolve_config(cdir / "source.yaml", out, "source", epochs_scale, wandb),
        out,
        "source",
        extra_args,
    )
    src.trainer.save_checkpoint(out / "source.ckpt")
    source_dm = src.datamodule
    source_model = src.model
    dense_path = out / "source_dense.ckpt"
    if dense_path.is_file():
        dense = copy.deepcopy(source_model)
        dense.load_state_dict(source_state_dict(dense_path))
        stages["source (dense)"] = {"source": _test(src.trainer, dense, source_dm)}
    stages["source (pruned + allocated)"] = {"source": _test(src.trainer, source_model, source_dm)}
    masks = load_masks(out / "source.ckpt")

    # 2. calibrate, and the source task recovered from the calibrated model
    cal = _fit(
        _resolve_config(cdir / "calibrate.yaml", out, "calibrate", epochs_scale, wandb),
        out,
        "calibrate",
        extra_args,
    )
    cal.trainer.save_checkpoint(out / "calibrate.ckpt")
    row = {"target": _test(cal.trainer, cal.model, cal.datamodule)}
    state = source_state_dict(out / "source.ckpt")
    with source_view(cal.model, masks, source_state=state):
        row["source"] = _test(cal.trainer, cal.model, source_dm)
        row["source_outputs_identical"] = _identical(source_model, cal.model, source_dm)
    stages["PAC-Net (calibrate)"] = row

    # 3. baselines, with the source head put back for the source metrics
    for name in baselines:
        cfg = _resolve_config(cdir / f"{name}.yaml", out, name, epochs_scale, wandb)
        run = _fit(cfg, out, name, extra_args)
        run.trainer.save_checkpoint(out / f"{name}.ckpt")
        row = {"target": _test(run.trainer, run.model, run.datamodule)}
        head = _head_state(run, dense_path) if dense_path.is_file() else {}
        needs_head = head or _head_shape_differs(run.model, source_model)
        if not needs_head or head:
            with source_view(run.model, {}, source_state=head):
                row["source"] = _test(run.trainer, run.model, source_dm)
        stages[name] = row

    summary = {
        "task": task,
        "out": str(out),
        "seconds": round(time.perf_counter() - started, 1),
        "stages": stages,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(summary_markdown(summary))
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pl-pac-trs pac",
        description="Run the PAC-Net pipeline (source: dense + prune + allocate; calibrate; "
        "baselines) for a task from configs/pac/<task>/ and summarise source/target metrics.",
    )
    p.add_argument("task", help="task name: a directory of configs/pac (friedman, digits)")
    p.add_argument("--out", default=None, help="output directory (default runs/pac/<task>)")
    p.add_argument(
        "--baselines",
        default="finetune",
        help=f"comma-separated baselines from {','.join(BASELINES)}; 'all' or 'none'",
    )
    p.add_argument("--epochs-scale", type=float, default=1.0, help="multiply all max_epochs")
    p.add_argument("--config-dir", default=None, help="directory with the stage configs")
    p.add_argument("--no-wandb", action="store_true", help="run without the WandbLogger")
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
