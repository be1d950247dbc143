"""What :class:`~pl_pac_trs.trs.TRSODEN` and its callbacks need from the data.

A datamodule declares :class:`TrajectoryData` (``state_dim``, ``position_dim``, ``bodies``) and
may offer ``energy(x)``, ``true_field(t, x)`` and a ``name``; :func:`trajectory_data` is the one
accessor that reads them off ``trainer.datamodule``. Batches are dicts ``{"x0", "t", "y"}``
checked by :func:`unpack_batch`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["DataInfo", "TrajectoryData", "trajectory_data", "unpack_batch", "unpack_start"]

#: The members every :class:`TrajectoryData` declares, in the order errors name them.
REQUIRED = ("state_dim", "position_dim", "bodies")


@runtime_checkable
class TrajectoryData(Protocol):
    """The datamodule side of the TRS contract (every datamodule of :mod:`pl_pac_trs.data`
    that yields trajectory windows follows it).

    Attributes:
        state_dim: the state dimension ``D`` (``0``: not known before ``setup``).
        position_dim: the number of position coordinates of ``[q, p]`` states, from which
            ``R = (q, p) -> (q, -p)`` and the leapfrog split follow; ``None`` when the states
            are not mechanical.
        bodies: coordinate groups whose trajectory errors are reported separately, or ``None``.

    Optional members, used when present: ``energy(x)`` (states ``(..., D)`` to energies
    ``(...)``; the test energy MSE and the energy plot), ``true_field(t, x)`` (the system's own
    field; the reference Lyapunov curve) and ``name`` (figure titles).

    Example:
        >>> class Oscillator:
        ...     state_dim, position_dim, bodies = 2, 1, None
        >>> isinstance(Oscillator(), TrajectoryData)
        True
    """

    state_dim: int
    position_dim: int | None
    bodies: Mapping[str, Sequence[int]] | None


@dataclass(frozen=True)
class DataInfo:
    """What :func:`trajectory_data` read off a :class:`TrajectoryData` datamodule."""

    state_dim: int | None
    position_dim: int | None
    bodies: dict[str, list[int]] | None
    energy: Callable[[Tensor], Tensor] | None = None
    true_field: Callable[[Any, Tensor], Tensor] | None = None
    name: str = "system"


def trajectory_data(trainer: Any) -> DataInfo | None:
    """The :class:`DataInfo` of ``trainer.datamodule``, or ``None`` without one (plain
    dataloaders, or no trainer).

    Args:
        trainer: a :class:`~lightning.pytorch.Trainer` or ``None``.

    Raises:
        TypeError: the datamodule does not declare every member of :class:`TrajectoryData`.

    Example:
        >>> from types import SimpleNamespace
        >>> class Oscillator:
        ...     state_dim, position_dim, bodies, name = 2, 1, None, "oscillator"
        ...     def energy(self, x):
        ...         return x.pow(2).sum(-1)
        >>> info = trajectory_data(SimpleNamespace(datamodule=Oscillator()))
        >>> info.position_dim, info.name, info.energy is not None, info.true_field
        (1, 'oscillator', True, None)
    """
    dm = getattr(trainer, "datamodule", None)
    if dm is None:
        return None
    if not isinstance(dm, TrajectoryData):
        missing = [m for m in REQUIRED if not hasattr(dm, m)]
        raise TypeError(
            f"TRSODEN: the datamodule {type(dm).__name__} does not declare {missing}; a "
            "trajectory datamodule declares state_dim, position_dim (None when the states are "
            "not [q, p]) and bodies (None when there are none), see "
            "pl_pac_trs.trs.TrajectoryData"
        )
    bodies = dm.bodies
    return DataInfo(
        state_dim=int(dm.state_dim) if dm.state_dim else None,
        position_dim=int(dm.position_dim) if dm.position_dim else None,
        bodies={k: [int(i) for i in v] for k, v in bodies.items()} if bodies else None,
        energy=_callable(dm, "energy"),
        true_field=_callable(dm, "true_field"),
        name=str(getattr(dm, "name", None) or "system"),
    )


def _callable(obj: Any, name: str) -> Callable | None:
    value = getattr(obj, name, None)
    return value if callable(value) else None


def unpack_batch(batch: Any, stage: str, check: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """``(x0, t, y)`` of a batch ``{"x0": (B, D), "t": (B, S + 1), "y": (B, S, D)}``.

    Args:
        batch: the batch dict.
        stage: named in the errors (``"train"``, ``"val"``, ...).
        check: also check the shapes and that each time grid strictly increases.

    Raises:
        ValueError: not such a dict, inconsistent shapes, or a grid that does not increase.

    Example:
        >>> batch = {"x0": torch.zeros(4, 2), "t": torch.rand(4, 6).cumsum(1),
        ...          "y": torch.zeros(4, 5, 2)}
        >>> [tuple(v.shape) for v in unpack_batch(batch, "train")]
        [(4, 2), (4, 6), (4, 5, 2)]
    """
    try:
        x0, t, y = batch["x0"], batch["t"], batch["y"]
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"TRSODEN: {stage} batches must be dicts with keys 'x0', 't', 'y'; "
            f"got {type(batch).__name__}"
        ) from err
    if not check:
        return x0, t, y
    shapes = f"{tuple(x0.shape)}, {tuple(t.shape)}, {tuple(y.shape)}"
    if x0.dim() != 2 or y.dim() != 3 or t.dim() != 2:
        raise ValueError(
            f"TRSODEN ({stage}): expected x0 (B, D), t (B, S+1), y (B, S, D); got {shapes}"
        )
    b, d = x0.shape
    if t.shape[0] != b or y.shape[0] != b or y.shape[2] != d or t.shape[1] != y.shape[1] + 1:
        raise ValueError(
            f"TRSODEN ({stage}): inconsistent batch shapes x0, t, y {shapes} (expected "
            "(B, D), (B, S+1), (B, S, D))"
        )
    if not bool(torch.all(t.diff(dim=1) > 0)):
        raise ValueError(
            f"TRSODEN ({stage}): the time grid t is not strictly increasing along each sample"
        )
    return x0, t, y


def unpack_start(batch: Any, stage: str, check: bool = True) -> tuple[Tensor, Tensor]:
    """``(x0, t)`` of a batch ``{"x0": (B, D), "t": (B, S + 1)}`` (a ``"y"`` may be there too;
    a predict set needs none).

    Raises:
        ValueError: not such a dict, inconsistent shapes, or a grid that does not increase.

    Example:
        >>> [tuple(v.shape) for v in unpack_start({"x0": torch.zeros(2, 3),
        ...                                        "t": torch.rand(2, 4).cumsum(1)}, "predict")]
        [(2, 3), (2, 4)]
    """
    try:
        x0, t = batch["x0"], batch["t"]
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"TRSODEN: {stage} batches must be dicts with keys 'x0' and 't'; "
            f"got {type(batch).__name__}"
        ) from err
    if "y" in batch:
        unpack_batch(batch, stage, check)
        return x0, t
    if check:
        if x0.dim() != 2 or t.dim() != 2 or t.shape[0] != x0.shape[0] or t.shape[1] < 2:
            raise ValueError(
                f"TRSODEN ({stage}): expected x0 (B, D) and t (B, S+1) with S >= 1; got "
                f"{tuple(x0.shape)}, {tuple(t.shape)}"
            )
        if not bool(torch.all(t.diff(dim=1) > 0)):
            raise ValueError(
                f"TRSODEN ({stage}): the time grid t is not strictly increasing along each sample"
            )
    return x0, t
