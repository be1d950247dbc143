"""Data generation speed: vectorised block solve (ours) vs a per-trajectory solve loop.

A = ``generate_duffing`` / ``generate_attractor`` (all trajectories of a block stacked into one
DOP853 system), B = one ``solve_ivp`` call per trajectory (the reference code's approach; same
method and tolerances, so the ratio isolates the vectorisation). Prints the median of ``--repeats``
runs of each and the ratio A/B (lower is better), measured in one run.

Usage: ``python benchmarks/data_generation.py [--repeats 3] [--attractor-count 1150]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy.integrate import solve_ivp

from pl_pac_trs.data.attractor import attractor_field, generate_attractor
from pl_pac_trs.data.duffing import duffing_field, generate_duffing


def _loop(field, x0: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = []
    for x in x0:
        sol = solve_ivp(
            lambda s, y: field(s, y[None])[0],
            (t[0], t[-1]),
            x,
            method="DOP853",
            t_eval=t,
            rtol=1e-10,
            atol=1e-10,
        )
        out.append(sol.y.T)
    return np.stack(out)


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attractor-count", type=int, default=1150, help="train+val+test")
    args = parser.parse_args()

    field = duffing_field(1.0, 0.0, 0.0, 0.0)
    t_train, clean_train, _ = generate_duffing(50, 30, 3.0, 0.1, 0, 1.0, 0.0, 0.0, 0.0)
    t_test, clean_test, _ = generate_duffing(50, 200, 20.0, 0.0, 999, 1.0, 0.0, 0.0, 0.0)

    def ours_duffing():
        generate_duffing(50, 30, 3.0, 0.1, 0, 1.0, 0.0, 0.0, 0.0)
        generate_duffing(50, 200, 20.0, 0.0, 999, 1.0, 0.0, 0.0, 0.0)

    def loop_duffing():
        _loop(field, clean_train[:, 0], t_train)
        _loop(field, clean_test[:, 0], t_test)

    n = args.attractor_count
    t_att, clean_att, _ = generate_attractor(n, 400, 20.0, 0.05, 0)

    rows = [
        ("exp I train+test (50x30 + 50x200 steps)", ours_duffing, loop_duffing),
        (
            f"exp VI ({n} x 400 steps)",
            lambda: generate_attractor(n, 400, 20.0, 0.05, 0),
            lambda: _loop(attractor_field, clean_att[:, 0], t_att),
        ),
    ]
    print(f"{'case':45s} {'A ours [s]':>11s} {'B loop [s]':>11s} {'A/B':>7s}")
    for name, a, b in rows:
        ta, tb = _median(a, args.repeats), _median(b, args.repeats)
        print(f"{name:45s} {ta:11.3f} {tb:11.3f} {ta / tb:7.3f}")


if __name__ == "__main__":
    main()
