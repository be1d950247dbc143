"""``make demo`` / ``python -m pl_pac_trs.demo``: both methods end to end on a CPU in minutes.

1. PAC-Net on the Friedman #1 transfer task (small budget): PAC-Net vs fine-tuning target error
   and the source error PAC-Net retains.
2. TRS-ODEN vs ODEN on the Duffing oscillator, exp I quick configs: test trajectory and energy
   MSE side by side, phase portraits and energy curves as PNGs in each run directory (and in the
   W&B runs, offline unless you are logged in).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from pl_pac_trs.apps.runs import ensure_wandb_mode
from pl_pac_trs.configs import config_path

__all__ = ["main"]

TRS_CONDITIONS = {"ODEN": "trs/exp1/quick/oden", "TRS-ODEN": "trs/exp1/quick/trs_oden"}


def _trs_part(out: Path, epochs: int | None) -> None:
    from pl_pac_trs.apps.experiment import run_config

    results = {}
    for label, name in TRS_CONDITIONS.items():
        overrides = [
            f"--trainer.default_root_dir={out}",
            f"--trainer.logger.init_args.save_dir={out}",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ]
        if epochs is not None:
            overrides.append(f"--trainer.max_epochs={epochs}")
        print(f"\n== TRS: training {label} (pl-pac-trs fit --config {name})", flush=True)
        results[label] = run_config([config_path(name)], overrides)

    print("\nTRS-ODEN demo: Duffing exp I (quick budget), test rollouts from clean initial states")
    print(f"  {'model':10s} {'trajectory MSE x1e2':>22s} {'energy MSE x1e2':>22s}")
    for label, run in results.items():
        m = run.test_metrics
        traj = f"{m['test/traj_mse']:.3f} ± {m.get('test/traj_mse_std', float('nan')):.3f}"
        energy = f"{m['test/energy_mse']:.3f} ± {m.get('test/energy_mse_std', float('nan')):.3f}"
        print(f"  {label:10s} {traj:>22s} {energy:>22s}")
    for label, run in results.items():
        pngs = sorted(p.name for p in run.run_dir.glob("*.png")) if run.run_dir else []
        print(f"  {label} plots in {run.run_dir}: " + (", ".join(pngs) or "none"))
        if run.wandb_note:
            print("  " + run.wandb_note.replace("\n", "\n  "))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pl_pac_trs.demo", description=__doc__)
    parser.add_argument("--out", default="runs/demo", help="where runs are written")
    parser.add_argument("--trs-epochs", type=int, default=None, help="override the quick budget")
    parser.add_argument("--pac-epochs-scale", type=float, default=0.35)
    args = parser.parse_args(argv)
    out = Path(args.out)
    ensure_wandb_mode()
    start = time.perf_counter()

    from pl_pac_trs.apps.pipeline import demo as pac_demo

    print(
        "== PAC-Net: source (dense, prune, allocate), calibrate, fine-tuning baseline", flush=True
    )
    pac_demo(out=out / "pac", epochs_scale=args.pac_epochs_scale)
    _trs_part(out / "trs", args.trs_epochs)
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; everything is under {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
