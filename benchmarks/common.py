"""Shared pieces of the benchmark / reproduction scripts: statistics, tables, output files."""

from __future__ import annotations

import json
import logging
import platform
import shutil
import statistics
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        return float("nan"), float("nan")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std


def fmt_mean_std(values: Sequence[float], digits: int = 3) -> str:
    """``"m ± s"`` with ``digits`` significant digits, ``n/a`` when empty."""
    if not values:
        return "n/a"
    m, s = mean_std(values)
    return f"{m:.{digits}g} ± {s:.{digits - 1}g}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    info: dict[str, object] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def write_outputs(out_dir: Path, name: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.md`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path


def quiet() -> None:
    """Lightning's and the package's log lines and Python warnings off (benchmark output)."""
    import lightning.pytorch  # noqa: F401  (its loggers exist only after the import)

    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("lightning", "pl_pac_trs")):
            logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def exp1_data():
    """The exp I reference data (simple harmonic oscillator, full batch of 150 windows): the
    datamodule, set up, and its training batch."""
    from pl_pac_trs.data import DuffingDataModule

    dm = DuffingDataModule(alpha=1.0, beta=0.0, cache_dir=None)
    dm.setup("fit")
    return dm, next(iter(dm.train_dataloader()))


class Exp1BareStep:
    """The bare PyTorch arm of the exp I speed benchmarks: ``field`` (default a
    ``ODENField(2, (1000,), init="reference")`` made right after ``torch.manual_seed(0)``), Adam
    lr 2e-4, leapfrog and ``(q, p) -> (q, -p)``. Each call is one training step on ``batch``
    (``zero_grad``, the TRS loss at ``trs_weight``, backward, Adam) and returns its seconds up to
    the end of the backward pass, the seconds of the Adam step and the loss (the caller holds it,
    and with it the graph, as long as its loop would)."""

    def __init__(self, batch: dict, trs_weight: float, field: torch.nn.Module | None = None):
        from pl_pac_trs.trs import Leapfrog, ODENField, Reversal

        if field is None:
            torch.manual_seed(0)
            field = ODENField(2, (1000,), init="reference")
        self.field, self.batch, self.trs_weight = field, batch, trs_weight
        self.opt = torch.optim.Adam(field.parameters(), lr=2e-4)
        self.integrator, self.reversal = Leapfrog(), Reversal.momentum_flip(2, 1)

    def __call__(self):
        """``(seconds to the end of backward, seconds of the Adam step, TRSLoss)``."""
        from pl_pac_trs.trs import trs_loss

        b = self.batch
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        out = trs_loss(
            self.field, self.integrator, b["x0"], b["t"], b["y"], self.reversal, self.trs_weight
        )
        out.total.backward()
        t1 = time.perf_counter()
        self.opt.step()
        return t1 - t0, time.perf_counter() - t1, out


def taskset(cores: str | None) -> list[str]:
    """``taskset -c cores`` to put before a command, or nothing (no cores, or no ``taskset``)."""
    return ["taskset", "-c", cores] if cores and shutil.which("taskset") else []


def timing_trainer(max_epochs: int, callbacks: Sequence[object], **overrides: object):
    """The Lightning arm's ``Trainer`` of the speed benchmarks: CPU, training only (no logger,
    checkpoints, progress bar, model summary or validation), the training metrics logged every
    10th step as the shipped TRS configs do; ``overrides`` replace any of these."""
    import lightning.pytorch as pl

    args: dict[str, object] = {
        "max_epochs": max_epochs,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 10,
        "callbacks": list(callbacks),
        "accelerator": "cpu",
        "devices": 1,
    }
    return pl.Trainer(**{**args, **overrides})


def read_job_log(path: Path) -> list[dict]:
    """The records of a job log (one JSON object a line, appended as runs finish); a torn line
    (a run killed while writing) is skipped. A missing log has none."""
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
