"""When does TRS-ODEN help? ODEN vs TRS-ODEN (and HODEN) on five systems we did not design.

``python -m benchmarks trs_study --budget ci|full|smoke --seeds N --out DIR --workers K``

Systems (:mod:`pl_pac_trs.data.systems`, simulated with the package's generator): a pendulum
(conservative, nonlinear), a damped pendulum (dissipative, not reversible), a forced pendulum
(driven, time-augmented field, RK4), Hénon-Heiles (two degrees of freedom, 4-D state) and the
Lotka-Volterra model in log coordinates, reversible under the swap ``(u, v) -> (v, u)`` instead of
the momentum flip (given to the model as ``Reversal([1, 1], permutation=[1, 0])``).

One job is one (system, noise level, number of training trajectories, seed). It fits, on the same
data, ODEN (``trs_weight = 0``), TRS-ODEN at every ``trs_weight`` of :data:`LAMBDAS` above 0, the
time-weighted TRS-ODEN on the dissipative system, and HODEN where a separable Hamiltonian exists.
Each fit keeps a snapshot of its weights at every training budget of the grid (epochs), so the
budget axis costs no extra fits. Per budget, every snapshot is scored on the noisy validation
windows (``val/ode``: the data loss, without the TRS term, comparable across weights); the TRS
weight is chosen there (``TRS-ODEN`` = the best weight above 0, ``chosen`` = the best weight
including 0: what a user following the validation split would run), and only those models are
tested, once, on the clean long test trajectories (``test/traj_mse``, x1e2).

The grid varies one factor at a time around a base setting: the noise level at the base number of
trajectories, the number of trajectories at the base noise. The seed varies the training and
validation data and the model's initialisation; the test trajectories are the same for all.

Every finished job is appended to ``DIR/trs_study_runs.jsonl`` and the tables
``DIR/trs_study.md`` / ``.json`` are rewritten, so a run can be stopped and started again: jobs
already in the log are skipped.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.common import machine, read_job_log
from benchmarks.trs_study_report import to_markdown, write_report
from pl_pac_trs.data.systems import SYSTEM_NAMES

#: TRS weights fitted for every system (0 is ODEN).
LAMBDAS = (0.0, 1.0, 10.0)
#: Learning rate of every fit (the quick configs' 3e-3).
LR = 3e-3
NAME = "trs_study"


@dataclass(frozen=True)
class Budget:
    """The grid of one budget: noise levels and training-trajectory counts (one factor at a
    time around ``base``), training budgets (epochs), model and data sizes."""

    noises: tuple[float, ...]
    num_trains: tuple[int, ...]
    base: tuple[float, int]
    epochs: tuple[int, ...]
    hidden: tuple[int, ...]
    num_val: int = 10
    num_test: int = 20
    test_steps: int = 100
    test_span: float = 10.0

    def settings(self) -> list[tuple[float, int]]:
        """``(noise, num_train)`` pairs: the base, then the other noises, then the other counts."""
        noise0, n0 = self.base
        out = [(noise0, n0)]
        out += [(s, n0) for s in self.noises if s != noise0]
        out += [(noise0, n) for n in self.num_trains if n != n0]
        return out


BUDGETS: dict[str, Budget] = {
    "full": Budget(
        noises=(0.01, 0.05, 0.2),
        num_trains=(5, 10, 25),
        base=(0.05, 25),
        epochs=(200, 600),
        hidden=(64, 64),
    ),
    "ci": Budget(
        noises=(0.05, 0.2),
        num_trains=(5, 25),
        base=(0.05, 25),
        epochs=(100, 300),
        hidden=(32, 32),
        num_test=10,
    ),
    "smoke": Budget(
        noises=(0.1,),
        num_trains=(2,),
        base=(0.1, 2),
        epochs=(1, 2),
        hidden=(8,),
        num_val=2,
        num_test=2,
        test_steps=20,
        test_span=2.0,
    ),
}


def conditions(system: str) -> list[dict[str, Any]]:
    """The fits of one job: ``{"label", "field", "trs_weight", "time_weighted"}`` each."""
    from pl_pac_trs.data.systems import ode_system

    spec = ode_system(system)
    out = [
        {"label": f"oden_{w:g}", "field": "oden", "trs_weight": w, "time_weighted": False}
        for w in LAMBDAS
    ]
    if not spec.reversible:  # the paper's answer for damped systems (exp IV)
        out += [
            {"label": f"oden_tw_{w:g}", "field": "oden", "trs_weight": w, "time_weighted": True}
            for w in LAMBDAS
            if w > 0
        ]
    if spec.separable_hamiltonian:
        out.append(
            {"label": "hoden_0", "field": "hoden", "trs_weight": 0.0, "time_weighted": False}
        )
    return out


def job_key(budget: str, system: str, noise: float, num_train: int, seed: int) -> str:
    """A job's name; it changes with the budget's epochs, widths and the weights fitted, so a
    log of an older grid is not mistaken for this one."""
    grid = BUDGETS[budget]
    epochs = "-".join(map(str, grid.epochs))
    shape = f"e{epochs}_h{'x'.join(map(str, grid.hidden))}_w{'-'.join(f'{w:g}' for w in LAMBDAS)}"
    return f"{budget}/{shape}/{system}/noise{noise:g}/n{num_train}/seed{seed}"


def jobs(budget: str, systems: Sequence[str], seeds: int) -> list[dict[str, Any]]:
    """Every job of a budget, ``{"key", "system", "noise", "num_train", "seed"}``, seed by seed
    (a run stopped early has every system and setting at the first seeds)."""
    grid = BUDGETS[budget]
    return [
        {
            "key": job_key(budget, s, noise, n, seed),
            "system": s,
            "noise": noise,
            "num_train": n,
            "seed": seed,
        }
        for seed in range(seeds)
        for s in systems
        for noise, n in grid.settings()
    ]


def _model(system: str, cond: dict[str, Any], hidden: tuple[int, ...]):
    """The TRSODEN of one condition (ODEN / TRS-ODEN / HODEN field, the system's integrator and
    reversing operator)."""
    import torch

    from pl_pac_trs.data.systems import ode_system
    from pl_pac_trs.trs import RK4, TRSODEN, HODENField, Leapfrog, ODENField, Reversal

    spec = ode_system(system)
    d = spec.state_dim
    if cond["field"] == "hoden":
        field = HODENField(d, hidden=hidden, position_dim=spec.position_dim)
    else:
        field = ODENField(d, hidden=hidden, time_augmented=spec.time_dependent)
    integrator = RK4() if spec.time_dependent else Leapfrog(position_dim=spec.position_dim)
    if spec.reversible:
        reversal = Reversal(spec.reversal_signs, spec.reversal_permutation)
    else:  # a dissipative system: the momentum flip it breaks (what exp IV's TRS term uses)
        reversal = Reversal.momentum_flip(d, spec.position_dim)
    return TRSODEN(
        field,
        integrator=integrator,
        trs_weight=cond["trs_weight"],
        time_weighted=cond["time_weighted"],
        reversal=reversal,
        optimizer=functools.partial(torch.optim.Adam, lr=LR),
    )


class _Snapshots:
    """Keeps a copy of the module's weights at the end of the given epochs."""

    def __init__(self, epochs: Sequence[int]) -> None:
        import lightning.pytorch as pl

        epochs = set(epochs)
        self.states: dict[int, dict[str, Any]] = {}
        states = self.states

        class Callback(pl.Callback):
            def on_train_epoch_end(self, trainer, pl_module) -> None:
                epoch = trainer.current_epoch + 1
                if epoch in epochs:
                    states[epoch] = copy.deepcopy(pl_module.state_dict())

        self.callback = Callback()


def _finite(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else math.inf


def run_job(job: dict[str, Any], budget: str, work: str, threads: int | None = None) -> dict:
    """Fit every condition of one job, choose weights on validation, test the chosen models."""
    import lightning.pytorch as pl
    import torch

    from pl_pac_trs.data.systems import ODESystemDataModule

    if threads is not None:  # a worker process
        from benchmarks.common import quiet

        os.environ.setdefault("WANDB_MODE", "disabled")
        torch.set_num_threads(threads)
        quiet()
    grid = BUDGETS[budget]
    seed = job["seed"]
    dm = ODESystemDataModule(
        job["system"],
        num_train=job["num_train"],
        noise_std=job["noise"],
        num_val=grid.num_val,
        num_test=grid.num_test,
        test_steps=grid.test_steps,
        test_span=grid.test_span,
        train_seed=1000 * seed,
        val_seed=50_000 + 1000 * seed,
        test_seed=90_000,
        cache_dir=str(Path(work) / "cache"),
    )
    dm.prepare_data()
    quiet_trainer = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
        "devices": 1,
    }
    evaluator = pl.Trainer(**quiet_trainer)
    t_start = time.perf_counter()
    fits: dict[str, dict[str, Any]] = {}
    models: dict[str, Any] = {}
    snapshots: dict[str, dict[int, dict[str, Any]]] = {}
    for cond in conditions(job["system"]):
        pl.seed_everything(seed, verbose=False)
        model = _model(job["system"], cond, grid.hidden)
        snaps = _Snapshots(grid.epochs)
        trainer = pl.Trainer(
            max_epochs=max(grid.epochs),
            limit_val_batches=0,
            num_sanity_val_steps=0,
            log_every_n_steps=50,
            callbacks=[snaps.callback],
            **quiet_trainer,
        )
        t0 = time.perf_counter()
        trainer.fit(model, datamodule=dm)
        seconds = time.perf_counter() - t0
        val = {}
        for epoch, state in sorted(snaps.states.items()):
            model.load_state_dict(state)
            result = evaluator.validate(model, datamodule=dm, verbose=False)[0]
            val[str(epoch)] = float(result["val/ode"])
        fits[cond["label"]] = {**cond, "val": val, "seconds": round(seconds, 2)}
        models[cond["label"]] = model
        snapshots[cond["label"]] = snaps.states
    tested: dict[str, dict[str, Any]] = {}
    for epoch in grid.epochs:
        e = str(epoch)
        picks = choose(fits, e)
        tested[e] = {}
        scores: dict[str, dict[str, float]] = {}  # each model is tested once
        for role, label in picks.items():
            if label is None:
                continue
            if label not in scores:
                model = models[label]
                model.load_state_dict(snapshots[label][epoch])
                result = evaluator.test(model, datamodule=dm, verbose=False)[0]
                scores[label] = {k: float(v) for k, v in result.items()}
            tested[e][role] = {
                "label": label,
                "trs_weight": fits[label]["trs_weight"],
                "time_weighted": fits[label]["time_weighted"],
                "val_ode": fits[label]["val"][e],
                "test": scores[label],
            }
    return {
        **job,
        "budget": budget,
        "epochs": list(grid.epochs),
        "hidden": list(grid.hidden),
        "lr": LR,
        "fits": fits,
        "results": tested,
        "seconds": round(time.perf_counter() - t_start, 2),
    }


def choose(fits: dict[str, dict[str, Any]], epoch: str) -> dict[str, str | None]:
    """The models a budget tests, chosen on ``val/ode`` only: ``ODEN`` (weight 0), ``TRS-ODEN``
    (best weight above 0, not time-weighted), ``TRS-ODEN tw`` (best time-weighted weight, where
    fitted), ``HODEN`` (where fitted) and ``chosen`` (best ODEN-field model, weight 0 included)."""

    def best(labels: list[str]) -> str | None:
        labels = [lab for lab in labels if lab in fits]
        return min(labels, key=lambda lab: _finite(fits[lab]["val"].get(epoch))) if labels else None

    oden = [lab for lab, f in fits.items() if f["field"] == "oden"]
    return {
        "ODEN": best([lab for lab in oden if fits[lab]["trs_weight"] == 0]),
        "TRS-ODEN": best(
            [lab for lab in oden if fits[lab]["trs_weight"] > 0 and not fits[lab]["time_weighted"]]
        ),
        "TRS-ODEN tw": best([lab for lab in oden if fits[lab]["time_weighted"]]),
        "HODEN": best([lab for lab, f in fits.items() if f["field"] == "hoden"]),
        "chosen": best(oden),
    }


def run(
    budget: str = "ci",
    seeds: int = 3,
    out: str | Path = "docs/results/trs_study",
    work: str | Path = "runs/bench/trs_study",
    workers: int = 1,
    systems: Sequence[str] | None = None,
    progress: bool = True,
    report_only: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the study; returns the report payload (also written to ``out``).

    Args:
        budget: ``smoke``, ``ci`` or ``full`` (:data:`BUDGETS`).
        seeds: seeds per setting (0 .. seeds - 1).
        out: where ``trs_study_runs.jsonl`` (one record per finished job), ``trs_study.md`` and
            ``trs_study.json`` go.
        work: scratch directory (data cache).
        workers: jobs at once, each in its own one-thread process (1: in this process).
        systems: a subset of :data:`~pl_pac_trs.data.systems.SYSTEM_NAMES` (default all).
        progress: show a progress bar.
        report_only: run nothing; write the tables of the jobs already in the log.
    """
    from tqdm.auto import tqdm

    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {sorted(BUDGETS)}, got {budget!r}")
    systems = list(systems or SYSTEM_NAMES)
    unknown = [s for s in systems if s not in SYSTEM_NAMES]
    if unknown:
        raise ValueError(f"unknown system {unknown[0]!r}; choose from {list(SYSTEM_NAMES)}")
    if seeds < 1 or workers < 1:
        raise ValueError(f"seeds and workers must be >= 1, got {seeds} and {workers}")
    out, work = Path(out), Path(work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    log = out / f"{NAME}_runs.jsonl"
    all_jobs = jobs(budget, systems, seeds)
    wanted = {j["key"] for j in all_jobs}
    records = {r["key"]: r for r in read_job_log(log) if r.get("key") in wanted}
    todo = [] if report_only else [j for j in all_jobs if j["key"] not in records]
    started = time.perf_counter()
    meta = {
        "budget": budget,
        "grid": asdict(BUDGETS[budget]),
        "lambdas": list(LAMBDAS),
        "lr": LR,
        "seeds": seeds,
        "systems": systems,
        "workers": workers,
        "machine": machine(),
    }
    bar = tqdm(total=len(all_jobs), initial=len(records), desc=NAME, disable=not progress)

    def finished(rec: dict[str, Any]) -> None:
        records[rec["key"]] = rec
        with log.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        write_report(out, NAME, meta, list(records.values()))
        bar.set_postfix_str(rec["key"])
        bar.update()

    if workers == 1:
        for job in todo:
            finished(run_job(job, budget, str(work)))
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_job, job, budget, str(work), 1) for job in todo]
            for future in as_completed(futures):
                finished(future.result())
    bar.close()
    meta["seconds_this_call"] = round(time.perf_counter() - started, 1)
    return write_report(out, NAME, meta, list(records.values()))


__all__ = ["BUDGETS", "LAMBDAS", "Budget", "choose", "conditions", "jobs", "run", "to_markdown"]
