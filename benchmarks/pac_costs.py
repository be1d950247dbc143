"""What each transfer method costs, measured in the pipeline run that gives its error: trainable
parameters, bytes to keep *both* tasks, and training step time.

* :class:`StepCost` (a callback the pipeline adds to every stage, ``run_pipeline(...,
  stage_callbacks=...)``) records, when training starts, the parameters that require a gradient,
  and times every training batch (``on_train_batch_start`` to ``on_train_batch_end``: forward,
  backward, the callbacks' gradient work and the optimizer step); the median over the fit,
  without its first :data:`WARMUP` steps, is the step time.
* :func:`stage_costs` turns a finished pipeline directory into the three numbers per method.
  Trainable parameters: those requiring a gradient, minus, for PAC-Net's calibrate, the essential
  entries its masks hold fixed. Bytes for both tasks (float32 tensors as stored, buffers
  included): what must be kept besides nothing else to run the source *and* the target task --
  the source model plus every target entry that differs from it (fine-tuning, L2-SP, scratch:
  two whole models; linear probe: the source model and the new head; LoRA: the source model, the
  adapters and a new head); PAC-Net: the calibrated model, one bit per masked entry, and the
  source entries it cannot give back by masking (a source head of another shape).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback
from torch import Tensor

from pl_pac_trs.pac import checkpoint_state_dict, load_masks

#: Steps left out at the start of every fit (first-call allocations, lazy initialisation).
WARMUP = 5
#: Pipeline stage -> the checkpoint it started from (the source model of the comparison).
PAC_STAGE = "calibrate"


class StepCost(Callback):
    """Trainable parameter count and per-step wall time of one fit."""

    def __init__(self) -> None:
        self.trainable: dict[str, int] = {}
        self.steps: list[float] = []
        self._t0 = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.trainable = {n: p.numel() for n, p in pl_module.named_parameters() if p.requires_grad}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(time.perf_counter() - self._t0)

    def step_ms(self) -> float | None:
        """Median step time in milliseconds (``None`` before any step)."""
        steps = self.steps[WARMUP:] or self.steps
        return 1e3 * statistics.median(steps) if steps else None


class CostProbes:
    """One :class:`StepCost` per stage of a pipeline run (``stage_callbacks=probes``)."""

    def __init__(self) -> None:
        self.by_stage: dict[str, StepCost] = {}

    def __call__(self, stage: str) -> list[Callback]:
        self.by_stage[stage] = probe = StepCost()
        return [probe]


def _bytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _plain(name: str) -> str:
    return name.replace(".base_layer.", ".")


def extra_bytes(source: dict[str, Tensor], target: dict[str, Tensor]) -> int:
    """Bytes of the ``target`` entries that are not the ``source`` entry of the same name
    (adapter layers' base weights are named as in the source)."""
    total = 0
    for name, value in target.items():
        ref = source.get(_plain(name))
        same = ref is not None and ref.shape == value.shape and bool((ref == value).all())
        total += 0 if same else _bytes(value)
    return total


def pac_bytes(source: dict[str, Tensor], calibrated: dict[str, Tensor], masks) -> int:
    """The calibrated model, one bit per masked entry, and the source entries that masking
    does not give back (essential entries must equal the source's)."""
    total = sum(_bytes(v) for v in calibrated.values())
    total += sum((m.numel() + 7) // 8 for m in masks.values())
    for name, value in source.items():
        cal = calibrated.get(name)
        if cal is None or cal.shape != value.shape:
            total += _bytes(value)
        elif name in masks:
            mask = masks[name].bool()
            if not bool((cal[mask] == value[mask]).all()):
                total += _bytes(value)
        elif not bool((cal == value).all()):
            total += _bytes(value)
    return total


def stage_costs(out: Path, probes: CostProbes, stages: dict[str, str]) -> dict[str, Any]:
    """``{summary stage name: {"trainable", "bytes_both", "step_ms"}}`` for a finished run.

    Args:
        out: The pipeline's output directory (its checkpoints).
        probes: The run's probes.
        stages: Pipeline stage -> summary stage name (the method's row label).
    """
    result: dict[str, Any] = {}
    dense = checkpoint_state_dict(out / "dense.ckpt") if (out / "dense.ckpt").is_file() else None
    for stage, label in stages.items():
        probe = probes.by_stage.get(stage)
        ckpt = out / f"{stage}.ckpt"
        if probe is None or not ckpt.is_file():
            continue
        target = checkpoint_state_dict(ckpt)
        trainable = sum(probe.trainable.values())
        if stage == PAC_STAGE:
            masks = load_masks(out / "source.ckpt")
            trainable -= sum(
                int(m.sum()) for n, m in masks.items() if n in probe.trainable
            )  # essential entries: masked out of every step
            both = pac_bytes(checkpoint_state_dict(out / "source.ckpt"), target, masks)
        elif stage == "scratch" or dense is None:
            both = sum(_bytes(v) for v in target.values()) + sum(
                _bytes(v) for v in (dense or {}).values()
            )
        else:
            both = sum(_bytes(v) for v in dense.values()) + extra_bytes(dense, target)
        result[label] = {"trainable": trainable, "bytes_both": both, "step_ms": probe.step_ms()}
    return result
