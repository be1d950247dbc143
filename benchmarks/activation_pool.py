"""The fused rollouts' activation pool, A/B over fresh processes (exp I, bare loop, CPU).

How fast a process trains exp I used to depend on the process: in some, glibc handed the
activations freed at the end of every step back to the system and the next step faulted them
in again (docs/trs.md, "Allocation"). One process cannot show that, so this starts
``--processes`` fresh processes per arm, alternating, each pinned to the same core and training
the exp I field (150 windows x 10 leapfrog steps, 1x1000 tanh MLP, Adam lr 2e-4) in a bare loop:

* ``pool``: as shipped, the saved activations in blocks from
  :data:`~pl_pac_trs.trs.fused.activation_pool.POOL`;
* ``fresh``: every activation allocated afresh (the code before the pool).

Each process reports its median ms per epoch and minor page faults per epoch after a warm-up;
``--trim`` calls glibc's ``malloc_trim(0)`` after every step, the worst case (every freed page
given back). The table gives, per arm, the median over processes, the slowest process, and how
many processes faulted more than 1000 pages per epoch.

    python -m benchmarks.activation_pool --processes 8 --trs-weight 0     # and 10, --trim
"""

from __future__ import annotations

import argparse
import ctypes
import json
import resource
import statistics
import time
from collections.abc import Sequence

from benchmarks.common import run_child

ARMS = ("pool", "fresh")
FAULTY = 1000  # page faults per epoch that mark a process whose activations are trimmed


def child(arm: str, epochs: int, warmup: int, trs_weight: float, trim: bool) -> dict[str, float]:
    """One process's arm: median seconds and minor page faults per epoch after ``warmup``."""
    import torch

    from benchmarks.common import Exp1BareStep, exp1_data
    from pl_pac_trs.trs.fused import tanh_mlp, tanh_mlp_rk4

    if arm == "fresh":
        for module in (tanh_mlp, tanh_mlp_rk4):
            module.rollout_activations = lambda *args: None
    malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim if trim else None
    torch.set_num_threads(1)
    _, batch = exp1_data()
    step = Exp1BareStep(batch, trs_weight)
    times, faults, loss = [], [], float("nan")
    for _ in range(epochs):
        f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        out = step()[2]
        if malloc_trim is not None:
            malloc_trim(0)
        times.append(time.perf_counter() - t0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        loss = float(out.total.detach())
    return {
        "s": statistics.median(times[warmup:]),
        "faults": statistics.median(faults[warmup:]),
        "loss": loss,
    }


def run(
    processes: int, epochs: int, warmup: int, trs_weight: float, trim: bool, core: str = "0"
) -> dict[str, list[dict[str, float]]]:
    """``processes`` fresh processes per arm, alternating; each one's :func:`child` result."""
    results: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    for _ in range(processes):
        for arm in ARMS:
            args = ["--child", arm, "--epochs", str(epochs), "--warmup", str(warmup)]
            args += ["--trs-weight", str(trs_weight)] + (["--trim"] if trim else [])
            results[arm].append(run_child("benchmarks.activation_pool", args, 1, core))
    return results


def table(results: dict[str, list[dict[str, float]]]) -> list[str]:
    """Markdown rows: per arm the median and slowest ms per epoch over processes, the processes
    above :data:`FAULTY` page faults per epoch, the median faults and the last loss."""
    rows = [
        "| arm | ms / epoch, median of processes | slowest process | processes faulting > "
        f"{FAULTY} pages / epoch | page faults / epoch, median | loss |",
        "|---|---|---|---|---|---|",
    ]
    for arm, rs in results.items():
        ms = [1e3 * r["s"] for r in rs]
        faulty = sum(r["faults"] > FAULTY for r in rs)
        rows.append(
            f"| {arm} | {statistics.median(ms):.2f} | {max(ms):.2f} | {faulty} of {len(rs)} | "
            f"{statistics.median(r['faults'] for r in rs):.0f} | {rs[-1]['loss']:.5f} |"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=8, help="fresh processes per arm")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--trs-weight", type=float, default=0.0)
    p.add_argument("--trim", action="store_true", help="malloc_trim(0) after every step")
    p.add_argument("--core", default="0", help="taskset core list of every process")
    p.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs <= args.warmup or args.processes < 1:
        raise SystemExit("--epochs must exceed --warmup; --processes at least 1")
    if args.child:
        r = child(args.child, args.epochs, args.warmup, args.trs_weight, args.trim)
        print(json.dumps(r))
        return 0
    results = run(args.processes, args.epochs, args.warmup, args.trs_weight, args.trim, args.core)
    for arm, rs in results.items():
        print(arm, "per process (ms, faults):", [(round(1e3 * r["s"], 2), r["faults"]) for r in rs])
    trim = ", malloc_trim(0) after every step" if args.trim else ""
    print(f"exp I bare loop, trs_weight {args.trs_weight}, 1 thread{trim}:")
    print("\n".join(table(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
