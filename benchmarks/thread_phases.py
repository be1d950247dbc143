"""Slow phases of multi-threaded CPU training on a small VM, window by window, 1 vs 2 threads.

On the 2-core VM of these benchmarks, a 2-thread process sometimes runs for seconds to minutes
at 2-3x its usual time per step, slower than one thread, and then recovers; one thread does
not (docs/trs.md, "Threads"). This runs a workload for ``--seconds`` in one fresh process per
thread count, pinned to ``--cores``, and prints the median time of each ``--window``-second
window, the fastest and the median window, and how many windows took more than ``--slow`` times
the fastest:

* ``transpose``: plain PyTorch, none of this package: a 150x1000 ``sigmoid``, a transposed copy
  and an affine map (each thread's output rows are read by the other thread in the next op);
* ``exp1``: the exp I ODEN step of :class:`benchmarks.common.Exp1BareStep` (bare loop).

    python -m benchmarks.thread_phases --workload transpose --seconds 60
    python -m benchmarks.thread_phases --workload exp1 --seconds 120
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence

from benchmarks.common import run_child

WORKLOADS = ("transpose", "exp1")


def _workload(name: str) -> Callable[[], None]:
    import torch

    if name == "transpose":
        state = {"x": torch.randn(150, 1000)}

        def run() -> None:
            for _ in range(10):
                y = torch.sigmoid(state["x"]).t().contiguous()
                state["x"] = y.t() * 0.5 + 0.1

        return run
    from benchmarks.common import Exp1BareStep, exp1_data

    step = Exp1BareStep(exp1_data()[1], 0.0)
    return lambda: step()


def child(workload: str, threads: int, seconds: float, window: float) -> list[float]:
    """Median seconds per call of ``workload`` in each ``window``-second window (one process)."""
    import torch

    torch.set_num_threads(threads)
    run = _workload(workload)
    for _ in range(5):  # warm-up
        run()
    medians: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        times: list[float] = []
        stop = time.perf_counter() + window
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times))
    return medians


def summarise(medians: Sequence[float], slow: float) -> dict[str, float]:
    """The fastest and the median window, and the number of windows slower than ``slow`` times
    the fastest (a slow phase can last longer than half the run)."""
    fastest = min(medians)
    return {
        "fastest_s": fastest,
        "median_s": statistics.median(medians),
        "slow_windows": sum(m > slow * fastest for m in medians),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", choices=WORKLOADS, default="transpose")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts, in turn")
    p.add_argument("--cores", default="0,1", help="taskset core list of every process")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--window", type=float, default=3.0)
    p.add_argument("--slow", type=float, default=1.5, help="a slow window: > SLOW x the fastest")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        counts = [int(t) for t in args.threads.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or args.seconds <= 0 or not 0 < args.window <= args.seconds:
        raise SystemExit("--threads takes positive integers; 0 < --window <= --seconds")
    if args.child:
        print(json.dumps(child(args.workload, counts[0], args.seconds, args.window)))
        return 0
    for threads in counts:
        child_args = ["--child", "--workload", args.workload, "--threads", str(threads)]
        child_args += ["--seconds", str(args.seconds), "--window", str(args.window)]
        medians = run_child("benchmarks.thread_phases", child_args, threads, args.cores)
        s = summarise(medians, args.slow)
        print(
            f"{args.workload}, {threads} thread(s): windows (ms) "
            + " ".join(f"{1e3 * m:.2f}" for m in medians)
            + f"; fastest {1e3 * s['fastest_s']:.2f} ms, median {1e3 * s['median_s']:.2f} ms, "
            f"{s['slow_windows']} of {len(medians)} windows > {args.slow}x the fastest",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
