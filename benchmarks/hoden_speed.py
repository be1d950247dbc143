"""HODEN training-step speed: the closed-form field against autograd's double backward, A/B in
one run (medians of interleaved repeats).

One training step (TRS loss, ``zero_grad``, backward, Adam step) of an
:class:`~pl_pac_trs.trs.HODENField` at the shapes of the shipped configs:

* ``exp2_trs_hoden`` (``trs/exp2/trs_hoden``): 50 trajectories x 30 steps -> 150 consecutive
  windows x 10 leapfrog steps, 2x100 MLPs, ``trs_weight = 10`` (forward and reversed rollouts in one
  call: 300 rollouts), the separable leapfrog path;
* ``exp3_hoden`` (``trs/exp3/hoden``): 200 trajectories x 50 steps -> 1000 windows x 10 RK4
  steps, time-augmented 2x100 MLPs, ``trs_weight = 0`` (the config's: one rollout);
* ``exp3_trs_hoden``: the same with ``trs_weight = 0.5`` (TRS-HODEN at exp III, not a shipped
  condition: 2000 rollouts).

Window counts, steps and time grids are read from the configs; states and targets are random
(the step's cost does not depend on them). Arms, all from the same initial weights:

* ``autograd``: ``HODENField(fused=False)`` (``torch.autograd.grad(create_graph=True)``);
* ``closed_form``: ``HODENField()`` (the default: one closed-form node per derivative with a
  hand-written backward, :mod:`pl_pac_trs.trs.fused.tanh_grad`);
* ``plain_ops`` (``--plain-ops``): the same closed form as plain tensor operations recorded by
  autograd (no custom backward);
* ``fast_tanh`` (``--fast-tanh``): ``closed_form`` with ``tanh(z) = 2 sigmoid(2z) - 1`` (not
  exact).

Each arm first checks its loss and gradients against ``autograd`` (float32, printed as the largest
relative difference). Timing: per repeat, every arm runs ``--inner`` steps, the arms' order
alternating between repeats; medians of process time (CPU seconds of this process, less
sensitive to other load than wall time) and of wall time. Pin the process for stable numbers:
``taskset -c 1 python -m benchmarks.hoden_speed --threads 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

from pl_pac_trs.configs import config_path
from pl_pac_trs.data.windows import window_starts
from pl_pac_trs.trs import RK4, HODENField, Leapfrog, Reversal, trs_loss
from pl_pac_trs.trs.fused.tanh_grad import input_grad_forward, scalar_mlp_params

#: setting name -> (shipped config, TRS weight used here; key "lam" of the setting dict)
SETTINGS = {
    "exp2_trs_hoden": ("trs/exp2/trs_hoden", 10.0),
    "exp3_hoden": ("trs/exp3/hoden", 0.0),
    "exp3_trs_hoden": ("trs/exp3/hoden", 0.5),
}
ARMS = ("autograd", "closed_form", "plain_ops", "fast_tanh")


class _PlainOpsHODEN(HODENField):
    """The closed form recorded by autograd op by op (no hand-written backward)."""

    def _grad(self, net: nn.Module, z: Tensor, t: Tensor | float | None) -> Tensor:
        tc = self._time(t, z)
        x = z if tc is None else torch.cat([z, tc], dim=-1)
        params = scalar_mlp_params(net)
        n_layers = (len(params) - 1) // 2
        weights, biases = params[0 : 2 * n_layers : 2], params[1 : 2 * n_layers : 2]
        return input_grad_forward(x, weights, biases, params[-1], z.shape[1])[0]


def setting(name: str, scale: float = 1.0) -> dict:
    """Shapes, field options and integrator of a setting, from its shipped config.

    Args:
        name: a key of :data:`SETTINGS`.
        scale: fraction of the trajectories to keep (``< 1`` for quick tests).
    """
    config, lam = SETTINGS[name]
    cfg = yaml.safe_load(Path(config_path(config)).read_text())
    field_args = cfg["model"]["init_args"]["vector_field"]["init_args"]
    data = cfg["data"]["init_args"]
    trajectories = max(1, round(data.get("num_train", 50) * scale))
    steps, span = data.get("train_steps", 30), data.get("train_span", 3.0)
    horizon = data.get("time_horizon", 10)
    starts = window_starts(steps + 1, horizon, data.get("windows", "consecutive"))
    dt = span / steps
    g = torch.Generator().manual_seed(0)
    t0 = torch.as_tensor(starts, dtype=torch.float32).repeat(trajectories) * dt
    t = t0[:, None] + dt * torch.arange(horizon + 1, dtype=torch.float32)
    windows = t.shape[0]
    dim = int(field_args["state_dim"])
    return {
        "config": config,
        "windows": windows,
        "steps": horizon,
        "lam": lam,
        "integrator": cfg["model"]["init_args"].get("integrator", "leapfrog"),
        "field": {
            "hidden": tuple(field_args.get("hidden", (1000,))),
            "time_augmented": bool(field_args.get("time_augmented", False)),
            "init": field_args.get("init", "reference"),
        },
        "batch": {
            "x0": 0.5 * torch.randn(windows, dim, generator=g),
            "t": t,
            "y": 0.5 * torch.randn(windows, horizon, dim, generator=g),
        },
        "dim": dim,
    }


def make_field(arm: str, spec: dict) -> HODENField:
    """The field of ``arm`` for a :func:`setting`, initialised from seed 0."""
    torch.manual_seed(0)
    kwargs = dict(spec["field"])
    if arm == "autograd":
        return HODENField(spec["dim"], fused=False, **kwargs)
    if arm == "plain_ops":
        return _PlainOpsHODEN(spec["dim"], **kwargs)
    return HODENField(spec["dim"], fast_tanh=arm == "fast_tanh", **kwargs)


def _loss(field: nn.Module, spec: dict) -> Tensor:
    b = spec["batch"]
    dim = spec["dim"]
    integ = Leapfrog(position_dim=dim // 2) if spec["integrator"] == "leapfrog" else RK4()
    rev = Reversal.momentum_flip(dim, dim // 2)
    return trs_loss(field, integ, b["x0"], b["t"], b["y"], rev, trs_weight=spec["lam"]).total


def step_fn(arm: str, spec: dict) -> Callable[[], None]:
    """One training step (loss, ``zero_grad``, backward, Adam) of ``arm`` per call."""
    field = make_field(arm, spec)
    opt = torch.optim.Adam(field.parameters(), lr=2e-4)

    def step() -> None:
        loss = _loss(field, spec)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def check(arm: str, spec: dict) -> float:
    """Largest relative difference of ``arm``'s loss and parameter gradients from the
    ``autograd`` arm's at the initial weights (float32)."""
    out = []
    for a in ("autograd", arm):
        field = make_field(a, spec)
        loss = _loss(field, spec)
        out.append([loss.detach(), *torch.autograd.grad(loss, list(field.parameters()))])
    return max(
        float((x - y).abs().max() / y.abs().max().clamp_min(1e-30))
        for x, y in zip(*out, strict=True)
    )


def interleaved(
    fns: dict[str, Callable[[], None]], repeats: int, inner: int
) -> dict[str, dict[str, float]]:
    """Median process and wall seconds per call of each of ``fns``, run in turn ``repeats``
    times (order reversed every other repeat), ``inner`` calls per sample, after one warm-up."""
    for fn in fns.values():
        fn()
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(inner):
                fns[name]()
            cpu[name].append((time.process_time() - c0) / inner)
            wall[name].append((time.perf_counter() - w0) / inner)
    return {
        name: {"cpu": statistics.median(cpu[name]), "wall": statistics.median(wall[name])}
        for name in fns
    }


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return None


def _run(args: argparse.Namespace) -> dict:
    """The timings and checks of every setting and arm (the JSON payload)."""
    arms = ["autograd", "closed_form"]
    arms += ["plain_ops"] * args.plain_ops + ["fast_tanh"] * args.fast_tanh
    load_before = _load()
    results: dict[str, dict] = {}
    for name in args.settings.split(","):
        spec = setting(name.strip(), args.scale)
        checks = {arm: check(arm, spec) for arm in arms[1:]}
        times = interleaved({arm: step_fn(arm, spec) for arm in arms}, args.repeats, args.inner)
        base = times["autograd"]
        results[name] = {
            "config": spec["config"],
            "windows": spec["windows"],
            "rollouts": spec["windows"] * (2 if spec["lam"] > 0 else 1),
            "steps": spec["steps"],
            "integrator": spec["integrator"],
            "lam": spec["lam"],
            "field": {**spec["field"], "hidden": list(spec["field"]["hidden"])},
            "median_seconds": times,
            "ratio_to_autograd": {
                arm: {k: times[arm][k] / base[k] for k in ("cpu", "wall")} for arm in arms[1:]
            },
            "max_rel_diff_to_autograd": checks,
        }
    payload = {
        "arms": arms,
        "repeats": args.repeats,
        "inner": args.inner,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
            "loadavg_before": load_before,
            "loadavg_after": _load(),
        },
        "settings": results,
    }
    return payload


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark, prints the table and returns (and writes) the JSON payload."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--inner", type=int, default=1, help="steps per timed sample")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--settings", default=",".join(SETTINGS), help=f"comma-separated, of {list(SETTINGS)}"
    )
    parser.add_argument("--plain-ops", action="store_true", help="also time the plain_ops arm")
    parser.add_argument("--fast-tanh", action="store_true", help="also time the fast_tanh arm")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="fraction of the trajectories (tests)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hoden_speed.json"))
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        payload = _run(args)
    finally:
        torch.set_num_threads(threads)
    print(to_markdown(payload))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return payload


def to_markdown(payload: dict) -> str:
    """The payload as a markdown table (ms per step, ratios to ``autograd``)."""
    arms = payload["arms"]
    head = "| setting | rollouts x steps | " + " | ".join(f"{a} ms (cpu / wall)" for a in arms)
    head += " | " + " | ".join(f"{a} / autograd (cpu / wall)" for a in arms[1:]) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(arms) - 1)]
    for name, r in payload["settings"].items():
        t = r["median_seconds"]
        cells = [f"{t[a]['cpu'] * 1e3:.1f} / {t[a]['wall'] * 1e3:.1f}" for a in arms]
        ratios = [
            f"{r['ratio_to_autograd'][a]['cpu']:.3f} / {r['ratio_to_autograd'][a]['wall']:.3f}"
            for a in arms[1:]
        ]
        lines.append(
            f"| {name} ({r['integrator']}, lam {r['lam']:g}) | {r['rollouts']} x {r['steps']} | "
            + " | ".join(cells + ratios)
            + " |"
        )
    m = payload["machine"]
    checks = "; ".join(
        f"{name}: " + ", ".join(f"{a} {v:.1e}" for a, v in r["max_rel_diff_to_autograd"].items())
        for name, r in payload["settings"].items()
    )
    lines.append("")
    lines.append(
        f"torch {m['torch']}, {m['threads']} thread(s), {payload['repeats']} repeats x "
        f"{payload['inner']} step(s), load average before/after {m['loadavg_before']} / "
        f"{m['loadavg_after']}; largest relative difference of loss and gradients from autograd "
        f"(float32): {checks}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
