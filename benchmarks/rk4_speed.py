"""RK4 training-step speed: the one-node fused rollout against the step loop, A/B in one run.

One training step (TRS loss, ``zero_grad``, backward, Adam step) of an
:class:`~pl_pac_trs.trs.ODENField` rolled out with :class:`~pl_pac_trs.trs.RK4` on the first
training batch of a shipped config's datamodule (its real windows, grids and sizes):

* ``exp3_oden`` / ``exp3_trs_oden`` (``trs/exp3/*``: forced Duffing, time-augmented field);
* ``exp6_oden`` / ``exp6_trs_oden`` (``trs/exp6/*``: the strange attractor, 2x200 field).

Arms, from the same initial weights and batch:

* ``loop``: :class:`~pl_pac_trs.trs.RK4`'s step loop over the field (each field evaluation one
  fused MLP node, the four stage sums and the time columns recorded by autograd): the path
  before the fused rollout;
* ``fused``: the whole rollout as one node (:mod:`pl_pac_trs.trs.fused.tanh_mlp_rk4`, the default).

The two arms' losses and gradients are compared first (largest relative difference, float32).
Timing as :func:`benchmarks.hoden_speed.interleaved`: medians of process and wall time over
interleaved repeats. Pin the process for stable numbers:

    taskset -c 1 python -m benchmarks.rk4_speed --threads 1
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

from benchmarks.hoden_speed import interleaved
from pl_pac_trs.configs import config_path
from pl_pac_trs.trs import RK4, ODENField, Reversal, trs_loss
from pl_pac_trs.trs.integrators import FixedGridIntegrator

SETTINGS = {
    "exp3_oden": "trs/exp3/oden",
    "exp3_trs_oden": "trs/exp3/trs_oden",
    "exp6_oden": "trs/exp6/oden",
    "exp6_trs_oden": "trs/exp6/trs_oden",
}
ARMS = ("loop", "fused")


class _LoopRK4(RK4):
    """RK4 without the fused rollout: the step loop of :class:`FixedGridIntegrator`."""

    def rollout(self, field: nn.Module, x0: Tensor, t: Tensor) -> Tensor:
        return FixedGridIntegrator.rollout(self, field, x0, t)


def _instantiate(spec: dict):
    module, _, name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**(spec.get("init_args") or {}))


def setting(name: str) -> dict:
    """Field arguments, TRS weight, reversal and first training batch of a shipped config."""
    cfg = yaml.safe_load(Path(config_path(SETTINGS[name])).read_text())
    model = cfg["model"]["init_args"]
    field_args = dict(model["vector_field"]["init_args"])
    dm = _instantiate(cfg["data"])
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    dim = int(field_args["state_dim"])
    signs = (model.get("reversal") or {}).get("init_args", {}).get("signs")
    reversal = Reversal(signs) if signs else Reversal.momentum_flip(dim, dim // 2)
    return {
        "config": SETTINGS[name],
        "field": field_args,
        "trs_weight": float(model.get("trs_weight", 0.0)),
        "reversal": reversal,
        "batch": batch,
        "windows": int(batch["x0"].shape[0]),
        "steps": int(batch["t"].shape[1] - 1),
    }


def _loss(arm: str, field: nn.Module, spec: dict) -> Tensor:
    b = spec["batch"]
    integ = RK4() if arm == "fused" else _LoopRK4()
    return trs_loss(
        field, integ, b["x0"], b["t"], b["y"], spec["reversal"], trs_weight=spec["trs_weight"]
    ).total


def _field(spec: dict) -> ODENField:
    torch.manual_seed(0)
    return ODENField(**spec["field"])


def step_fn(arm: str, spec: dict) -> Callable[[], None]:
    """One training step (loss, ``zero_grad``, backward, Adam) of ``arm`` per call."""
    field = _field(spec)
    opt = torch.optim.Adam(field.parameters(), lr=2e-4)

    def step() -> None:
        loss = _loss(arm, field, spec)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def check(spec: dict) -> float:
    """Largest relative difference of the fused arm's loss and gradients from the loop's."""
    out = []
    for arm in ARMS:
        field = _field(spec)
        loss = _loss(arm, field, spec)
        out.append([loss.detach(), *torch.autograd.grad(loss, list(field.parameters()))])
    return max(
        float((x - y).abs().max() / y.abs().max().clamp_min(1e-30))
        for x, y in zip(*out, strict=True)
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--inner", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="write rk4_speed.json here")
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        _report(args)
    finally:
        torch.set_num_threads(threads)
    return 0


def _report(args: argparse.Namespace) -> None:
    """Checks and times every setting; prints the table, writes the JSON (``--out``)."""
    rows = {}
    print("| setting | windows x steps | loop ms | fused ms | fused / loop | max rel. diff |")
    print("|---|---|---|---|---|---|")
    for name in args.settings.split(","):
        spec = setting(name.strip())
        diff = check(spec)
        t = interleaved({a: step_fn(a, spec) for a in ARMS}, args.repeats, args.inner)
        ratio = t["fused"]["cpu"] / t["loop"]["cpu"]
        rows[name] = {
            "config": spec["config"],
            "windows": spec["windows"],
            "steps": spec["steps"],
            "trs_weight": spec["trs_weight"],
            "times": t,
            "fused/loop": ratio,
            "max_rel_diff": diff,
        }
        print(
            f"| {name} | {spec['windows']} x {spec['steps']} | {1e3 * t['loop']['cpu']:.2f} | "
            f"{1e3 * t['fused']['cpu']:.2f} | {ratio:.3f} | {diff:.1e} |",
            flush=True,
        )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {
            "threads": args.threads,
            "repeats": args.repeats,
            "inner": args.inner,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "rows": rows,
        }
        (args.out / "rk4_speed.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
