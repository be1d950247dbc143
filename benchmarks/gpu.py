"""GPU checks in one command.

    python -m benchmarks gpu [--device cuda] [--out DIR] [--budget full|smoke]

Writes ``<out>/gpu.json`` and ``<out>/gpu.md`` (default ``docs/results``); the ``full`` budget is
sized to finish in under 8 minutes on one CUDA GPU. Five checks, each run even when another one
raised (a check that raises is recorded as ``error`` with its message):

1. **TRS step** (exp I setting: 150 windows x 10 leapfrog steps, ``ODENField(2, (1000,))``, Adam
   lr 2e-4): ODEN (lam 0) and TRS-ODEN (lam 10) training steps, with the field's fused rollout
   node (``fused=True``, the default) and with plain autograd (``fused=False``); eager, with
   ``torch.compile``\\ d field and with the whole loss ``torch.compile``\\ d; TRS with one batched
   rollout call and with two. Medians of interleaved repeats, ``torch.cuda.synchronize()`` around
   each step, ratios. A compile that fails is recorded with its error and the rest goes on.
2. **Exp VI** (strange attractor): the shipped ``configs/trs/exp6/{oden,trs_oden}.yaml`` through
   :func:`pl_pac_trs.apps.experiment.run_config` on the device at the reduced budget of
   :data:`BUDGETS` (epochs and data sizes stated in the report): test metrics and wall time.
3. **GradientMask overhead** on a ResNet-18-sized CNN (``benchmarks/pac_overhead.py``'s
   :func:`~benchmarks.pac_overhead.bench`), fp32 and under ``torch.autocast(bfloat16)`` (the
   step of a ``bf16-mixed`` fit), allocate and calibrate: masked step / plain step.
4. **PAC exactness invariants** under ``16-mixed`` (GradScaler; Lightning's default scaler and
   one starting at ``2**20`` so that it skips overflowing steps) and ``bf16-mixed``: small
   Lightning fits of ``tests/pac/pac_tiny.py``'s model and data with ``MagnitudePruning`` +
   ``GradientMask``. Allocate: pruned entries exactly ``+0.0`` after every step; calibrate:
   essential entries, shared parameters and BatchNorm statistics bit-identical to the source
   (``torch.equal``). Pass / fail per precision.
5. **TRS-ODEN precisions**: ``TRSODEN`` fits and tests at ``32-true``, ``64-true``,
   ``bf16-mixed`` and ``16-mixed`` (fused ODEN leapfrog, fused HODEN, fused time-augmented ODEN
   RK4) on a small harmonic-oscillator set; under fp16 / bf16 autocast the fused fields' loss and
   gradients equal the plain autograd field's (``torch.equal``: the fused kernels step aside).

The exit status is non-zero when an invariant fails or a check raises (a failed compile is an
outcome, not a failure). ``--device cpu --budget smoke`` runs everything on the CPU in seconds
(tiny sizes, compile with the ``eager`` backend, fp16 AMP through a CPU GradScaler since
Lightning's ``16-mixed`` needs CUDA): ``tests/benchmarks/test_gpu.py``.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import markdown_table, write_outputs
from benchmarks.reproduce_trs import SMOKE_EXTRA

REPO = Path(__file__).resolve().parents[1]
EXP6 = REPO / "configs" / "trs" / "exp6"


@dataclass(frozen=True)
class Budget:
    """Sizes of one budget (every one of them is written into the report)."""

    trs_hidden: tuple[int, ...]
    trs_warmup: int
    trs_repeats: int
    trs_inner: int
    compile_backend: str
    compile_seconds: float  # the TRS check starts no new compiled arm after this long
    compile_fused: bool  # also compile the loss of the fused field
    exp6_overrides: tuple[str, ...]
    mask_width: int  # ResNet18Like's first-stage channels (64: ResNet-18)
    mask_batch: int
    mask_image: int
    mask_steps: int
    mask_warmup: int
    mask_optimizers: tuple[str, ...]
    invariant_optimizers: tuple[str, ...]
    invariant_epochs: int
    notes: tuple[str, ...] = field(default=())


#: Exp VI at the full budget: 200 of the reference's 1000 training trajectories (reference
#: length: 400 steps over [0, 20], consecutive 10-step windows, batch 1024: 8 batches per epoch),
#: 20 validation trajectories, the reference 50 test trajectories of 400 steps, 200 epochs
#: (reference: 5000) at the shipped lr 2e-4.
EXP6_FULL = (
    "--trainer.max_epochs=200",
    "--trainer.check_val_every_n_epoch=200",
    "--data.init_args.num_train=200",
    "--data.init_args.num_val=20",
)
EXP6_SMOKE = (  # the TRS reproduction's tiny exp VI
    "--trainer.max_epochs=2",
    "--trainer.check_val_every_n_epoch=2",
    *SMOKE_EXTRA[6],
)

BUDGETS: dict[str, Budget] = {
    "full": Budget(
        trs_hidden=(1000,),
        trs_warmup=5,
        trs_repeats=15,
        trs_inner=10,
        compile_backend="inductor",
        compile_seconds=180.0,
        compile_fused=True,
        exp6_overrides=EXP6_FULL,
        mask_width=64,
        mask_batch=128,
        mask_image=32,
        mask_steps=60,
        mask_warmup=10,
        mask_optimizers=("adam", "adamw"),
        invariant_optimizers=("adam", "adamw", "sgd"),
        invariant_epochs=8,
    ),
    "smoke": Budget(
        trs_hidden=(32,),
        trs_warmup=1,
        trs_repeats=2,
        trs_inner=1,
        compile_backend="eager",
        compile_seconds=60.0,
        compile_fused=False,
        exp6_overrides=EXP6_SMOKE,
        mask_width=8,
        mask_batch=4,
        mask_image=8,
        mask_steps=2,
        mask_warmup=1,
        mask_optimizers=("adam",),
        invariant_optimizers=("adam",),
        invariant_epochs=8,
        notes=(
            "smoke budget: tiny sizes so that the whole command runs in seconds on a CPU; "
            "the timings are not measurements",
        ),
    ),
}


def environment(device: torch.device) -> dict[str, Any]:
    """Device name and the library versions the report was measured with."""
    import lightning

    info: dict[str, Any] = {
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "lightning": lightning.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["device_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["capability"] = f"{props.major}.{props.minor}"
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()[:2000]


# --- 1. TRS-ODEN / ODEN training step ------------------------------------------------------

#: (condition, lam, batched) of the timed steps.
TRS_CONDITIONS = (("ODEN", 0.0, True), ("TRS-ODEN one call", 10.0, True))
TRS_MODES = ("eager", "compiled field", "compiled loss")


def _trs_arm(
    device: torch.device,
    hidden: tuple[int, ...],
    lam: float,
    batched: bool,
    fused: bool,
    mode: str,
    backend: str,
) -> Callable[[], torch.Tensor]:
    """One training step (loss, zero_grad, backward, Adam step) of a fresh seed-0 field;
    returns the loss tensor of the step."""
    from benchmarks.trs_speed import make_batch
    from pl_pac_trs.trs import Leapfrog, ODENField, Reversal, trs_loss

    torch.manual_seed(0)
    net = ODENField(2, hidden, fused=fused).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    batch = {k: v.to(device) for k, v in make_batch().items()}
    integ, rev = Leapfrog(position_dim=1), Reversal.momentum_flip(2, 1).to(device)
    fn = torch.compile(net, backend=backend) if mode == "compiled field" else net

    def loss() -> torch.Tensor:
        x0, t, y = batch["x0"], batch["t"], batch["y"]
        return trs_loss(fn, integ, x0, t, y, rev, trs_weight=lam, batched=batched).total

    forward = torch.compile(loss, backend=backend) if mode == "compiled loss" else loss

    def step() -> torch.Tensor:
        total = forward()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return total

    return step


def trs_steps(device: torch.device, budget: Budget) -> dict[str, Any]:
    """ODEN / TRS-ODEN step times on ``device``: fused vs plain autograd, eager vs compiled, one
    rollout call vs two (see the module docstring)."""
    from benchmarks.trs_speed import BATCH, STEPS

    started = time.perf_counter()
    arms: dict[str, dict[str, Any]] = {}
    steps: dict[str, Callable[[], torch.Tensor]] = {}
    plan = [
        (cond, lam, batched, fused, mode)
        for cond, lam, batched in TRS_CONDITIONS
        for fused in (True, False)
        for mode in TRS_MODES
    ]
    plan += [("TRS-ODEN two calls", 10.0, False, fused, "eager") for fused in (True, False)]
    for cond, lam, batched, fused, mode in plan:
        name = f"{cond}, {'fused' if fused else 'autograd'}, {mode}"
        arm: dict[str, Any] = {"condition": cond, "fused": fused, "mode": mode}
        arms[name] = arm
        if mode == "compiled field" and fused:
            arm["status"] = "skipped"
            arm["reason"] = (
                "Leapfrog takes the field's own fused_leapfrog rollout, which torch.compile(field) "
                "does not wrap: the arm would run the eager fused node"
            )
            continue
        if mode == "compiled loss" and fused and not budget.compile_fused:
            arm["status"] = "skipped"
            arm["reason"] = (
                "not under this budget (tracing the fused node's forward and backward takes "
                "~5 s per arm on a CPU)"
            )
            continue
        if mode != "eager" and time.perf_counter() - started > budget.compile_seconds:
            arm["status"] = "skipped"
            arm["reason"] = (
                f"time budget of the compiled arms ({budget.compile_seconds:.0f} s) spent"
            )
            continue
        try:
            step = _trs_arm(
                device, budget.trs_hidden, lam, batched, fused, mode, budget.compile_backend
            )
            _sync(device)
            t0 = time.perf_counter()
            arm["initial_loss"] = float(step().detach())  # the first call compiles
            arm["first_call_s"] = time.perf_counter() - t0
            for _ in range(budget.trs_warmup):
                step()
            _sync(device)
            steps[name] = step
            arm["status"] = "ok"
        except Exception as exc:  # a compile failure is an outcome to report
            arm["status"] = "failed"
            arm["error"] = _error(exc)
    samples: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(budget.trs_repeats):  # interleaved: every arm once per round
        for name, step in list(steps.items()):
            try:
                _sync(device)
                t0 = time.perf_counter()
                for _ in range(budget.trs_inner):
                    step()
                _sync(device)
            except Exception as exc:  # e.g. a recompile that fails: that arm stops
                arms[name].update(status="failed", error=_error(exc))
                del steps[name], samples[name]
                continue
            samples[name].append((time.perf_counter() - t0) / budget.trs_inner)
    for name, values in samples.items():
        arms[name]["median_ms"] = 1e3 * statistics.median(values)
    ms = {k: a["median_ms"] for k, a in arms.items() if "median_ms" in a}
    ratios: dict[str, float] = {}

    def ratio(label: str, num: str, den: str) -> None:
        if num in ms and den in ms:
            ratios[label] = ms[num] / ms[den]

    for impl in ("fused", "autograd"):
        ratio(
            f"TRS-ODEN one call / ODEN ({impl}, eager)",
            f"TRS-ODEN one call, {impl}, eager",
            f"ODEN, {impl}, eager",
        )
        ratio(
            f"TRS-ODEN one call / two calls ({impl}, eager)",
            f"TRS-ODEN one call, {impl}, eager",
            f"TRS-ODEN two calls, {impl}, eager",
        )
        for cond, _, _ in TRS_CONDITIONS:
            for mode in TRS_MODES[1:]:
                ratio(
                    f"{cond}: {mode} / eager ({impl})",
                    f"{cond}, {impl}, {mode}",
                    f"{cond}, {impl}, eager",
                )
    for cond in ("ODEN", "TRS-ODEN one call", "TRS-ODEN two calls"):
        ratio(
            f"{cond}: fused / autograd (eager)",
            f"{cond}, fused, eager",
            f"{cond}, autograd, eager",
        )
    # the same seed-0 weights and batch: every arm of a condition starts from the same loss
    agree: dict[str, float] = {}
    for cond in dict.fromkeys(a["condition"] for a in arms.values()):
        ref = arms.get(f"{cond}, autograd, eager", {}).get("initial_loss")
        for name, arm in arms.items():
            if arm["condition"] == cond and "initial_loss" in arm and ref:
                agree[name] = abs(arm["initial_loss"] / ref - 1)
    return {
        "setting": {
            "windows": BATCH,
            "leapfrog_steps": STEPS,
            "hidden": list(budget.trs_hidden),
            "optimizer": "Adam lr 2e-4",
            "compile_backend": budget.compile_backend,
            "repeats": budget.trs_repeats,
            "steps_per_sample": budget.trs_inner,
            "warmup_steps": budget.trs_warmup,
        },
        "arms": arms,
        "ratios": ratios,
        "initial_loss_rel_diff_vs_autograd_eager": agree,
        # a failed compile is an outcome; a failed eager step is not
        "status": "fail"
        if any(a["mode"] == "eager" and a["status"] != "ok" for a in arms.values())
        else "ok",
    }


# --- 2. Exp VI ---------------------------------------------------------------------------------


def exp6(device: torch.device, budget: Budget, work: Path) -> dict[str, Any]:
    """The shipped exp VI configs (ODEN, TRS-ODEN) fitted and tested on ``device`` at the
    budget's reduced sizes; test metrics and wall time per condition."""
    from benchmarks.reproduce_trs import overrides
    from pl_pac_trs.apps.experiment import run_config

    if device.type == "cuda":
        index = 0 if device.index is None else device.index
        where = ["--trainer.accelerator=gpu", f"--trainer.devices=[{index}]"]
    else:
        where = ["--trainer.accelerator=cpu", "--trainer.devices=1"]
    runs: dict[str, Any] = {}
    for cond in ("oden", "trs_oden"):
        config = EXP6 / f"{cond}.yaml"
        args = [*overrides(6, "full", 0, work / "exp6" / cond, work / "cache"), *where]
        args += list(budget.exp6_overrides)
        t0 = time.perf_counter()
        res = run_config([config], args)
        runs[cond] = {
            "config": str(config.relative_to(REPO)),
            "wall_s": time.perf_counter() - t0,
            "test_metrics": res.test_metrics,
            "train_loss": res.fit_metrics.get("train/loss"),
            "val_loss": res.fit_metrics.get("val/loss"),
        }
    ok = all(r["test_metrics"].get("test/traj_mse", 0) > 0 for r in runs.values())
    return {
        "overrides": [*where, *budget.exp6_overrides],
        "note": "the first fit generates the data into the cache (its wall time includes it); "
        "reference budget: 5000 epochs on 1000 training trajectories",
        "runs": runs,
        "status": "ok" if ok else "fail",
    }


# --- 3. GradientMask overhead -------------------------------------------------------------------


def gradient_mask_overhead(device: torch.device, budget: Budget) -> dict[str, Any]:
    """``pac_overhead.bench`` on ``ResNet18Like`` (per-layer masks at 0.8, untrained), fp32 and
    under bf16 autocast, allocate and calibrate: masked / plain step (and the parameter count)."""
    from torch import nn

    from benchmarks import pac_overhead

    batches = pac_overhead.resnet_batches(budget.mask_batch, budget.mask_image)
    size = f"batch {budget.mask_batch}, {budget.mask_image}x{budget.mask_image}"
    if budget.mask_width == 64:
        name = f"ResNet-18-sized CNN ({size})"
    else:
        name = f"ResNet-18 layout, {budget.mask_width}..{8 * budget.mask_width} channels ({size})"
    make = partial(pac_overhead.ResNet18Like, width=budget.mask_width)
    rows = []
    for precision, dtype in (("32-true", None), ("bf16-mixed", torch.bfloat16)):
        for optimizer in budget.mask_optimizers:
            for phase in ("allocate", "calibrate"):
                r = pac_overhead.bench(
                    name,
                    make,
                    batches,
                    nn.functional.cross_entropy,
                    device,
                    phase,
                    budget.mask_steps,
                    optimizer,
                    "layer",
                    budget.mask_warmup,
                    autocast=dtype,
                )
                r["precision"] = precision
                r["params"] = sum(p.numel() for p in make().parameters())
                r["ratio"] = r["masked_ms"] / r["plain_ms"]
                rows.append(r)
    return {
        "setting": {
            "model": name,
            "masks": "per-layer magnitude, amount 0.8",
            "steps": budget.mask_steps,
            "warmup": budget.mask_warmup,
            "bf16": "forward and loss under torch.autocast(bfloat16), fp32 weights and optimizer",
        },
        "rows": rows,
        "status": "ok",
    }


# --- 4. PAC exactness invariants ----------------------------------------------------------------


def _pac_tiny():
    """``tests/pac/pac_tiny.py`` (the PAC tests' tiny model, data and trainer)."""
    if "pac_tiny" in sys.modules:
        return sys.modules["pac_tiny"]
    path = REPO / "tests" / "pac" / "pac_tiny.py"
    spec = importlib.util.spec_from_file_location("pac_tiny", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["pac_tiny"] = module
    spec.loader.exec_module(module)
    return module


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _pruned_zero(model: torch.nn.Module, masks: dict[str, torch.Tensor]) -> list[str]:
    """Names whose pruned entries are not all exactly ``+0.0``."""
    params = dict(model.named_parameters())
    bad = []
    for name, mask in masks.items():
        p = params[name].detach()[~mask]
        if not torch.equal(p, torch.zeros_like(p)) or torch.signbit(p).any():
            bad.append(name)
    return bad


def _precision_options(label: str, device: torch.device) -> dict[str, Any]:
    """Trainer options of one precision label (``16-mixed scaler 2^20``: a GradScaler that
    starts at ``2**20`` so that it skips the first, overflowing steps)."""
    from lightning.pytorch.plugins import MixedPrecision

    if label == "bf16-mixed":
        return {"precision": "bf16-mixed"}
    if label == "16-mixed":
        return {"precision": "16-mixed"}  # CUDA only: Lightning's default GradScaler
    if label == "16-mixed scaler 2^20":
        scaler = torch.amp.GradScaler(device.type, init_scale=2.0**20)
        return {"plugins": [MixedPrecision("16-mixed", device.type, scaler=scaler)]}
    raise ValueError(f"unknown precision label {label!r}")


def _invariant_fit(
    device: torch.device, precision: str, phase: str, optimizer: str, epochs: int, root: Path
) -> dict[str, Any]:
    """One fit of ``TinyNet`` (BatchNorm, hidden (6, 5), gradient accumulation 2) under
    ``GradientMask``; the invariants checked with ``torch.equal``."""
    from lightning.pytorch.callbacks import Callback

    from pl_pac_trs.pac import GradientMask, MagnitudePruning, compute_masks

    tiny = _pac_tiny()
    torch.manual_seed(0)
    model = tiny.TinyNet(hidden=(6, 5), batch_norm=True, optimizer=optimizer)
    violations: list[str] = []
    scales: list[float] = []

    class Watch(Callback):
        """Checks the pruned entries after every batch; records the grad scaler's scale."""

        def __init__(self, masks: Callable[[], dict[str, torch.Tensor] | None]) -> None:
            self.masks = masks

        def on_train_start(self, trainer, pl_module):
            scaler = getattr(trainer.precision_plugin, "scaler", None)
            if scaler is not None:
                scales.append(float(scaler.get_scale()))

        def on_train_epoch_start(self, trainer, pl_module):
            snapshots.setdefault(trainer.current_epoch, _snapshot(pl_module))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            masks = self.masks()
            if masks:
                for name in _pruned_zero(pl_module, masks):
                    violations.append(f"step {trainer.global_step}: {name} pruned entries != +0.0")
            scaler = getattr(trainer.precision_plugin, "scaler", None)
            if scaler is not None:
                scales.append(float(scaler.get_scale()))

    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    if phase == "allocate":
        prune = MagnitudePruning(amount=0.7, epoch=1, verbose=False)
        callbacks = [prune, GradientMask("allocate", verbose=False), Watch(lambda: prune.masks)]
    else:
        masks = compute_masks(MagnitudePruning().targets(model), 0.7, "global")
        kept = {k: v for k, v in masks.items() if not k.startswith("head.")}
        snapshots[0] = _snapshot(model)
        gm = GradientMask("calibrate", masks=masks, new_modules=("head",), verbose=False)
        callbacks = [gm, Watch(lambda: None)]
    if device.type == "cuda":
        where = {"accelerator": "gpu", "devices": [0 if device.index is None else device.index]}
    else:
        where = {"accelerator": "cpu"}
    fused = optimizer.endswith("_fused")
    trainer = tiny.trainer(
        root,
        callbacks=callbacks,
        gradient_clip_val=None if fused else 0.05,
        accumulate_grad_batches=2,
        max_epochs=epochs,
        **where,
        **_precision_options(precision, device),
    )
    trainer.fit(model, tiny.TinyData())
    model = model.cpu()
    params = dict(model.named_parameters())
    moved = False
    if phase == "allocate":
        before = {k: v.cpu() for k, v in snapshots[1].items()}
        pruned = {k: m.cpu() for k, m in prune.masks.items()}
        violations += [f"end: {n} pruned entries != +0.0" for n in _pruned_zero(model, pruned)]
        for name, mask in pruned.items():
            moved |= not torch.equal(params[name].detach()[mask], before[name][mask])
    else:
        before = {k: v.cpu() for k, v in snapshots[0].items()}
        kept = {k: m.cpu() for k, m in kept.items()}
        state = model.state_dict()
        for name, value in before.items():
            if name in kept:
                if not torch.equal(params[name].detach()[kept[name]], value[kept[name]]):
                    violations.append(f"{name}: essential entries changed")
                moved |= bool((params[name].detach()[~kept[name]] != 0).any())
            elif not name.startswith("head.") and not torch.equal(state[name], value):
                violations.append(f"{name}: shared parameter / buffer changed")
    if not moved:
        violations.append(
            f"{phase} did not train the "
            f"{'essential' if phase == 'allocate' else 'redundant'} weights"
        )
    if not all(p.requires_grad for p in model.parameters()):
        violations.append("frozen parameters not released at teardown")
    # the scaler halves its scale at every step it skips (inf / nan gradients)
    skipped = sum(b < a for a, b in itertools.pairwise(scales))
    out: dict[str, Any] = {
        "precision": precision,
        "phase": phase,
        "optimizer": optimizer,
        "optimizer_steps": trainer.global_step,
        "status": "pass" if not violations else "fail",
        "violations": violations[:20],
    }
    if scales:
        out["scaler_final_scale"] = scales[-1]
        out["scaler_skipped_steps"] = skipped
    return out


def pac_invariants(device: torch.device, budget: Budget, work: Path) -> dict[str, Any]:
    """The allocate / calibrate invariants under fp16 AMP with a grad scaler and bf16 AMP."""
    precisions = ["16-mixed", "16-mixed scaler 2^20", "bf16-mixed"]
    skipped: dict[str, str] = {}
    if device.type != "cuda":
        skipped["16-mixed"] = (
            "Lightning's precision='16-mixed' needs CUDA (on CPU it substitutes bf16-mixed); "
            "fp16 AMP with a grad scaler runs on the CPU as '16-mixed scaler 2^20' "
            "(MixedPrecision('16-mixed', 'cpu', torch.amp.GradScaler('cpu')))"
        )
        precisions.remove("16-mixed")
    fits = []
    for precision in precisions:
        for phase in ("allocate", "calibrate"):
            for optimizer in budget.invariant_optimizers:
                root = work / "invariants" / f"{precision}_{phase}_{optimizer}".replace(" ", "_")
                try:
                    fits.append(
                        _invariant_fit(
                            device, precision, phase, optimizer, budget.invariant_epochs, root
                        )
                    )
                except Exception as exc:
                    fits.append(
                        {
                            "precision": precision,
                            "phase": phase,
                            "optimizer": optimizer,
                            "status": "fail",
                            "violations": [f"raised {_error(exc)}"],
                        }
                    )
    per_precision = {
        p: "pass" if all(f["status"] == "pass" for f in fits if f["precision"] == p) else "fail"
        for p in precisions
    }
    per_precision.update({p: "skipped" for p in skipped})
    return {
        "setting": {
            "model": "tests/pac/pac_tiny.py TinyNet(hidden=(6, 5), batch_norm=True)",
            "data": "TinyData (48 samples, batch 8), gradient accumulation 2, clip 0.05",
            "amount": 0.7,
            "epochs": budget.invariant_epochs,
            "allocate": "MagnitudePruning at epoch 1 inside the fit, then GradientMask",
            "calibrate": "masks of the seed-0 weights, new head",
        },
        "per_precision": per_precision,
        "skipped": skipped,
        "fits": fits,
        "status": "pass" if all(v != "fail" for v in per_precision.values()) else "fail",
    }


class _HarmonicData:
    """Harmonic-oscillator windows (train/val) and whole-horizon rollouts (test), declaring the
    TRS data contract; loaders of batch dicts."""

    name, state_dim, position_dim, bodies = "harmonic", 2, 1, None

    def __init__(self, n: int = 32, steps: int = 10, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)

        def split(m: int, s: int, span: float, noise: float) -> list[dict[str, torch.Tensor]]:
            x0 = torch.rand(m, 2, generator=g) * 2 - 1
            t = torch.linspace(0, span, s + 1).expand(m, s + 1).clone()
            c, si = torch.cos(t[:, 1:]), torch.sin(t[:, 1:])
            q = x0[:, :1] * c + x0[:, 1:] * si
            p = -x0[:, :1] * si + x0[:, 1:] * c
            y = torch.stack([q, p], -1) + noise * torch.randn(m, s, 2, generator=g)
            return [{"x0": x0, "t": t, "y": y}]

        self.splits = {
            "train": split(n, steps, 1.0, 0.05),
            "val": split(8, steps, 1.0, 0.0),
            "test": split(8, 4 * steps, 4.0, 0.0),
        }

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., 0] ** 2 + x[..., 1] ** 2

    def module(self):
        import lightning.pytorch as pl
        from torch.utils.data import DataLoader

        data = self

        class DM(pl.LightningDataModule):
            name, state_dim, position_dim, bodies = data.name, 2, 1, None
            energy = staticmethod(data.energy)

            def _loader(self, split: str) -> DataLoader:
                return DataLoader(data.splits[split], batch_size=None)

            def train_dataloader(self):
                return self._loader("train")

            def val_dataloader(self):
                return self._loader("val")

            def test_dataloader(self):
                return self._loader("test")

        return DM()


def trs_precisions(device: torch.device, budget: Budget, work: Path) -> dict[str, Any]:
    """TRSODEN fits and tests in every Lightning precision on ``device`` (fused ODEN leapfrog,
    fused HODEN, fused time-augmented ODEN RK4), and under autocast the fused fields' loss and
    gradients equal the plain (``fused=False``) field's (``torch.equal``)."""
    import lightning.pytorch as pl

    from pl_pac_trs.trs import RK4, TRSODEN, HODENField, Leapfrog, ODENField, Reversal, trs_loss

    fields = {
        "ODEN leapfrog": (lambda: ODENField(2, (32,)), "leapfrog"),
        "HODEN leapfrog": (lambda: HODENField(2, (16,)), "leapfrog"),
        "ODEN rk4 time-augmented": (lambda: ODENField(2, (32,), time_augmented=True), "rk4"),
    }
    precisions = ["32-true", "64-true", "bf16-mixed", "16-mixed"]
    fits = []
    data = _HarmonicData()
    for precision in precisions:
        for name, (make, integrator) in fields.items():
            row: dict[str, Any] = {"precision": precision, "field": name}
            try:
                torch.manual_seed(0)
                model = TRSODEN(make(), integrator=integrator, trs_weight=1.0)
                trainer = pl.Trainer(
                    max_epochs=budget.invariant_epochs,
                    accelerator=device.type,
                    devices=[device.index or 0] if device.type == "cuda" else 1,
                    precision=precision,
                    logger=False,
                    enable_checkpointing=False,
                    enable_progress_bar=False,
                    enable_model_summary=False,
                    default_root_dir=work / "trs_precisions",
                )
                trainer.fit(model, datamodule=data.module())
                loss = float(trainer.callback_metrics["train/loss"])
                test = trainer.test(model, datamodule=data.module(), verbose=False)[0]
                row |= {"train_loss": loss, "test_traj_mse": test["test/traj_mse"]}
                finite = all(map(math.isfinite, (loss, test["test/traj_mse"])))
                row["status"] = "pass" if finite else "fail"
            except Exception as exc:
                row |= {"status": "fail", "error": _error(exc)}
            fits.append(row)
    autocast = []
    g = torch.Generator().manual_seed(1)
    x0 = (torch.rand(6, 2, generator=g) - 0.5).to(device)
    t = torch.linspace(0, 1, 6).expand(6, 6).to(device)
    y = torch.rand(6, 5, 2, generator=g).to(device)
    reversal = Reversal.momentum_flip(2, 1).to(device)
    for dtype in (torch.float16, torch.bfloat16):
        for name, (make, integrator) in fields.items():
            torch.manual_seed(0)
            fused = make().to(device)
            plain = make().to(device)
            plain.load_state_dict(fused.state_dict())
            plain.fused = False
            scheme = RK4() if integrator == "rk4" else Leapfrog()
            out = []
            for vf in (fused, plain):
                with torch.autocast(device.type, dtype=dtype):
                    loss = trs_loss(vf, scheme, x0, t, y, reversal, trs_weight=2.0).total
                grads = torch.autograd.grad(loss, list(vf.parameters()))
                out.append((loss.detach(), grads))
            equal = torch.equal(out[0][0], out[1][0]) and all(
                torch.equal(a, b) for a, b in zip(out[0][1], out[1][1], strict=True)
            )
            autocast.append({"dtype": str(dtype), "field": name, "equal": equal})
    ok = all(f["status"] == "pass" for f in fits) and all(a["equal"] for a in autocast)
    return {
        "setting": {
            "data": "harmonic oscillator, 32 windows x 10 steps (noise 0.05), 8 test rollouts "
            "of 40 steps",
            "epochs": budget.invariant_epochs,
            "trs_weight": 1.0,
            "note": "Lightning's 16-mixed on a CPU substitutes bf16 autocast",
        },
        "fits": fits,
        "autocast_equal_to_plain": autocast,
        "status": "pass" if ok else "fail",
    }


# --- the command ---------------------------------------------------------------------------------


def run(
    device: str = "cuda",
    out: str | Path = "docs/results",
    work: str | Path = "runs/bench/gpu",
    budget: str = "full",
    progress: bool = True,
) -> dict[str, Any]:
    """Runs the four checks on ``device`` and writes ``gpu.json`` / ``gpu.md`` into ``out``.

    Args:
        device: ``cuda``, ``cuda:N`` or ``cpu``.
        out: Directory of the report.
        work: Scratch directory (run directories, exp VI data cache).
        budget: ``full`` (under 8 minutes on one GPU) or ``smoke`` (seconds, for the tests).
        progress: Print a line as each check starts and ends.

    Returns:
        The JSON payload; ``payload["failed"]`` lists the checks that failed or raised.
    """
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {sorted(BUDGETS)}, got {budget!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    if dev.type not in ("cuda", "cpu"):
        raise ValueError(f"device must be cuda[:N] or cpu, got {device!r}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    b = BUDGETS[budget]
    out, work = Path(out), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    payload: dict[str, Any] = {
        "budget": budget,
        "budget_sizes": asdict(b),
        "environment": environment(dev),
    }
    checks: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("trs_step", lambda: trs_steps(dev, b)),
        ("exp6", lambda: exp6(dev, b, work)),
        ("gradient_mask_overhead", lambda: gradient_mask_overhead(dev, b)),
        ("pac_invariants", lambda: pac_invariants(dev, b, work)),
        ("trs_precisions", lambda: trs_precisions(dev, b, work)),
    ]
    for name, check in checks:
        if progress:
            print(f"[gpu] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            payload[name] = check()
        except Exception as exc:  # recorded, the other checks still run
            payload[name] = {
                "status": "error",
                "error": _error(exc),
                "traceback": traceback.format_exc()[-4000:],
            }
        payload[name]["seconds"] = time.perf_counter() - t0
        if progress:
            status, seconds = payload[name]["status"], payload[name]["seconds"]
            print(f"[gpu] {name}: {status} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    payload["seconds_total"] = time.perf_counter() - started
    payload["failed"] = [
        name for name, _ in checks if payload[name]["status"] not in ("ok", "pass")
    ]
    write_outputs(out, "gpu", payload, to_markdown(payload))
    return payload


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def to_markdown(payload: dict[str, Any]) -> str:
    """The report as markdown."""
    env = payload["environment"]
    b = payload["budget_sizes"]
    lines = [
        f"# GPU checks ({payload['budget']} budget) on {env['device_name']} ({env['device']})",
        "",
        f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, Lightning "
        f"{env['lightning']}, Python {env['python']}; {env['date']}; "
        f"total {payload['seconds_total']:.0f} s. Command: "
        f"`python -m benchmarks gpu --device {env['device']} --budget {payload['budget']}`.",
        "",
        "Failed checks: " + (", ".join(payload["failed"]) or "none") + ".",
        "",
    ]
    lines += [f"> {note}" for note in b["notes"]] + ([""] if b["notes"] else [])

    def error(section: dict[str, Any]) -> list[str]:
        return [f"**error** ({section['seconds']:.0f} s): `{section['error']}`", ""]

    trs = payload["trs_step"]
    lines += ["## 1. ODEN / TRS-ODEN training step", ""]
    if trs["status"] == "error" and "arms" not in trs:
        lines += error(trs)
    else:
        s = trs["setting"]
        lines += [
            f"{s['windows']} windows x {s['leapfrog_steps']} leapfrog steps, ODENField(2, "
            f"{tuple(s['hidden'])}), {s['optimizer']}; medians of {s['repeats']} interleaved "
            f"samples of {s['steps_per_sample']} steps after {s['warmup_steps']} warm-up steps; "
            f"compile backend `{s['compile_backend']}` ({trs['seconds']:.0f} s).",
            "",
        ]
        rows = []
        for name, arm in trs["arms"].items():
            note = arm.get("error") or arm.get("reason") or ""
            rows.append(
                [
                    name,
                    arm["status"],
                    _fmt(arm.get("median_ms")),
                    _fmt(arm.get("first_call_s")),
                    _fmt(arm.get("initial_loss"), 6),
                    note.replace("|", "/").replace("\n", " ")[:300],
                ]
            )
        header = ["arm", "status", "ms / step", "first call [s]", "loss at step 0", "note"]
        lines += [markdown_table(header, rows), ""]
        lines += [
            markdown_table(["ratio", "value"], [[k, f"{v:.3f}"] for k, v in trs["ratios"].items()])
        ]
        lines += [""]
    ex = payload["exp6"]
    lines += ["## 2. Exp VI (strange attractor) at a reduced budget", ""]
    if ex["status"] == "error" and "runs" not in ex:
        lines += error(ex)
    else:
        lines += [
            "Shipped configs with the overrides " + " ".join(f"`{o}`" for o in ex["overrides"]),
            f"({ex['note']}).",
            "",
        ]
        keys = sorted({k for r in ex["runs"].values() for k in r["test_metrics"]})
        rows = [
            [cond, f"{r['wall_s']:.1f}", _fmt(r["train_loss"]), _fmt(r["val_loss"])]
            + [_fmt(r["test_metrics"].get(k)) for k in keys]
            for cond, r in ex["runs"].items()
        ]
        lines += [markdown_table(["condition", "wall [s]", "train loss", "val loss", *keys], rows)]
        lines += [""]
    gm = payload["gradient_mask_overhead"]
    lines += ["## 3. GradientMask step overhead, ResNet-18-sized CNN", ""]
    if gm["status"] == "error":
        lines += error(gm)
    else:
        s = gm["setting"]
        lines += [
            f"{s['model']}, {s['masks']}; bf16: {s['bf16']}; medians of {s['steps']} "
            f"interleaved steps after {s['warmup']}.",
            "",
        ]
        rows = [
            [
                r["precision"],
                r["optimizer"],
                r["phase"],
                f"{r['params'] / 1e6:.2f} M",
                f"{r['plain_ms']:.3f}",
                f"{r['masked_ms']:.3f}",
                f"{r['ratio']:.3f}",
                f"{r['callback_pct']:.1f}%",
            ]
            for r in gm["rows"]
        ]
        header = ["precision", "optimizer", "phase", "parameters", "plain ms", "masked ms"]
        header.append("masked / plain")
        lines += [markdown_table([*header, "callback's own work"], rows), ""]
    inv = payload["pac_invariants"]
    lines += ["## 4. PAC exactness invariants under mixed precision", ""]
    if inv["status"] == "error":
        lines += error(inv)
    else:
        s = inv["setting"]
        lines += [
            f"{s['model']}, {s['data']}, amount {s['amount']}, {s['epochs']} epochs; allocate: "
            f"{s['allocate']}; calibrate: {s['calibrate']}.",
            "",
            markdown_table(["precision", "invariants"], list(inv["per_precision"].items())),
            "",
        ]
        lines += [f"- {p} skipped: {why}" for p, why in inv["skipped"].items()]
        rows = [
            [
                f["precision"],
                f["phase"],
                f["optimizer"],
                f["status"],
                _fmt(f.get("optimizer_steps")),
                _fmt(f.get("scaler_skipped_steps")),
                "; ".join(f["violations"]).replace("|", "/")[:300],
            ]
            for f in inv["fits"]
        ]
        header = ["precision", "phase", "optimizer", "result", "steps", "scaler-skipped", "notes"]
        lines += ["", markdown_table(header, rows), ""]
    tp = payload["trs_precisions"]
    lines += ["## 5. TRS-ODEN in every precision", ""]
    if tp["status"] == "error":
        lines += error(tp)
    else:
        s = tp["setting"]
        lines += [f"{s['data']}; {s['epochs']} epochs, trs_weight {s['trs_weight']}.", ""]
        rows = [
            [
                f["precision"],
                f["field"],
                f["status"],
                _fmt(f.get("train_loss")),
                _fmt(f.get("test_traj_mse")),
                f.get("error", "").replace("|", "/")[:200],
            ]
            for f in tp["fits"]
        ]
        header = ["precision", "field", "result", "train loss", "test traj MSE (x1e2)", "error"]
        lines += [markdown_table(header, rows), ""]
        rows = [[a["dtype"], a["field"], str(a["equal"])] for a in tp["autocast_equal_to_plain"]]
        lines += ["Under autocast, fused field == plain field (loss and gradients, torch.equal):"]
        lines += ["", markdown_table(["autocast dtype", "field", "equal"], rows), ""]
    return "\n".join(lines) + "\n"
