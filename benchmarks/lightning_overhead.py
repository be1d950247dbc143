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
``DataLoader`` it used before (same batch rows, permuted each epoch). ``--variants
default,shortcuts`` adds, in the same turn, a ``TRSODEN`` with three shortcuts through Lightning's
per-step bookkeeping that the package does not ship (:class:`_Shortcuts`), to size what a module
can still save, and ``manual`` one under Lightning's manual optimisation (:class:`_Manual`), to
size what leaving its automatic optimisation would save. ``--segments`` times one fit hook to
hook instead (where the Lightning epoch's time goes, next to the bare step's ``zero_grad`` ..
``backward`` and ``step``).

    taskset -c 1 python -m benchmarks.lightning_overhead --threads 1 --trs-weight 0
    taskset -c 1 python -m benchmarks.lightning_overhead --threads 1 --trs-weight 10
    taskset -c 1 python -m benchmarks.lightning_overhead --loaders full,dataloader --rounds 3
    taskset -c 1 python -m benchmarks.lightning_overhead --trs-weight 0 --rounds 5 \
        --variants default,shortcuts,manual
    taskset -c 1 python -m benchmarks.lightning_overhead --trs-weight 0 --segments  # --hidden 8
"""

from __future__ import annotations

import argparse
import copy
import inspect
import itertools
import statistics
import time
from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from benchmarks.common import Exp1BareStep, exp1_data, quiet, timing_trainer
from pl_pac_trs.data.sampling import EpochSeededSampler
from pl_pac_trs.data.windows import collate_batch
from pl_pac_trs.trs import TRSODEN, ODENField

LOADERS = ("full", "dataloader")
VARIANTS = ("default", "shortcuts", "manual")


class _Shortcuts(TRSODEN):
    """``TRSODEN`` with three shortcuts through Lightning's per-step bookkeeping, measured here
    and not shipped (docs/trs.md, "Performance"): Lightning's ``_current_fx_name`` (set twice per
    hook call) as a plain attribute instead of through ``nn.Module.__setattr__``, a pass-through
    ``transfer_batch_to_device`` for a CPU batch, and a precomputed signature of
    ``training_step`` (Lightning inspects it every step for ``batch_idx``)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        if device.type == "cpu" and all(v.device.type == "cpu" for v in batch.values()):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx)


_Shortcuts.training_step.__signature__ = inspect.signature(_Shortcuts.training_step)


class _Manual(TRSODEN):
    """``TRSODEN`` under Lightning's manual optimisation (``zero_grad``, ``manual_backward``,
    ``step`` in ``training_step``), measured here and not shipped: it sizes what leaving
    Lightning's automatic optimisation (closure, its optimizer-step hooks) would save, at the
    price of the Trainer's ``gradient_clip_val`` and ``accumulate_grad_batches``, which Lightning
    refuses under manual optimisation."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        loss = super().training_step(batch, batch_idx)
        self.manual_backward(loss)
        opt.step()
        return loss


MODULES = {"default": TRSODEN, "shortcuts": _Shortcuts, "manual": _Manual}


def _paired_fields(hidden: int, batch: dict, trs_weight: float) -> tuple[ODENField, Exp1BareStep]:
    """The Lightning arm's field (seed 0, reference init) and the bare step of an identical
    copy of it on ``batch``."""
    torch.manual_seed(0)
    field = ODENField(2, (hidden,), init="reference")
    return field, Exp1BareStep(batch, trs_weight, copy.deepcopy(field))


def measure(
    hidden: int,
    epochs: int,
    trs_weight: float,
    warmup: int = 20,
    loader: str = "full",
    variant: str = "default",
) -> dict[str, float]:
    """Median Lightning epoch and in-process bare step (seconds) after ``warmup`` epochs, their
    ratio, the median of the per-epoch ratios, and both arms' final losses. ``loader``: the
    Lightning arm's training loader, ``variant`` its module (see the module docstring)."""
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    dm, batch = exp1_data()
    if loader == "dataloader":
        data = dm.train_dataset
        shuffled = DataLoader(
            data, batch_size=len(data), sampler=EpochSeededSampler(data), collate_fn=collate_batch
        )
        dm.train_dataloader = lambda: shuffled
    field, step = _paired_fields(hidden, batch, trs_weight)
    lit: list[float] = []
    bare: list[float] = []
    losses = {"bare": float("nan")}

    class _Paired(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            lit.append(time.perf_counter() - self.t0)
            to_backward, adam, out = step()
            bare.append(to_backward + adam)
            losses["bare"] = float(out.total.detach())

    model = MODULES[variant](field, integrator="leapfrog", trs_weight=trs_weight)
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


SEGMENT_HOOKS = (
    "on_train_batch_start",
    "on_before_zero_grad",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_train_batch_end",
)


def segments(hidden: int, epochs: int, trs_weight: float, warmup: int = 20) -> dict[str, float]:
    """Where a Lightning epoch's time goes: the median seconds (after ``warmup`` epochs) between
    consecutive marks (epoch start, the callback hooks of :data:`SEGMENT_HOOKS`, the entry and
    return of ``training_step`` and of the loss in it, epoch end), keyed ``"a -> b"`` in the order
    they occur, then the in-process bare step's ``bare: zero_grad .. backward`` and ``bare: step``
    (the same field, batch and Adam, as in :func:`measure`)."""
    dm, batch = exp1_data()
    field, step = _paired_fields(hidden, batch, trs_weight)
    marks: list[tuple[str, float]] = []
    times: dict[str, list[float]] = {}

    def mark(name: str) -> None:
        marks.append((name, time.perf_counter()))

    class _Marked(TRSODEN):
        def training_step(self, batch, batch_idx):
            mark("training_step")
            out = super().training_step(batch, batch_idx)
            mark("training_step returned")
            return out

        def loss(self, batch, compute_trs=None):
            mark("loss")
            out = super().loss(batch, compute_trs)
            mark("loss returned")
            return out

    class _Marks(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            marks.clear()
            mark("epoch start")

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            mark("epoch end")
            for (a, ta), (b, tb) in itertools.pairwise(marks):
                times.setdefault(f"{a} -> {b}", []).append(tb - ta)
            to_backward, adam, _ = step()
            times.setdefault("bare: zero_grad .. backward", []).append(to_backward)
            times.setdefault("bare: step", []).append(adam)

    for hook in SEGMENT_HOOKS:
        setattr(_Marks, hook, lambda self, *args, _hook=hook, **kwargs: mark(_hook))
    model = _Marked(field, integrator="leapfrog", trs_weight=trs_weight)
    timing_trainer(epochs, [_Marks()]).fit(model, datamodule=dm)
    return {name: statistics.median(v[warmup:]) for name, v in times.items()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--trs-weight", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--loaders", default="full", help=f"comma-separated, of {', '.join(LOADERS)}")
    p.add_argument(
        "--variants", default="default", help=f"comma-separated, of {', '.join(VARIANTS)}"
    )
    p.add_argument("--rounds", type=int, default=1, help="fits per loader and variant, in turn")
    p.add_argument("--segments", action="store_true", help="time one fit hook to hook instead")
    args = p.parse_args(argv)
    if args.epochs <= args.warmup:
        raise SystemExit("--epochs must exceed --warmup")
    loaders = [x.strip() for x in args.loaders.split(",") if x.strip()]
    if not loaders or any(x not in LOADERS for x in loaders) or args.rounds < 1:
        raise SystemExit(f"--loaders takes {', '.join(LOADERS)}; --rounds at least 1")
    variants = [x.strip() for x in args.variants.split(",") if x.strip()]
    if not variants or any(x not in VARIANTS for x in variants):
        raise SystemExit(f"--variants takes {', '.join(VARIANTS)}")
    quiet()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    runs = [(loader, variant) for loader in loaders for variant in variants]
    results: dict[tuple[str, str], list[dict[str, float]]] = {run: [] for run in runs}
    head = f"hidden {args.hidden}, trs_weight {args.trs_weight}, {args.threads} thread(s)"
    try:
        if args.segments:
            print(f"{head}: median ms per epoch between marks")
            for name, s in segments(args.hidden, args.epochs, args.trs_weight, args.warmup).items():
                print(f"{1e3 * s:9.3f}  {name}")
            return 0
        for _ in range(args.rounds):
            for loader, variant in runs:
                r = measure(args.hidden, args.epochs, args.trs_weight, args.warmup, loader, variant)
                results[loader, variant].append(r)
                print(
                    f"{head}, {_label(loader, variant)}: Lightning epoch "
                    f"{1e3 * r['lightning_s']:.2f} ms, bare step in the same process "
                    f"{1e3 * r['bare_s']:.2f} ms; Lightning / bare {r['ratio']:.3f} (median of "
                    f"per-epoch ratios {r['paired_ratio']:.3f}); losses "
                    f"{r['lightning_loss']:.5f} / {r['bare_loss']:.5f}",
                    flush=True,
                )
    finally:
        torch.set_num_threads(threads)
    if args.rounds > 1 or len(runs) > 1:
        for (loader, variant), rs in results.items():
            extra = statistics.median(1e3 * (r["lightning_s"] - r["bare_s"]) for r in rs)
            ratio = statistics.median(r["ratio"] for r in rs)
            print(
                f"{_label(loader, variant)}, median of {len(rs)} fit(s): Lightning / bare "
                f"{ratio:.3f}, Lightning's extra time {extra:.2f} ms per epoch"
            )
    return 0


def _label(loader: str, variant: str) -> str:
    return f"{loader} loader" + ("" if variant == "default" else f", {variant} module")


if __name__ == "__main__":
    raise SystemExit(main())
