"""Speed: runs the project's speed scripts at small repeat counts and collects their A/B ratios.

* ``benchmarks/trs_speed.py`` (called in-process, its ``main`` returns the payload): TRS-ODEN step
  vs ODEN step, one-call vs two-call TRS rollout, Lightning vs a bare loop, our RK4 / leapfrog vs
  torchdiffeq's fixed-step ``rk4``, test-rollout throughput. CPU.
* ``benchmarks/pac_overhead.py`` (in-process, at 1 thread; :func:`~benchmarks.pac_overhead.measure`
  returns its rows): ``GradientMask`` step vs plain step, bare and inside Lightning fits; it adds
  a ResNet-18-sized CNN on CUDA by itself when a GPU is present.
* ``benchmarks/data_generation.py`` (subprocess, parsed): vectorised data generation vs a
  per-trajectory solve loop.
* On CUDA only (when ``torch.cuda.is_available()``): :func:`gpu_trs` times the ODEN / TRS-ODEN
  training step and the test rollout on the GPU.

Outputs ``speed.json`` / ``speed.md``.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine, markdown_table, write_outputs

REPO = Path(__file__).resolve().parents[1]
_NUM = r"(-?[0-9.]+)"


def run_trs_speed(
    work: Path, repeats: int, inner: int, lightning_steps: int, threads: int | None = None
) -> dict[str, Any]:
    """``benchmarks/trs_speed.py`` in-process; returns its JSON payload.

    ``threads``: torch CPU threads for this run only (default: the current setting)."""
    from benchmarks import trs_speed

    argv = [
        f"--repeats={repeats}",
        f"--inner={inner}",
        f"--lightning-steps={lightning_steps}",
        f"--out={work / f'trs_speed_{threads or torch.get_num_threads()}t.json'}",
    ]
    before = torch.get_num_threads()
    try:
        return trs_speed.main([*argv, f"--threads={threads}"] if threads else argv)
    finally:
        torch.set_num_threads(before)


def _script(name: str, args: list[str]) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks/{name} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def run_pac_overhead(budget: str, threads: int = 1) -> list[dict[str, Any]]:
    """``benchmarks/pac_overhead.py``'s rows, in-process at ``threads`` CPU threads (restored
    afterwards), with the repeat counts of ``budget`` (``ci``, ``smoke``, else full)."""
    from benchmarks import pac_overhead

    steps, rounds, fit_steps, pairs, pair_steps = {
        "ci": (60, 4, 60, 1, 200),
        "smoke": (5, 1, 12, 1, 12),
    }.get(budget, (200, 10, 100, 2, 300))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return pac_overhead.measure(steps, rounds, fit_steps, pairs, pair_steps)
    finally:
        torch.set_num_threads(before)


def parse_pac_overhead(text: str) -> list[dict[str, Any]]:
    """Rows of ``pac_overhead.py``'s *printed* tables (e.g. the raw outputs kept under
    ``docs/results/pac_overhead/``): bare steps, paired and separate Lightning fits. A run
    gets them as data from :func:`run_pac_overhead` instead."""
    rows, context = [], "bare step"
    pattern = re.compile(
        rf"^(?P<model>.+?)\s+(?P<device>cpu|cuda)\s+(?P<phase>allocate|calibrate)\s+"
        rf"(?P<optimizer>adamw_fused|adam_fused|adamw|adam)\s+(?P<plain>{_NUM})\s+(?P<masked>{_NUM})\s+"
        rf"(?P<overhead>{_NUM})%(?:\s+(?P<callback>{_NUM})%)?(?:\s+(?P<zero_v>{_NUM})%)?"
    )
    for line in text.splitlines():
        if line.startswith("inside Lightning"):
            context = "inside Lightning fit"
        elif line.startswith("paired in one Lightning fit"):
            context = "paired in one Lightning fit"
        m = pattern.match(line)
        if m:
            rows.append(
                {
                    "setting": context,
                    "model": m["model"].strip(),
                    "device": m["device"],
                    "phase": m["phase"],
                    "optimizer": m["optimizer"],
                    "plain_ms": float(m["plain"]),
                    "masked_ms": float(m["masked"]),
                    "overhead_pct": float(m["overhead"]),
                    "callback_pct": None if m["callback"] is None else float(m["callback"]),
                    "zero_v_pct": None if m["zero_v"] is None else float(m["zero_v"]),
                }
            )
    if not rows:
        raise ValueError(f"could not parse pac_overhead.py output:\n{text[-1000:]}")
    return rows


def parse_data_generation(text: str) -> list[dict[str, Any]]:
    """Rows of ``data_generation.py``'s printed table (case, A ours [s], B loop [s], A/B)."""
    rows = []
    for line in text.splitlines():
        m = re.match(rf"^(?P<case>.+?)\s+{_NUM}\s+{_NUM}\s+{_NUM}\s*$", line)
        if m and not line.startswith("case"):
            rows.append(
                {
                    "case": m["case"].strip(),
                    "ours_s": float(m.group(2)),
                    "loop_s": float(m.group(3)),
                    "ratio": float(m.group(4)),
                }
            )
    if not rows:
        raise ValueError(f"could not parse data_generation.py output:\n{text[-1000:]}")
    return rows


def _median_time(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gpu_trs(repeats: int = 20, device: str = "cuda") -> dict[str, Any]:
    """ODEN vs TRS-ODEN training step and test-rollout throughput on ``device`` (exp I setting).

    Run by :func:`run` on CUDA only (the CPU numbers come from ``trs_speed.py``)."""
    from benchmarks.trs_speed import make_batch
    from pl_pac_trs.trs import Leapfrog, ODENField, Reversal, trs_loss

    device = torch.device(device)
    batch = {k: v.to(device) for k, v in make_batch().items()}
    integ, rev = Leapfrog(position_dim=1), Reversal.momentum_flip(2, 1).to(device)

    def step_fn(lam: float):
        torch.manual_seed(0)
        field = ODENField(2, (1000,)).to(device)
        opt = torch.optim.Adam(field.parameters(), lr=2e-4)

        def step() -> None:
            out = trs_loss(field, integ, batch["x0"], batch["t"], batch["y"], rev, trs_weight=lam)
            opt.zero_grad(set_to_none=True)
            out.total.backward()
            opt.step()

        return step

    steps = {"oden_step": step_fn(0.0), "trs_step": step_fn(10.0)}
    for fn in steps.values():  # warm-up
        for _ in range(min(3, repeats)):
            fn()
    med = {k: _median_time(fn, repeats, device) for k, fn in steps.items()}
    field = ODENField(2, (1000,)).to(device)
    x0 = torch.randn(50, 2, device=device)
    t = torch.linspace(0, 20, 201, device=device).expand(50, 201).contiguous()

    def rollout() -> None:
        with torch.no_grad():
            integ(field, x0, t)

    rollout()
    med["test_rollout"] = _median_time(rollout, repeats, device)
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "median_seconds": med,
        "ratios": {"trs / oden": med["trs_step"] / med["oden_step"]},
        "test_rollout_traj_steps_per_s": 50 * 200 / med["test_rollout"],
    }


def run(
    out: str | Path = "docs/results",
    work: str | Path = "runs/bench/speed",
    budget: str = "ci",
    progress: bool = True,
) -> dict[str, Any]:
    """Runs the speed scripts (small repeat counts under ``ci``/``smoke``) and collects them."""
    from tqdm.auto import tqdm

    out, work = Path(out), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    small = budget != "full"
    # TRS speed also at every core of the machine: batching the two rollouts into one call
    # pays off most where each kernel call spreads over threads
    all_threads = min(os.cpu_count() or 1, 8)
    tasks = ["trs_speed", "pac_overhead", "data_generation"]
    if all_threads > torch.get_num_threads():
        tasks.insert(1, "trs_speed_all_threads")
    if torch.cuda.is_available():
        tasks.append("gpu_trs")
    payload: dict[str, Any] = {"budget": budget, "machine": machine(), "errors": {}}
    bar = tqdm(tasks, desc="speed", disable=not progress, unit="script")
    for name in bar:
        bar.set_postfix_str(name)
        try:
            if name in ("trs_speed", "trs_speed_all_threads"):
                reps = (5, 3, 30) if budget == "ci" else (1, 1, 4) if small else (7, 5, 40)
                threads = all_threads if name == "trs_speed_all_threads" else None
                payload[name] = run_trs_speed(work, *reps, threads=threads)
            elif name == "pac_overhead":
                payload[name] = run_pac_overhead(budget)
            elif name == "data_generation":
                args = ["--repeats=1", "--attractor-count=100"] if small else ["--repeats=3"]
                payload[name] = parse_data_generation(_script("data_generation.py", args))
            else:
                payload[name] = gpu_trs()
        except Exception as exc:  # reported in the tables, not hidden
            payload["errors"][name] = f"{type(exc).__name__}: {exc}"
    payload["gpu_run"] = torch.cuda.is_available()
    write_outputs(out, "speed", payload, to_markdown(payload))
    return payload


def to_markdown(payload: dict[str, Any]) -> str:
    lines = [f"# Speed ({payload['budget']} repeat counts), medians of interleaved repeats", ""]
    runs = [payload[k] for k in ("trs_speed", "trs_speed_all_threads") if payload.get(k)]
    if runs:
        threads = [f"{r['machine']['threads']} thread(s)" for r in runs]
        lines += [
            "## TRS-ODEN (exp I setting: 150 windows x 10 steps, 1x1000 MLP, leapfrog; CPU)",
            "",
            markdown_table(
                ["ratio", *threads],
                [[k] + [f"{r['ratios'][k]:.3f}" for r in runs] for k in runs[0]["ratios"]],
            ),
            "",
            markdown_table(
                ["test rollout (50 traj x 200 steps), trajectory-steps/s", *threads],
                [
                    [k] + [f"{r['test_rollout_traj_steps_per_s'][k]:.0f}" for r in runs]
                    for k in runs[0]["test_rollout_traj_steps_per_s"]
                ],
            ),
            "",
        ]
    pac = payload.get("pac_overhead")
    if pac:
        rows = [
            [
                r["setting"],
                r["model"],
                r["device"],
                r["phase"],
                r["optimizer"],
                f"{r['plain_ms']:.3f}",
                f"{r['masked_ms']:.3f}",
                f"{r['overhead_pct']:.1f}%",
                "n/a" if r.get("callback_pct") is None else f"{r['callback_pct']:.1f}%",
                "n/a" if r.get("zero_v_pct") is None else f"{r['zero_v_pct']:.1f}%",
            ]
            for r in pac
        ]
        header = [
            *("setting", "model", "device", "phase", "optimizer", "plain ms", "masked ms"),
            *("overhead", "callback's own work", "trainable entries with v = 0"),
        ]
        lines += ["## GradientMask step vs plain step", "", markdown_table(header, rows), ""]
    gen = payload.get("data_generation")
    if gen:
        rows = [
            [r["case"], f"{r['ours_s']:.3f}", f"{r['loop_s']:.3f}", f"{r['ratio']:.3f}"]
            for r in gen
        ]
        header = ["case", "ours [s]", "per-trajectory loop [s]", "ours / loop"]
        lines += ["## Data generation", "", markdown_table(header, rows), ""]
    gpu = payload.get("gpu_trs")
    if gpu:
        lines += [
            f"## TRS-ODEN on {gpu['device']}",
            "",
            markdown_table(
                ["quantity", "value"],
                [
                    ["TRS step / ODEN step", f"{gpu['ratios']['trs / oden']:.3f}"],
                    ["test rollout traj-steps/s", f"{gpu['test_rollout_traj_steps_per_s']:.0f}"],
                ],
            ),
            "",
        ]
    elif not payload.get("gpu_run"):
        lines += [
            "No CUDA device: the GPU variants (TRS step, ResNet-18-sized CNN) were not run.",
            "",
        ]
    if payload["errors"]:
        lines += ["## Errors", ""] + [f"- {k}: {v}" for k, v in payload["errors"].items()]
    return "\n".join(lines) + "\n"
