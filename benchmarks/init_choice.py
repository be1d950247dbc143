"""Which field initialisation should be the default? Both inits on validation loss, many systems.

``python -m benchmarks.init_choice run [--part ci|user|all] [--shard I/N]`` then
``python -m benchmarks.init_choice report``.

Two parts, every job one fit (+ test) of a LightningCLI config, ``--seeds`` model seeds each:

* ``ci``: the reference experiments I-VI at the ``ci`` budget (the quick configs with
  :data:`benchmarks.reproduce_trs.CI_EPOCHS`), every condition, ``init`` = ``reference`` and
  ``torch``.
* ``user``: two systems of our own making, written as CSV files and trained through
  :class:`~pl_pac_trs.data.TrajectoryFileDataModule` exactly as a user would: a pendulum
  (nonlinear, conservative, ``q' = p, p' = -sin q``) and a pendulum with quadratic drag
  (nonlinear, dissipative, ``p' = -sin q - c p |p|``). Training and validation trajectories are
  short and noisy (31 points over [0, 3], noise 0.1, as exps I/IV), test rollouts long and clean
  (201 points over [0, 20]). Conditions ODEN and TRS-ODEN (lam 10 conservative; lam 0.5
  time-weighted dissipative, as exps I/IV), both inits, the quick configs' lr (3e-3) and the
  reference lr (2e-4), at two budgets (150 and 1000 full-batch epochs).

The choice is made on the validation split (``val/ode``: the trajectory MSE on held-out noisy
windows, comparable across conditions; ``val/loss`` adds the TRS term); test metrics are
reported beside, never used to choose. Each job writes ``<work>/results/<id>.json`` as it
finishes and is skipped when that file exists, so runs can be split over processes
(``--shard 0/2`` and ``--shard 1/2`` on two cores) and resumed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import markdown_table, mean_std, write_outputs
from benchmarks.reproduce_trs import EXPERIMENTS, NAMES, config_path, overrides, run_overrides

INITS = ("reference", "torch")
INIT_KEY = "--model.init_args.vector_field.init_args.init={}"

#: The user systems: name -> (drag coefficient c, TRS lam, time-weighted).
USER_SYSTEMS: dict[str, tuple[float, float, bool]] = {
    "pendulum": (0.0, 10.0, False),
    "drag_pendulum": (0.3, 0.5, True),
}
USER_LRS = (3e-3, 2e-4)
USER_EPOCHS = (150, 1000)
NUM_TRAIN, NUM_VAL, NUM_TEST = 50, 10, 20


def pendulum_rhs(c: float):
    """``(q, p) -> (p, -sin q - c p |p|)`` for :func:`scipy.integrate.solve_ivp`."""

    def rhs(_t: float, x: np.ndarray) -> list[float]:
        q, p = x
        return [p, -math.sin(q) - c * p * abs(p)]

    return rhs


def simulate(c: float, seed: int, n_points: int, span: float, noise: float) -> np.ndarray:
    """One trajectory ``(n_points, 2)``: start on a random direction at radius U(0.3, 1.8)
    (libration only: energy below the separatrix), accurate solve, Gaussian noise."""
    from scipy.integrate import solve_ivp

    rng = np.random.default_rng(seed)
    direction = rng.uniform(-1.0, 1.0, size=2)
    x0 = direction / np.linalg.norm(direction) * rng.uniform(0.3, 1.8)
    t = np.linspace(0.0, span, n_points)
    sol = solve_ivp(pendulum_rhs(c), (0.0, span), x0, t_eval=t, rtol=1e-10, atol=1e-10)
    x = sol.y.T
    return x + noise * rng.standard_normal(x.shape) if noise > 0 else x


def write_system(path: Path, c: float) -> Path:
    """The user's CSV: 50 train + 10 val noisy short trajectories, then 20 clean long ones."""
    rows = ["trajectory,t,q,p"]
    for i in range(NUM_TRAIN + NUM_VAL + NUM_TEST):
        test = i >= NUM_TRAIN + NUM_VAL
        n, span, noise = (201, 20.0, 0.0) if test else (31, 3.0, 0.1)
        x = simulate(c, seed=(999 if test else 0) + i, n_points=n, span=span, noise=noise)
        for t, (q, p) in zip(np.linspace(0.0, span, n), x, strict=True):
            rows.append(f"{i},{t:.6f},{q:.9f},{p:.9f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(rows) + "\n")
    tmp.rename(path)
    return path


def user_config(path: Path, csv: Path, lam: float, time_weighted: bool, lr: float) -> Path:
    """A LightningCLI config for one user-system condition (what a user would write)."""
    import yaml

    total = NUM_TRAIN + NUM_VAL + NUM_TEST
    model: dict[str, Any] = {
        "vector_field": {
            "class_path": "pl_pac_trs.trs.ODENField",
            "init_args": {"state_dim": 2, "hidden": [100, 100], "init": "reference"},
        },
        "integrator": "leapfrog",
        "trs_weight": lam,
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": lr}},
    }
    if time_weighted and lam > 0:
        model["time_weighted"] = True
    cfg = {
        "seed_everything": 0,
        "model": {"class_path": "pl_pac_trs.trs.TRSODEN", "init_args": model},
        "data": {
            "class_path": "pl_pac_trs.data.TrajectoryFileDataModule",
            "init_args": {
                "path": str(csv),
                "train_fraction": NUM_TRAIN / total,
                "val_fraction": NUM_VAL / total,
                "position_dim": 1,
            },
        },
        "trainer": {"max_epochs": 150, "log_every_n_steps": 1},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _common(seed: int, root: Path, epochs: int) -> list[str]:
    return [
        *run_overrides(seed, root),
        f"--trainer.max_epochs={epochs}",
        f"--trainer.check_val_every_n_epoch={epochs}",
    ]


def jobs(part: str, seeds: int, work: Path) -> list[dict[str, Any]]:
    """Every job of ``part`` (``ci``, ``user`` or ``all``) as ``{id, config, overrides, ...}``."""
    out: list[dict[str, Any]] = []
    if part in ("ci", "all"):
        for seed in range(seeds):
            for exp, conds in EXPERIMENTS.items():
                for cond in conds:
                    for init in INITS:
                        jid = f"ci_e{exp}_{cond}_{init}_s{seed}"
                        ov = overrides(exp, "ci", seed, work / "runs" / jid, work / "cache")
                        out.append(
                            dict(
                                id=jid,
                                config=str(config_path(exp, cond, "ci")),
                                overrides=[*ov, INIT_KEY.format(init)],
                                part="ci",
                                exp=exp,
                                cond=cond,
                                init=init,
                                seed=seed,
                            )
                        )
    if part in ("user", "all"):
        for system, (c, lam, weighted) in USER_SYSTEMS.items():
            csv = work / "data" / f"{system}.csv"
            for lr in USER_LRS:
                for cond, lam_c in (("oden", 0.0), ("trs_oden", lam)):
                    cfg = work / "configs" / f"{system}_{cond}_lr{lr:g}.yaml"
                    for epochs in USER_EPOCHS:
                        for init in INITS:
                            for seed in range(seeds):
                                jid = f"user_{system}_{cond}_lr{lr:g}_e{epochs}_{init}_s{seed}"
                                ov = _common(seed, work / "runs" / jid, epochs)
                                out.append(
                                    dict(
                                        id=jid,
                                        config=str(cfg),
                                        overrides=[*ov, INIT_KEY.format(init)],
                                        part="user",
                                        system=system,
                                        drag=c,
                                        lam=lam_c,
                                        time_weighted=weighted,
                                        lr=lr,
                                        epochs=epochs,
                                        cond=cond,
                                        init=init,
                                        seed=seed,
                                        csv=str(csv),
                                    )
                                )
    return out


def prepare(job: dict[str, Any]) -> None:
    """Writes the user system's CSV and config a job needs (once)."""
    if job["part"] != "user":
        return
    csv = Path(job["csv"])
    if not csv.is_file():
        write_system(csv, job["drag"])
    cfg = Path(job["config"])
    if not cfg.is_file():
        user_config(cfg, csv, job["lam"], job["time_weighted"], job["lr"])


def run_job(job: dict[str, Any], result: Path) -> dict[str, Any]:
    """Fit + test one job; writes ``result`` atomically and returns it."""
    from pl_pac_trs.apps.experiment import run_config

    prepare(job)
    t0 = time.perf_counter()
    res = run_config([job["config"]], job["overrides"])
    out = dict(
        job,
        test_metrics=res.test_metrics,
        fit_metrics=res.fit_metrics,
        seconds=round(time.perf_counter() - t0, 2),
    )
    result.parent.mkdir(parents=True, exist_ok=True)
    tmp = result.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.rename(result)
    return out


def load_results(work: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((work / "results").glob("*.json"))]


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    m, s = mean_std(values)
    return f"{m:.3g} ± {s:.2g} (n={len(values)})"


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per group (experiment/system x condition x lr x budget), per init: val and test means."""
    groups: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in results:
        if r["part"] == "ci":
            key = f"ci exp {NAMES[int(r['exp'])]} {r['cond']}"
        else:
            key = f"user {r['system']} {r['cond']} lr {r['lr']:g} {r['epochs']} ep"
        cell = groups.setdefault(key, {}).setdefault(r["init"], {})
        fit, test = r["fit_metrics"], r["test_metrics"]
        for name, value in (
            ("val_ode", fit.get("val/ode")),
            ("val_loss", fit.get("val/loss")),
            ("test_traj", test.get("test/traj_mse")),
        ):
            if value is not None and math.isfinite(value):
                cell.setdefault(name, []).append(float(value))
    summary = {}
    for key, by_init in groups.items():
        entry: dict[str, Any] = {}
        for init, metrics in by_init.items():
            entry[init] = {k: {"mean": mean_std(v)[0], "values": v} for k, v in metrics.items()}
        vals = {i: entry[i]["val_ode"]["mean"] for i in entry if "val_ode" in entry[i]}
        if len(vals) == len(INITS):
            entry["val_winner"] = min(vals, key=vals.get)
        summary[key] = entry
    return summary


def to_markdown(summary: dict[str, Any]) -> str:
    header = [
        "group",
        "val/ode reference",
        "val/ode torch",
        "val winner",
        "test traj x1e2 reference",
        "test traj x1e2 torch",
    ]
    rows = []
    for key, entry in summary.items():

        def get(init: str, metric: str, scale: float = 1.0, e=entry) -> str:
            values = e.get(init, {}).get(metric, {}).get("values", [])
            return _cell([v * scale for v in values])

        rows.append(
            [
                key,
                get("reference", "val_ode"),
                get("torch", "val_ode"),
                entry.get("val_winner", "n/a"),
                get("reference", "test_traj", 1.0),
                get("torch", "test_traj", 1.0),
            ]
        )
    wins = [e["val_winner"] for e in summary.values() if "val_winner" in e]
    tally = {i: wins.count(i) for i in INITS}
    return (
        "# Field initialisation: reference (Glorot-uniform, zero biases) vs torch default\n\n"
        "Validation `val/ode` (MSE on held-out noisy windows) chooses; test trajectory MSE "
        "(x1e2 as the reference reports it; already x1e2 in the metric) is shown, not used.\n"
        "Mean ± std over model seeds.\n\n"
        + markdown_table(header, rows)
        + f"\n\nValidation wins: {tally}\n"
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.init_choice", description=__doc__)
    p.add_argument("command", choices=("run", "report", "list"))
    p.add_argument("--part", choices=("ci", "user", "all"), default="all")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--shard", default="0/1", help="I/N: run every N-th job starting at I")
    p.add_argument("--work", type=Path, default=Path("runs/bench/init_choice"))
    p.add_argument("--out", type=Path, default=Path("docs/results/init_choice"))
    p.add_argument("--threads", type=int, default=1)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        index, count = (int(v) for v in args.shard.split("/"))
        if not 0 <= index < count:
            raise ValueError
    except ValueError:
        raise SystemExit(f"--shard must be I/N with 0 <= I < N, got {args.shard!r}") from None
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be >= 1, got {args.seeds}")
    work = args.work.resolve()
    todo = jobs(args.part, args.seeds, work)
    if args.command == "list":
        for job in todo:
            print(job["id"])
        return 0
    if args.command == "run":
        os.environ.setdefault("WANDB_MODE", "disabled")
        import torch

        from benchmarks.__main__ import _quiet

        torch.set_num_threads(args.threads)
        _quiet()
        for job in todo[index::count]:
            result = work / "results" / f"{job['id']}.json"
            if result.is_file():
                continue
            out = run_job(job, result)
            print(f"{job['id']}: {out['seconds']} s", flush=True)
    summary = summarise(load_results(work))
    write_outputs(args.out, "init_choice", {"summary": summary}, to_markdown(summary))
    print(to_markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
