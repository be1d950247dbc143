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

import yaml


def _with_lam(config: dict, lam: float, checkpoint: Path) -> dict:
    """The calibrate config with ``GradientMask(lam=lam)``, writing its checkpoint elsewhere."""
    callbacks = config["trainer"]["callbacks"]
    names = [cb["class_path"].rsplit(".", 1)[-1] for cb in callbacks]
    if "GradientMask" not in names:
        raise ValueError("config_calibrate.yaml has no GradientMask callback")
    for cb, name in zip(callbacks, names, strict=True):
        if name == "GradientMask":
            cb["init_args"]["lam"] = lam
        elif name == "FinalCheckpoint":
            cb["init_args"]["path"] = str(checkpoint)
    return config


def _fit(config: dict, scratch: Path) -> dict[str, float]:
    from pl_pac_trs.experiment import run_config

    path = scratch / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    metrics = run_config([path], test=False).fit_metrics
    return {k: v for k, v in metrics.items() if k.startswith(("train/", "val/"))}


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
            config = _with_lam(yaml.safe_load(calibrate.read_text()), lam, scratch / "cal.ckpt")
            rows.append((f"PAC-Net calibrate, lam={lam:g}", _fit(config, scratch)))
        rows.append(("fine-tuning", _fit(yaml.safe_load(finetune.read_text()), scratch)))
    keys = sorted({k for _, m in rows for k in m})
    print(f"{'run':32s} " + " ".join(f"{k:>12s}" for k in keys))
    for name, metrics in rows:
        print(f"{name:32s} " + " ".join(f"{metrics.get(k, float('nan')):12.5f}" for k in keys))


if __name__ == "__main__":
    main()
