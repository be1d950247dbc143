"""TRS-ODEN speed at the exp I setting: A/B ratios measured in one run (medians of interleaved
repeats).

Setting: 150 windows x 10 steps, ODEN 1x1000 tanh MLP, leapfrog, Adam, full batch. Measures

* ODEN step (trs_weight = 0) vs TRS-ODEN step with ONE batched rollout vs TWO rollout calls;
* a bare PyTorch loop vs the Lightning ``TRSODEN`` doing the same steps (overhead ratio; the
  fit's one-off Trainer set-up is excluded: the training epoch is timed from a callback);
* our RK4 / leapfrog vs torchdiffeq's fixed-step ``rk4`` on the same rollout (forward+backward);
* a vectorised test rollout of 50 trajectories x 200 steps (no grad), trajectories-steps/s;
* TRS-HODEN step (exp II, 2x100) with the separable leapfrog path vs the generic one;
* optionally (``--compile``) the TRS step with ``torch.compile``d field.

Run: ``python benchmarks/trs_speed.py [--repeats 7] [--threads N] [--compile]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import torch
import torchdiffeq
from torch.utils.data import DataLoader, Dataset

from pl_pac_trs.trs import RK4, TRSODEN, HODENField, Leapfrog, ODENField, Reversal, trs_loss

BATCH, STEPS, HIDDEN = 150, 10, (1000,)


class _Repeat(Dataset):
    def __init__(self, batch: dict, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return self.batch


def _collate(items):
    return items[0]


def make_batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(BATCH, 2, generator=g)
    t = torch.linspace(0, 1, STEPS + 1).expand(BATCH, STEPS + 1).contiguous()
    t = t + 0.1 * torch.randint(0, 3, (BATCH, 1), generator=g)  # windows start at different times
    y = torch.randn(BATCH, STEPS, 2, generator=g)
    return {"x0": x0, "t": t, "y": y}


def train_step_fn(
    trs_weight: float, batched: bool, compile_field: bool = False
) -> Callable[[], None]:
    torch.manual_seed(0)
    field = ODENField(2, HIDDEN)
    fn = torch.compile(field) if compile_field else field
    opt = torch.optim.Adam(field.parameters(), lr=2e-4)
    batch, integ, R = make_batch(), Leapfrog(position_dim=1), Reversal.momentum_flip(2, 1)

    def step() -> None:
        out = trs_loss(
            fn,
            integ,
            batch["x0"],
            batch["t"],
            batch["y"],
            R,
            trs_weight=trs_weight,
            batched=batched,
        )
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()

    return step


def hoden_step_fn(separable: bool) -> Callable[[], None]:
    """TRS-HODEN step at the exp II setting (2x100 MLPs); ``separable=False`` forces the generic
    leapfrog path (3 full-field evaluations per step instead of 2 half-field ones)."""
    torch.manual_seed(0)
    field = HODENField(2, (100, 100))
    field.separable = separable
    opt = torch.optim.Adam(field.parameters(), lr=2e-4)
    batch, integ, R = make_batch(), Leapfrog(position_dim=1), Reversal.momentum_flip(2, 1)

    def step() -> None:
        out = trs_loss(field, integ, batch["x0"], batch["t"], batch["y"], R, trs_weight=10.0)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()

    return step


class _EpochTimer(pl.Callback):
    """Wall time of the training epoch alone (no Trainer construction, set-up or tear-down)."""

    def on_train_epoch_start(self, trainer, pl_module):
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.t0


def loop_vs_lightning(n_steps: int, trs_weight: float) -> tuple[Callable, Callable]:
    """Two callables running ``n_steps`` TRS steps, a bare loop and Lightning's fit loop, each
    returning the seconds its ``n_steps`` steps took (the fit's one-off set-up excluded)."""
    batch = make_batch()
    loader = DataLoader(_Repeat(batch, n_steps), batch_size=None, collate_fn=None)

    def bare() -> float:
        torch.manual_seed(0)
        field = ODENField(2, HIDDEN)
        opt = torch.optim.Adam(field.parameters(), lr=2e-4)
        integ, R = Leapfrog(position_dim=1), Reversal.momentum_flip(2, 1)
        t0 = time.perf_counter()
        for b in loader:
            out = trs_loss(field, integ, b["x0"], b["t"], b["y"], R, trs_weight=trs_weight)
            opt.zero_grad(set_to_none=True)
            out.total.backward()
            opt.step()
        return time.perf_counter() - t0

    def lightning() -> float:
        torch.manual_seed(0)
        model = TRSODEN(ODENField(2, HIDDEN), "leapfrog", trs_weight=trs_weight)
        model.reversal = Reversal.momentum_flip(2, 1)
        model.integrator.position_dim = 1
        timer = _EpochTimer()
        trainer = pl.Trainer(
            max_epochs=1,
            callbacks=[timer],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        trainer.fit(model, train_dataloaders=loader)
        return timer.seconds

    return bare, lightning


def rollout_fns() -> dict[str, Callable[[], None]]:
    """Forward + backward of one 10-step rollout of the 150-window batch (shared uniform grid)."""
    torch.manual_seed(0)
    field = ODENField(2, HIDDEN)
    batch = make_batch()
    x0 = batch["x0"]
    t1 = torch.linspace(0, 1, STEPS + 1)
    t = t1.expand(BATCH, STEPS + 1).contiguous()

    def ours(integ):
        def run() -> None:
            field.zero_grad(set_to_none=True)
            integ(field, x0, t).pow(2).mean().backward()

        return run

    def tde() -> None:
        field.zero_grad(set_to_none=True)
        torchdiffeq.odeint(field, x0, t1, method="rk4").pow(2).mean().backward()

    return {"ours_rk4": ours(RK4()), "ours_leapfrog": ours(Leapfrog()), "torchdiffeq_rk4": tde}


def test_rollout_fn(integ) -> Callable[[], None]:
    torch.manual_seed(0)
    field = ODENField(2, HIDDEN)
    x0 = torch.randn(50, 2)
    t = torch.linspace(0, 20, 201).expand(50, 201).contiguous()

    def run() -> None:
        with torch.no_grad():
            integ(field, x0, t)

    return run


def timed(fn: Callable[[], None], inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def interleaved(fns: dict[str, Callable], repeats: int, inner: int = 1) -> dict[str, float]:
    """Median seconds per call of each of ``fns``, run in turn ``repeats`` times (``inner`` calls
    per sample); ``inner=0``: the callables time themselves and return their seconds."""
    for fn in fns.values():  # warm-up
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(fn() if inner == 0 else timed(fn, inner))
    return {k: statistics.median(v) for k, v in samples.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--inner", type=int, default=5, help="calls per timed sample")
    parser.add_argument("--lightning-steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="also time a torch.compile'd field")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/trs_speed.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    steps = {
        "oden_step": train_step_fn(0.0, True),
        "trs_step_one_call": train_step_fn(10.0, True),
        "trs_step_two_call": train_step_fn(10.0, False),
    }
    if args.compile:
        steps["trs_step_one_call_compiled"] = train_step_fn(10.0, True, compile_field=True)
    res = interleaved(steps, args.repeats, args.inner)
    hoden = {
        "trs_hoden_step_separable": hoden_step_fn(True),
        "trs_hoden_step_generic": hoden_step_fn(False),
    }
    res.update(interleaved(hoden, args.repeats, args.inner))

    bare, lit = loop_vs_lightning(args.lightning_steps, 10.0)
    fit = interleaved({"bare_loop": bare, "lightning": lit}, max(5, args.repeats), inner=0)
    fit = {k: v / args.lightning_steps for k, v in fit.items()}

    roll = interleaved(rollout_fns(), args.repeats, args.inner)
    test = interleaved(
        {
            "test_rollout_leapfrog": test_rollout_fn(Leapfrog()),
            "test_rollout_rk4": test_rollout_fn(RK4()),
        },
        args.repeats,
        1,
    )
    ratios = {
        "trs_one_call / oden": res["trs_step_one_call"] / res["oden_step"],
        "trs_two_call / oden": res["trs_step_two_call"] / res["oden_step"],
        "trs_one_call / trs_two_call (target < 1)": (
            res["trs_step_one_call"] / res["trs_step_two_call"]
        ),
        "trs_hoden separable / generic leapfrog": (
            res["trs_hoden_step_separable"] / res["trs_hoden_step_generic"]
        ),
        "lightning / bare_loop (target <= 1.05)": fit["lightning"] / fit["bare_loop"],
        "ours_rk4 / torchdiffeq_rk4": roll["ours_rk4"] / roll["torchdiffeq_rk4"],
        "ours_leapfrog / torchdiffeq_rk4": roll["ours_leapfrog"] / roll["torchdiffeq_rk4"],
    }
    if args.compile:
        ratios["trs_one_call_compiled / trs_one_call"] = (
            res["trs_step_one_call_compiled"] / res["trs_step_one_call"]
        )
    throughput = {k: 50 * 200 / v for k, v in test.items()}
    payload = {
        "setting": {"batch": BATCH, "steps": STEPS, "hidden": HIDDEN, "integrator": "leapfrog"},
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
        },
        "median_seconds": {**res, **{f"{k}_per_step": v for k, v in fit.items()}, **roll, **test},
        "ratios": ratios,
        "test_rollout_traj_steps_per_s": throughput,
    }
    print("median seconds:")
    for k, v in payload["median_seconds"].items():
        print(f"  {k:40s} {v * 1e3:9.2f} ms")
    print("ratios:")
    for k, v in ratios.items():
        print(f"  {k:40s} {v:9.3f}")
    print("test rollout (50 traj x 200 steps, no grad):")
    for k, v in throughput.items():
        print(f"  {k:40s} {v:9.0f} trajectory-steps/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return payload


if __name__ == "__main__":
    main()
