"""PAC-Net masks: bool tensors by parameter name; reading, writing and checking them.

A mask is ``True`` where the weight is *essential* (kept by pruning, owned by the source task) and
``False`` where it is *redundant* (pruned, zero after pruning, the target task's capacity). Masks
are ``torch.bool`` tensors, one byte per prunable parameter, never float copies.

Every Lightning checkpoint written while masks exist carries them in the model's PAC-Net state
(:mod:`pl_pac_trs.pac.state`, top-level key :data:`CHECKPOINT_KEY`); :func:`save_masks` writes the
same key to a small file of its own, so :func:`load_masks` reads either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pl_pac_trs.pac.selection import matches_any
from pl_pac_trs.pac.state import CHECKPOINT_KEY, Masks, PacState
from pl_pac_trs.serialization import load_torch_file

__all__ = [
    "CHECKPOINT_KEY",
    "Masks",
    "load_checkpoint",
    "load_masks",
    "load_pac_state",
    "log_sparsity",
    "mask_sparsity",
    "masks_equal",
    "save_masks",
    "state_of",
    "validate_masks",
]


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


def validate_masks(
    masks: Mapping[str, Tensor], model: nn.Module, ignore: Sequence[str] = ()
) -> Masks:
    """Checks masks against a model's parameters; returns the masks that apply.

    Args:
        masks: Bool masks by parameter name.
        model: The model whose ``named_parameters`` the names refer to.
        ignore: Patterns (see :func:`~pl_pac_trs.pac.selection.matches_any`) of parameters whose
            masks are dropped, e.g. a source head replaced by a new target head.

    Returns:
        The masks minus the ignored ones.

    Raises:
        ValueError: Naming the first mask whose parameter is missing or whose shape differs, or
            if no mask is left.
    """
    params = dict(model.named_parameters())
    kept: Masks = {}
    for name, mask in _check_masks(masks, "masks").items():
        if matches_any(name, ignore):
            continue
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
    if not kept:
        raise ValueError("masks do not match the model: no mask left after `ignore`")
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
