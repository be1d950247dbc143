"""Diagnosis, not tuning: how the calibrate penalty strength changes the *validation* fit.

Re-runs the calibrate stage of one finished PAC-Net pipeline (the ``config_calibrate.yaml`` and
``source.ckpt`` that ``pl-pac-trs pac`` / ``python -m benchmarks pac`` leave in a seed's work
directory) with other ``GradientMask(lam=...)`` values, and the fine-tuning stage once for
reference, and prints the final training and validation metrics of each fit. The test split is
never evaluated, so nothing here can select a method or a lambda on test data.

    pl-pac-trs pac duffing            # writes runs/pac/duffing/{source.ckpt, config_*.yaml}
    python benchmarks/pac_lambda_check.py runs/pac/duffing --lams 0.01,0.001,0
    python benchmarks/pac_lambda_check.py runs/bench/pac/duffing/seed0   # a benchmark seed
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from pathlib import Path


def _fit(config: Path, scratch: Path, lam: float | None = None) -> dict[str, float]:
    """Fits a finished pipeline's resolved stage config again, its checkpoint written to
    ``scratch`` (``lam``: calibrate's ``GradientMask`` λ); the final train/val metrics."""
    from pl_pac_trs.apps.pipeline import StageOverrides, fit_stage

    callback_args = {"FinalCheckpoint": {"path": str(scratch / "stage.ckpt")}}
    if lam is not None:
        callback_args["GradientMask"] = {"lam": lam}
    overrides = StageOverrides(
        out=config.parent, root_dir=scratch, wandb=False, callback_args=callback_args
    )
    metrics = fit_stage(config, overrides).trainer.callback_metrics
    return {k: float(v) for k, v in metrics.items() if k.startswith(("train/", "val/"))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="a pipeline seed directory (has source.ckpt)")
    parser.add_argument("--lams", default="0.01,0.001,0", help="comma-separated lambdas")
    args = parser.parse_args(argv)
    calibrate = args.work / "config_calibrate.yaml"
    finetune = args.work / "config_finetune.yaml"
    for path in (calibrate, finetune):
        if not path.is_file():
            raise SystemExit(f"{path} not found: pass the seed directory of a finished pipeline")
    lams = [float(x) for x in args.lams.split(",") if x.strip()]
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for lam in lams:
            rows.append((f"PAC-Net calibrate, lam={lam:g}", _fit(calibrate, scratch, lam)))
        rows.append(("fine-tuning", _fit(finetune, scratch)))
    keys = sorted({k for _, m in rows for k in m})
    print(f"{'run':32s} " + " ".join(f"{k:>12s}" for k in keys))
    for name, metrics in rows:
        print(f"{name:32s} " + " ".join(f"{metrics.get(k, float('nan')):12.5f}" for k in keys))


if __name__ == "__main__":
    main()
