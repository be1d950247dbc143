"""Our TRS-ODEN against the reference code (github.com/inhuh/trs-oden), side by side, same CPU.

Exp I reference setting: 150 windows x 10 leapfrog steps, full batch, 1x1000 tanh MLP, Adam
lr 2e-4, TRS-ODEN (lam 10) and ODEN (lam 0). Arms, each a long-lived process running ONE fit that
pauses between chunks of epochs, so the arms run interleaved (round-robin, one at a time, all
pinned to the same cores with the same thread count):

* ``reference``: the official Keras code (TF 2 + ``tf_keras``, graph mode, legacy Adam), driven
  by :mod:`benchmarks.reference_worker` under ``--tf-python``;
* ``lightning``: our :class:`~pl_pac_trs.trs.TRSODEN` in a Lightning ``Trainer`` (the epoch
  timed from a callback: the Trainer's one-off set-up is not counted);
* ``bare``: the same loss and Adam step in a bare PyTorch loop.

Each reports seconds per training epoch; the table gives medians (after ``--warmup`` epochs)
and ratios to the reference, plus each arm's loss after the same number of epochs.

Getting the reference and a TensorFlow::

    git clone https://github.com/inhuh/trs-oden /path/to/trs-oden
    python -m venv /path/tfenv && /path/tfenv/bin/pip install tensorflow-cpu tf_keras scipy

Run: ``python -m benchmarks.reference_speed --reference /path/to/trs-oden
--tf-python /path/tfenv/bin/python [--threads 1] [--rounds 7] [--chunk 20]``; ``--threads 2``
for the two-thread table, ``--full`` adds the whole 5000-epoch exp I TRS-ODEN run (fit + test)
of each side, one after the other. ``--arms lightning,bare`` runs without the reference.

``--baseline DIR`` (a checkout of another revision of this repository, e.g. ``git worktree add
/tmp/base main``) adds the arms ``lightning@baseline`` and ``bare@baseline``, the same workers
run from ``DIR``'s code, interleaved with ours: an A/B of two revisions where the reference
cannot run (``--arms lightning,bare --baseline DIR --sessions 3``; the ratio table gives
``arm/arm@baseline``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ARMS = ("reference", "lightning", "bare")
CONDITIONS = {"trs_oden": 10.0, "oden": 0.0}

_MISSING_REFERENCE = (
    "--reference: {path} is not a checkout of the reference code (no model.py); get it with\n"
    "  git clone https://github.com/inhuh/trs-oden {path}"
)
_MISSING_TF = (
    "--tf-python: {python} cannot import tensorflow and tf_keras; make one with\n"
    "  python -m venv /path/tfenv && /path/tfenv/bin/pip install tensorflow-cpu tf_keras scipy"
)


# ----------------------------------------------------------------------------- our workers
def _protocol_wait() -> int:
    request = json.loads(sys.stdin.readline() or '{"stop": true}')
    if request.get("stop"):
        raise SystemExit(0)
    return int(request["epochs"])


def _worker_bare(lam: float, total: int) -> None:
    from benchmarks.common import Exp1BareStep, exp1_data

    _, batch = exp1_data()
    step = Exp1BareStep(batch, trs_weight=lam)
    print(json.dumps({"ready": True}), flush=True)
    budget, times, loss = _protocol_wait(), [], float("nan")
    for _ in range(total):
        to_backward, adam, out = step()
        times.append(to_backward + adam)
        loss = float(out.total.detach())
        budget -= 1
        if budget == 0:
            print(json.dumps({"times": times, "loss": loss}), flush=True)
            times = []
            budget = _protocol_wait()


def _worker_lightning(lam: float, total: int) -> None:
    import lightning.pytorch as pl
    import torch

    from benchmarks.common import exp1_data, timing_trainer
    from pl_pac_trs.trs import TRSODEN, ODENField

    dm, _ = exp1_data()
    torch.manual_seed(0)  # the same initial weights as the bare arm
    model = TRSODEN(ODENField(2, (1000,), init="reference"), integrator="leapfrog", trs_weight=lam)

    class Pace(pl.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.start = 0.0
            self.budget = 0

        def on_train_start(self, trainer, pl_module) -> None:
            print(json.dumps({"ready": True}), flush=True)
            self.budget = _protocol_wait()

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.times.append(time.perf_counter() - self.start)
            self.budget -= 1
            if self.budget == 0:
                loss = float(trainer.callback_metrics.get("train/loss", float("nan")))
                print(json.dumps({"times": self.times, "loss": loss}), flush=True)
                self.times = []
                self.budget = _protocol_wait()

    timing_trainer(total, [Pace()]).fit(model, datamodule=dm)


def worker_main(arm: str, lam: float, threads: int, total: int) -> None:
    """Entry of a worker process of ours (``--worker``)."""
    import logging
    import warnings

    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("WANDB_MODE", "disabled")
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    {"bare": _worker_bare, "lightning": _worker_lightning}[arm](lam, total)


# ----------------------------------------------------------------------------- the driver
class Arm:
    """One worker process, driven through the JSON-lines protocol."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path = REPO) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=cwd
        )
        self._read()  # {"ready": true}
        self.times: list[float] = []
        self.loss = float("nan")

    def _read(self) -> dict[str, Any]:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} worker exited (code {self.proc.poll()})")
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)

    def run(self, epochs: int) -> list[float]:
        self.proc.stdin.write(json.dumps({"epochs": epochs}) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        self.loss = reply["loss"]
        return reply["times"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"stop": True}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()


def check_reference(reference: Path, tf_python: str) -> None:
    """Raises ``SystemExit`` (with how to get them) when the checkout or TensorFlow is missing."""
    if not (reference / "model.py").is_file():
        raise SystemExit(_MISSING_REFERENCE.format(path=reference))
    probe = subprocess.run(
        [tf_python, "-c", "import tensorflow, tf_keras"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise SystemExit(_MISSING_TF.format(python=tf_python))


def arm_command(
    arm: str, lam: float, threads: int, total: int, reference: Path | None, tf_python: str | None
) -> list[str]:
    if arm == "reference":
        worker = str(HERE / "reference_worker.py")
        return [str(tf_python), worker, str(reference), str(lam), str(threads), str(total)]
    return [sys.executable, "-m", "benchmarks.reference_speed", "--worker", arm]


def measure(
    arms: Sequence[str],
    threads: int,
    rounds: int,
    chunk: int,
    warmup: int,
    reference: Path | None = None,
    tf_python: str | None = None,
    cores: str | None = None,
    conditions: Sequence[str] = tuple(CONDITIONS),
    baseline: Path | None = None,
) -> dict[str, Any]:
    """Interleaved per-epoch times of every arm x condition; returns the payload (an arm
    ``<arm>@baseline`` runs ``<arm>`` from the checkout ``baseline``)."""
    from benchmarks.common import taskset

    total = warmup + rounds * chunk
    results: dict[str, Any] = {}
    for cond in conditions:
        lam = CONDITIONS[cond]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
        env.setdefault("WANDB_MODE", "disabled")
        live: dict[str, Arm] = {}
        try:
            for arm in arms:
                kind, _, base = arm.partition("@")
                cmd = taskset(cores) + arm_command(kind, lam, threads, total, reference, tf_python)
                if kind != "reference":
                    cmd += ["--lam", str(lam), "--threads", str(threads), "--total", str(total)]
                if base and baseline is not None:
                    base_env = dict(env, PYTHONPATH=str(baseline))
                    live[arm] = Arm(arm, cmd, base_env, cwd=baseline)
                else:
                    live[arm] = Arm(arm, cmd, env)
            for arm in live.values():
                arm.run(warmup)
            per_arm: dict[str, list[float]] = {a: [] for a in live}
            for r in range(rounds):
                order = list(live) if r % 2 == 0 else list(reversed(list(live)))
                for name in order:
                    per_arm[name] += live[name].run(chunk)
            results[cond] = {
                name: {
                    "median_ms": 1e3 * statistics.median(times),
                    "loss": live[name].loss,
                    "epochs": total,
                    "times_ms": [round(1e3 * t, 3) for t in times],
                }
                for name, times in per_arm.items()
            }
        finally:
            for arm in live.values():
                arm.close()
    return {"threads": threads, "rounds": rounds, "chunk": chunk, "warmup": warmup, **results}


def combine(sessions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several :func:`measure` payloads (fresh processes each) as one: per condition and arm the
    median of the sessions' medians, and the ratios taken within each session (where the arms
    ran interleaved) with their median over sessions. Separate processes of the same arm differ
    by up to ~10-30% on a shared machine (memory placement, neighbours), so a ratio from one
    session can be off by that much; the median over sessions is the figure to read."""
    first = sessions[0]
    out: dict[str, Any] = {k: first[k] for k in ("threads", "rounds", "chunk", "warmup")}
    out["sessions"] = len(sessions)
    ratios: dict[str, dict[str, list[float]]] = {}
    for cond in CONDITIONS:
        if cond not in first:
            continue
        arms = list(first[cond])
        out[cond] = {
            arm: {
                "median_ms": statistics.median(s[cond][arm]["median_ms"] for s in sessions),
                "session_ms": [s[cond][arm]["median_ms"] for s in sessions],
                "loss": first[cond][arm]["loss"],
                "epochs": first[cond][arm]["epochs"],
            }
            for arm in arms
        }
        pairs = [(a, "reference") for a in arms if a != "reference" and "reference" in arms]
        pairs += [("lightning", "bare")] if {"lightning", "bare"} <= set(arms) else []
        pairs += [(a, f"{a}@baseline") for a in arms if f"{a}@baseline" in arms]
        ratios[cond] = {
            f"{a}/{b}": [s[cond][a]["median_ms"] / s[cond][b]["median_ms"] for s in sessions]
            for a, b in pairs
        }
    out["ratios"] = ratios
    return out


def full_run(
    reference: Path, tf_python: str, threads: int, work: Path, cores: str | None = None
) -> dict[str, float]:
    """Wall time of the whole 5000-epoch exp I TRS-ODEN fit + test, ours (the shipped config
    through :func:`~pl_pac_trs.apps.experiment.run_config`) then theirs (``train_duffing.py``)."""
    from benchmarks.common import taskset

    env = dict(
        os.environ, OMP_NUM_THREADS=str(threads), WANDB_MODE="disabled", PYTHONPATH=str(REPO)
    )
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    ours = [
        sys.executable,
        "-c",
        "import sys; from pl_pac_trs.apps.experiment import run_config; "
        "run_config([sys.argv[1]], sys.argv[2:])",
        str(REPO / "configs/trs/exp1/trs_oden.yaml"),
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={work / 'ours'}",
    ]
    theirs = [
        tf_python,
        str(HERE / "reference_worker.py"),
        "--full",
        str(reference),
        str(threads),
        str(work / "theirs"),
    ]
    out = {}
    for name, cmd in (("ours", ours), ("reference", theirs)):
        start = time.perf_counter()
        subprocess.run(taskset(cores) + cmd, check=True, env=env, cwd=work, capture_output=True)
        out[name] = time.perf_counter() - start
    return out


def to_markdown(payload: dict[str, Any]) -> str:
    lines = [
        f"# TRS-ODEN epoch time vs the reference code ({payload['threads']} thread(s))",
        "",
        "Exp I reference setting, ms per training epoch, median over "
        f"{payload['rounds']} interleaved rounds x {payload['chunk']} epochs after "
        f"{payload['warmup']} warm-up epochs; ratio = arm / reference; loss after "
        "the same number of epochs.",
        "",
        "| condition | arm | ms / epoch | ratio to reference | loss |",
        "|---|---|---|---|---|",
    ]
    ratios = payload.get("ratios", {})
    for cond in CONDITIONS:
        if cond not in payload:
            continue
        ref = payload[cond].get("reference", {}).get("median_ms")
        for arm, row in payload[cond].items():
            per_session = ratios.get(cond, {}).get(f"{arm}/reference")
            if per_session:
                ratio = f"{statistics.median(per_session):.3f}"
            else:
                ratio = f"{row['median_ms'] / ref:.3f}" if ref else "n/a"
            lines.append(
                f"| {cond} | {arm} | {row['median_ms']:.2f} | {ratio} | {row['loss']:.5f} |"
            )
    if ratios:
        n = payload["sessions"]
        lines += [
            "",
            f"{n} sessions (fresh processes each); ms / epoch: median of the sessions' medians; "
            "ratios: median over sessions of the ratio within each session. Per session:",
            "",
            "| condition | ratio | median | per session |",
            "|---|---|---|---|",
        ]
        for cond, table in ratios.items():
            for name, values in table.items():
                each = ", ".join(f"{v:.3f}" for v in values)
                lines.append(f"| {cond} | {name} | {statistics.median(values):.3f} | {each} |")
    if "full" in payload:
        f = payload["full"]
        lines += [
            "",
            f"Whole exp I TRS-ODEN run (5000 epochs, fit + test): ours {f['ours']:.0f} s, "
            f"reference {f['reference']:.0f} s (ratio {f['ours'] / f['reference']:.3f}).",
        ]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reference_speed", description=__doc__)
    p.add_argument("--reference", type=Path, help="checkout of github.com/inhuh/trs-oden")
    p.add_argument("--tf-python", help="a Python with tensorflow and tf_keras")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cores", default=None, help="taskset core list (default: 0..threads-1)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--chunk", type=int, default=20)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument(
        "--sessions",
        type=int,
        default=1,
        help="repeat the interleaved measurement with fresh processes; report medians",
    )
    p.add_argument("--full", action="store_true", help="also the whole 5000-epoch exp I run")
    p.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another revision: adds its lightning / bare arms (A/B)",
    )
    p.add_argument("--out", type=Path, default=Path("docs/results/reference_speed"))
    p.add_argument("--work", type=Path, default=Path("runs/bench/reference_speed"))
    p.add_argument("--worker", choices=("bare", "lightning"), help=argparse.SUPPRESS)
    p.add_argument("--lam", type=float, default=10.0, help=argparse.SUPPRESS)
    p.add_argument("--total", type=int, default=0, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.worker:
        worker_main(args.worker, args.lam, args.threads, args.total)
        return 0
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if args.baseline is not None:
        if not (args.baseline / "benchmarks" / "reference_speed.py").is_file():
            raise SystemExit(f"--baseline: {args.baseline} is not a checkout of this repository")
        arms += [f"{a}@baseline" for a in arms if a != "reference"]
    unknown = [a for a in arms if a.partition("@")[0] not in ARMS]
    if unknown or not arms:
        raise SystemExit(f"--arms: {unknown or arms!r} not in {list(ARMS)}")
    if min(args.threads, args.rounds, args.chunk, args.sessions) < 1 or args.warmup < 0:
        raise SystemExit("--threads, --rounds, --chunk and --sessions must be >= 1, --warmup >= 0")
    if "reference" in arms or args.full:
        if args.reference is None or args.tf_python is None:
            raise SystemExit(
                "the reference arm needs --reference (a checkout of github.com/inhuh/trs-oden) "
                "and --tf-python (a Python with tensorflow-cpu and tf_keras); "
                "or pass --arms lightning,bare"
            )
        check_reference(args.reference, args.tf_python)
    cores = args.cores or ",".join(str(i) for i in range(args.threads))
    sessions = [
        measure(
            arms[k % len(arms) :] + arms[: k % len(arms)],  # who starts first rotates
            args.threads,
            args.rounds,
            args.chunk,
            args.warmup,
            args.reference,
            args.tf_python,
            cores,
            baseline=None if args.baseline is None else args.baseline.resolve(),
        )
        for k in range(args.sessions)
    ]
    payload = combine(sessions) if args.sessions > 1 else sessions[0]
    if args.full:
        payload["full"] = full_run(args.reference, args.tf_python, args.threads, args.work, cores)
    from benchmarks.common import machine, write_outputs

    payload["machine"] = machine()
    markdown = to_markdown(payload)
    write_outputs(args.out, f"reference_speed_{args.threads}t", payload, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
