"""Lightning's per-epoch overhead at full batch, A/B inside one process.

The exp I setting (150 windows x 10 leapfrog steps, one full batch per epoch, a 1x``hidden``
tanh MLP, Adam lr 2e-4): :class:`~pl_pac_trs.trs.TRSODEN` fits in a Lightning ``Trainer``
(logging every 10th step, as the shipped configs), and after each of its epochs a bare PyTorch
step of an identical copy of the field runs in the same process on the same batch. The
Lightning epoch is timed from ``on_train_epoch_start`` to ``on_train_epoch_end`` (data fetch,
hooks, closure, backward, optimizer step), the bare step from ``zero_grad`` to ``step``. Both
see the same process state and machine load, epoch by epoch, which the separate-process
comparison of :mod:`benchmarks.reference_speed` cannot give (there one process of an arm can run
10-60% slower than the next). ``--hidden 8`` makes the compute negligible: the difference is
then Lightning's own per-step work.

``--loaders full,dataloader`` fits once with each training loader, ``--rounds`` times in
turn in one process: ``full`` is what the datamodule hands out at full batch
(:class:`~pl_pac_trs.data.full_batch.FullBatchLoader`), ``dataloader`` the shuffling
``DataLoader`` it used before (same batch rows, permuted each epoch).

    taskset -c 1 python -m benchmarks.lightning_overhead --threads 1 --trs-weight 0
    taskset -c 1 python -m benchmarks.lightning_overhead --threads 1 --trs-weight 10
    taskset -c 1 python -m benchmarks.lightning_overhead --loaders full,dataloader --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from benchmarks.common import exp1_data, quiet, timing_trainer
from pl_pac_trs.data.sampling import EpochSeededSampler
from pl_pac_trs.data.windows import collate_batch
from pl_pac_trs.trs import TRSODEN, Leapfrog, ODENField, Reversal, trs_loss

LOADERS = ("full", "dataloader")


def measure(
    hidden: int, epochs: int, trs_weight: float, warmup: int = 20, loader: str = "full"
) -> dict[str, float]:
    """Median Lightning epoch and in-process bare step (seconds) after ``warmup`` epochs, their
    ratio, the median of the per-epoch ratios, and both arms' final losses. ``loader``: the
    Lightning arm's training loader (see the module docstring)."""
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")
    dm, batch = exp1_data()
    if loader == "dataloader":
        data = dm.train_dataset
        shuffled = DataLoader(
            data, batch_size=len(data), sampler=EpochSeededSampler(data), collate_fn=collate_batch
        )
        dm.train_dataloader = lambda: shuffled
    torch.manual_seed(0)
    field = ODENField(2, (hidden,), init="reference")
    twin = copy.deepcopy(field)
    opt = torch.optim.Adam(twin.parameters(), lr=2e-4)
    integrator, reversal = Leapfrog(), Reversal.momentum_flip(2, 1)
    lit: list[float] = []
    bare: list[float] = []
    losses = {"bare": float("nan")}

    class _Paired(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            lit.append(time.perf_counter() - self.t0)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            out = trs_loss(
                twin, integrator, batch["x0"], batch["t"], batch["y"], reversal, trs_weight
            )
            out.total.backward()
            opt.step()
            bare.append(time.perf_counter() - t0)
            losses["bare"] = float(out.total.detach())

    model = TRSODEN(field, integrator="leapfrog", trs_weight=trs_weight)
    trainer = timing_trainer(epochs, [_Paired()])
    trainer.fit(model, datamodule=dm)
    a, b = lit[warmup:], bare[warmup:]
    return {
        "lightning_s": statistics.median(a),
        "bare_s": statistics.median(b),
        "ratio": statistics.median(a) / statistics.median(b),
        "paired_ratio": statistics.median(x / y for x, y in zip(a, b, strict=True)),
        "lightning_loss": float(trainer.callback_metrics["train/loss"]),
        "bare_loss": losses["bare"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--trs-weight", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--loaders", default="full", help=f"comma-separated, of {', '.join(LOADERS)}")
    p.add_argument("--rounds", type=int, default=1, help="fits per loader, in turn")
    args = p.parse_args(argv)
    if args.epochs <= args.warmup:
        raise SystemExit("--epochs must exceed --warmup")
    loaders = [x.strip() for x in args.loaders.split(",") if x.strip()]
    if not loaders or any(x not in LOADERS for x in loaders) or args.rounds < 1:
        raise SystemExit(f"--loaders takes {', '.join(LOADERS)}; --rounds at least 1")
    quiet()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    results: dict[str, list[dict[str, float]]] = {x: [] for x in loaders}
    try:
        for _ in range(args.rounds):
            for loader in loaders:
                r = measure(args.hidden, args.epochs, args.trs_weight, args.warmup, loader)
                results[loader].append(r)
                print(
                    f"hidden {args.hidden}, trs_weight {args.trs_weight}, {args.threads} "
                    f"thread(s), {loader} loader: Lightning epoch {1e3 * r['lightning_s']:.2f} "
                    f"ms, bare step in the same process {1e3 * r['bare_s']:.2f} ms; Lightning / "
                    f"bare {r['ratio']:.3f} (median of per-epoch ratios "
                    f"{r['paired_ratio']:.3f}); losses {r['lightning_loss']:.5f} / "
                    f"{r['bare_loss']:.5f}",
                    flush=True,
                )
    finally:
        torch.set_num_threads(threads)
    if args.rounds > 1 or len(loaders) > 1:
        for loader, rs in results.items():
            extra = statistics.median(1e3 * (r["lightning_s"] - r["bare_s"]) for r in rs)
            ratio = statistics.median(r["ratio"] for r in rs)
            print(
                f"{loader} loader, median of {len(rs)} fit(s): Lightning / bare {ratio:.3f}, "
                f"Lightning's extra time {extra:.2f} ms per epoch"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
