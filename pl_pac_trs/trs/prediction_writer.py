"""``RolloutWriter``: writes the rollouts of
:meth:`TRSODEN.predict_step <pl_pac_trs.trs.TRSODEN.predict_step>` to an ``.npz`` file (a
Lightning :class:`~lightning.pytorch.callbacks.BasePredictionWriter`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from pl_pac_trs.trs.visualization import output_dir

__all__ = ["RolloutWriter"]


class RolloutWriter(BasePredictionWriter):
    """Writes the predicted rollouts of a ``predict`` run to one ``.npz`` file and says where.

    The file holds the arrays ``x0`` ``(N, D)``, ``t`` ``(N, S + 1)``, ``forward`` ``(N, S, D)``
    and, with ``TRSODEN(predict_backward=True)``, ``backward`` ``(N, S, D)`` (the rollout from
    ``R x0`` along ``-t``), in the order of the predict set (float32 unless the model is
    float64). Predict sets whose trajectories have different lengths (batches of one) get one
    array per trajectory instead: ``forward_0``, ``forward_1``, ...

    Args:
        path: the file; ``None``: ``predictions.npz`` in the run's directory (the W&B run's
            files, the logger's ``log_dir``, or ``default_root_dir``). Under DDP each rank
            writes ``<stem>_rank<r>.npz``.

    Example:
        >>> import numpy as np  # after trainer.predict(model, datamodule=dm) with this callback
        >>> # rollouts = np.load("runs/.../predictions.npz"); rollouts["forward"].shape
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.path = None if path is None else Path(path)
        #: The file written by the last predict run.
        self.written: Path | None = None

    def _target(self, trainer: pl.Trainer) -> Path:
        path = self.path if self.path is not None else output_dir(trainer) / "predictions.npz"
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}_rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @override
    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        batches = _flatten(predictions)
        if not batches:
            return
        arrays = _stack(batches)
        path = self._target(trainer)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)  # a reader never sees half a file
        self.written = path
        rank_zero_info(f"TRSODEN predictions ({', '.join(sorted(arrays))}) written to {path}")


def _flatten(predictions: Sequence[Any]) -> list[dict[str, torch.Tensor]]:
    """The batches of one or several predict dataloaders, in order."""
    out: list[dict[str, torch.Tensor]] = []
    for item in predictions:
        if isinstance(item, dict):
            out.append(item)
        elif isinstance(item, (list, tuple)):
            out += _flatten(item)
    return out


def _numpy(value: torch.Tensor) -> np.ndarray:
    value = value.detach().cpu()
    if value.dtype != torch.float64:
        value = value.float()
    return value.numpy()


def _stack(batches: list[dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
    keys = list(batches[0])
    lengths = {tuple(b["t"].shape[1:]) for b in batches}
    if len(lengths) == 1:
        return {k: np.concatenate([_numpy(b[k]) for b in batches]) for k in keys}
    out: dict[str, np.ndarray] = {}
    index = 0
    for b in batches:
        for i in range(b["x0"].shape[0]):
            for k in keys:
                out[f"{k}_{index}"] = _numpy(b[k][i])
            index += 1
    return out
