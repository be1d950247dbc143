"""What a PAC-Net model *is*, declared once and carried by the model and its checkpoints.

:class:`PacState` says which entries of a model are essential (the masks), which state entries are
new for the task (not loaded from the source), and, once calibration starts, the source values of
every state entry the masks do not cover. The callbacks keep it on the model
(``model.pac_state``, see :func:`pac_state`) and write it into every checkpoint under the top-level
key :data:`CHECKPOINT_KEY`; a resumed fit reads it back. From it alone
:meth:`PacState.source_state_dict` rebuilds the source model's complete ``state_dict`` bit for bit:
the masked parameters with their calibrated (redundant) entries zeroed, every other entry from
``source``.

The state lives outside ``state_dict()``, so ``load_from_checkpoint`` and ``torch.load`` +
``load_state_dict`` of a PAC-Net checkpoint work for users who only want the target model.

A mask is ``True`` where the weight is *essential* (kept by pruning, owned by the source task) and
``False`` where it is *redundant* (pruned, zero after pruning, the target task's capacity). Masks
are ``torch.bool`` tensors, one byte per prunable parameter. :func:`save_masks` writes the state's
key to a small file of its own, so :func:`load_masks` reads a checkpoint or such a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from pl_pac_trs.serialization import load_torch_file

__all__ = [
    "ATTRIBUTE",
    "CHECKPOINT_KEY",
    "Masks",
    "PacState",
    "load_checkpoint",
    "load_masks",
    "load_pac_state",
    "log_sparsity",
    "mask_sparsity",
    "masks_equal",
    "pac_state",
    "save_masks",
    "set_pac_state",
    "state_of",
    "validate_masks",
]

#: Top-level key of the PAC-Net state in checkpoints and in exported masks files.
CHECKPOINT_KEY = "pac"
#: The model attribute that holds its :class:`PacState` during and after a PAC-Net fit.
ATTRIBUTE = "pac_state"

Masks = dict[str, Tensor]
Phase = Literal["dense", "pruned", "allocate", "calibrate"]


@dataclass
class PacState:
    """The PAC-Net description of one model.

    Attributes:
        masks: Bool masks by parameter name (``True`` = essential), or ``None`` before pruning.
        phase: ``"dense"`` (no masks yet), ``"pruned"``, ``"allocate"`` or ``"calibrate"``:
            the last phase that enforced the masks.
        new: State entries that are new for this task: not loaded from the source (a new head).
        source: Calibrate: the source value of every state entry outside ``masks`` (a replaced
            head, shared parameters, normalisation statistics), taken when calibration starts.
        origin: The file this state was read from, for messages.
        pruning: Set by ``MagnitudePruning`` before it prunes: ``"epoch"`` (pruning inside the
            fit) or ``"end"`` (when the fit ends). Not saved.
        closed: The fit that made this state is over (it describes the model; a new fit's
            callbacks declare the state again). Not saved.
    """

    masks: Masks | None = None
    phase: Phase = "dense"
    new: tuple[str, ...] = ()
    source: dict[str, Tensor] = field(default_factory=dict)
    origin: str | None = None
    pruning: Literal["epoch", "end"] | None = None
    closed: bool = False

    def to_checkpoint(self) -> dict[str, Any]:
        """The state as plain data (CPU tensors, lists, strings) for a checkpoint."""
        assert self.masks is not None
        return {
            "masks": {k: m.detach().cpu() for k, m in self.masks.items()},
            "phase": self.phase,
            "new": list(self.new),
            "source": {k: v.detach().cpu() for k, v in self.source.items()},
        }

    @classmethod
    def from_checkpoint(cls, data: Any, origin: str | None = None) -> PacState:
        """Reads :meth:`to_checkpoint`'s data back.

        Raises:
            ValueError: Naming ``origin`` if the data is not a PAC-Net state.
        """
        where = f"{origin!r}: " if origin else ""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}the {CHECKPOINT_KEY!r} entry is not a PAC-Net state")
        masks = data.get("masks")
        if not isinstance(masks, Mapping) or not masks:
            raise ValueError(f"{where}the PAC-Net state carries no masks")
        for name, mask in masks.items():
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
                got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
                raise ValueError(f"{where}mask {name!r} must be a torch.bool tensor, got {got}")
        phase = data.get("phase", "pruned")
        if phase not in ("pruned", "allocate", "calibrate"):
            raise ValueError(f"{where}unknown PAC-Net phase {phase!r}")
        source = dict(data.get("source") or {})
        if phase == "calibrate" and not source:
            raise ValueError(f"{where}a calibrated PAC-Net state without source values")
        return cls(
            masks=dict(masks),
            phase=phase,
            new=tuple(data.get("new") or ()),
            source=source,
            origin=origin,
        )

    def source_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The source model's complete ``state_dict``, from this model's ``state_dict``.

        Before calibration the model is the source model (``state_dict`` itself). After: every
        masked parameter with its redundant (calibrated) entries set to ``+0.0`` (the essential
        ones were frozen), every other entry the value :attr:`source` holds.

        Raises:
            ValueError: If ``state_dict`` lacks a masked parameter.
        """
        if self.phase != "calibrate":
            return dict(state_dict)
        assert self.masks is not None
        out: dict[str, Tensor] = {}
        for name, mask in self.masks.items():
            if name not in state_dict:
                raise ValueError(f"the model has no parameter {name!r} of the PAC-Net masks")
            w = state_dict[name]
            out[name] = w.detach().masked_fill(~mask.to(w.device), 0.0)
        out.update(self.source)
        return out


def pac_state(model: nn.Module, open_only: bool = False) -> PacState | None:
    """The :class:`PacState` a model carries (``model.pac_state``), or ``None`` (also for the
    state of a finished fit with ``open_only``)."""
    state = getattr(model, ATTRIBUTE, None)
    if not isinstance(state, PacState) or (open_only and state.closed):
        return None
    return state


def set_pac_state(model: nn.Module, state: PacState | None) -> PacState | None:
    """Attaches ``state`` to ``model`` (``model.pac_state``; ``None`` removes it)."""
    if state is None:
        if ATTRIBUTE in model.__dict__:
            delattr(model, ATTRIBUTE)
        return None
    setattr(model, ATTRIBUTE, state)
    return state


def load_checkpoint(
    path: str | os.PathLike, what: str = "masks/checkpoint file", trust_pickle: bool = False
) -> dict[str, Any]:
    """Loads a checkpoint or masks file on the CPU, as data (``weights_only=True``).

    Objects a weights-only load refuses are never unpickled unless ``trust_pickle`` (or
    ``PL_PAC_TRS_TRUST_PICKLE=1``) opts in; see :mod:`pl_pac_trs.serialization`.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is empty, corrupt, holds unsafe objects
            (:class:`~pl_pac_trs.serialization.UnsafeFileError`) or is not a dictionary.
    """
    obj = load_torch_file(path, what=what, trust_pickle=trust_pickle)
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        raise ValueError(f"{what} {str(path)!r} holds a {kind}, expected a dictionary")
    return obj


def _check_masks(masks: Any, source: str) -> Masks:
    if not isinstance(masks, Mapping) or not masks:
        raise ValueError(f"{source}: masks must be a non-empty mapping of name -> bool tensor")
    out: Masks = {}
    for name, mask in masks.items():
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            what = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"{source}: mask {name!r} must be a torch.bool tensor, got {what}")
        out[str(name)] = mask
    return out


def save_masks(masks: Mapping[str, Tensor], path: str | os.PathLike, **metadata: Any) -> Path:
    """Writes masks to ``path`` (a small ``torch.save`` file readable by :func:`load_masks`).

    Args:
        masks: Bool masks by parameter name (``True`` = essential/kept).
        path: Destination file; parent directories are created.
        **metadata: Extra plain values stored alongside (e.g. ``amount=0.8``).

    Returns:
        The path written.
    """
    checked = _check_masks(masks, "save_masks")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {CHECKPOINT_KEY: PacState(masks=checked, phase="pruned").to_checkpoint()}
    payload["pac_metadata"] = dict(metadata)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # never leave a half-written file at ``path``
    return path


def load_masks(path: str | os.PathLike, trust_pickle: bool = False) -> Masks:
    """Reads masks from an exported masks file or from any checkpoint written while masks existed.

    Reads the PAC-Net state under the top-level :data:`CHECKPOINT_KEY`. The file is loaded as
    data (``weights_only=True``); ``trust_pickle=True`` allows a full unpickling of a trusted
    file.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is unreadable or unsafe, carries no masks or they are not bool
            tensors.
    """
    state = load_pac_state(path, trust_pickle=trust_pickle)
    assert state.masks is not None
    return state.masks


def load_pac_state(path: str | os.PathLike, trust_pickle: bool = False) -> PacState:
    """Reads the PAC-Net state (:class:`~pl_pac_trs.pac.state.PacState`) of a checkpoint.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: Naming the file if it is unreadable or unsafe, or carries no PAC-Net masks.
    """
    return state_of(load_checkpoint(path, trust_pickle=trust_pickle), str(path))


def state_of(checkpoint: Mapping[str, Any], origin: str) -> PacState:
    """The PAC-Net state of a loaded checkpoint (``origin``: its file, for messages)."""
    data = checkpoint.get(CHECKPOINT_KEY)
    if data is None:
        raise ValueError(
            f"{origin!r} carries no PAC-Net masks (no {CHECKPOINT_KEY!r} entry); pass a "
            "checkpoint written after MagnitudePruning ran, or a file written by "
            "pl_pac_trs.pac.save_masks"
        )
    return PacState.from_checkpoint(data, origin)


def validate_masks(masks: Mapping[str, Tensor], model: nn.Module) -> Masks:
    """Checks masks against a model's parameters; returns the masks that apply.

    Args:
        masks: Bool masks by parameter name.
        model: The model whose ``named_parameters`` the names refer to.

    Returns:
        The masks, as a new mapping.

    Raises:
        ValueError: Naming the first mask whose parameter is missing or whose shape differs, or
            if no mask is left.
    """
    params = dict(model.named_parameters())
    kept: Masks = {}
    for name, mask in _check_masks(masks, "masks").items():
        if name not in params:
            raise ValueError(
                f"masks do not match the model: mask {name!r} names no parameter of "
                f"{type(model).__name__} (first parameters: {list(params)[:5]})"
            )
        if tuple(mask.shape) != tuple(params[name].shape):
            raise ValueError(
                f"masks do not match the model: mask {name!r} has shape {tuple(mask.shape)} but "
                f"the parameter has shape {tuple(params[name].shape)} (a module that is new for "
                f"this task, e.g. a target head, goes in LoadSourceWeights(skip=...))"
            )
        kept[name] = mask
    return kept


def mask_sparsity(masks: Mapping[str, Tensor]) -> dict[str, float]:
    """Fraction of pruned (``False``) entries: ``"global"`` and one entry per mask name."""
    total = sum(m.numel() for m in masks.values())
    pruned = {k: int((~m).sum()) for k, m in masks.items()}
    out = {"global": sum(pruned.values()) / max(total, 1)}
    out.update({k: pruned[k] / max(masks[k].numel(), 1) for k in masks})
    return out


def masks_equal(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> bool:
    """Whether two sets of masks name the same parameters with equal masks (any devices)."""
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def log_sparsity(trainer: Any, masks: Mapping[str, Tensor], prefix: str = "pac") -> dict:
    """Logs global and per-layer sparsity to every logger of ``trainer`` (global rank zero).

    Returns:
        The metrics: ``<prefix>/sparsity`` and ``<prefix>/sparsity/<parameter name>``.
    """
    sparsity = mask_sparsity(masks)
    metrics = {f"{prefix}/sparsity": sparsity.pop("global")}
    metrics.update({f"{prefix}/sparsity/{k}": v for k, v in sparsity.items()})
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
    return metrics
