"""Moving between the source and the target task: start calibration from the source checkpoint,
and recover the source model exactly after calibration (no forgetting)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from typing_extensions import override

from pl_pac_trs.pac.handoff import PacCallback, SourceCheckpoint, handoff
from pl_pac_trs.pac.masks import load_checkpoint
from pl_pac_trs.pac.selection import matches_any

__all__ = ["LoadSourceWeights", "load_source_weights", "source_state_dict", "source_view"]


def source_state_dict(
    checkpoint: str | os.PathLike, trust_pickle: bool = False
) -> dict[str, Tensor]:
    """The model ``state_dict`` stored in a Lightning checkpoint (or a plain state-dict file).

    The file is loaded as data (``weights_only=True``); ``trust_pickle=True`` allows a full
    unpickling of a trusted legacy file (see :mod:`pl_pac_trs.serialization`).
    """
    obj = load_checkpoint(checkpoint, what="source checkpoint", trust_pickle=trust_pickle)
    state = obj.get("state_dict", obj)
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise ValueError(f"{str(checkpoint)!r} holds no model state_dict")
    return tensors


def load_source_weights(
    model: nn.Module,
    checkpoint: str | os.PathLike | Mapping[str, Tensor],
    skip: Sequence[str] = (),
    strict: bool = True,
    trust_pickle: bool = False,
) -> list[str]:
    """Copies the source weights into ``model``, except the entries matching ``skip``.

    Args:
        model: The target model (e.g. the same architecture with a new head).
        checkpoint: A Lightning checkpoint path or a state dict.
        skip: Name patterns left as they are in ``model`` (e.g. ``["head"]`` for a new head).
        strict: Raise when a non-skipped entry of the model is missing from the checkpoint or
            the checkpoint has non-skipped entries the model lacks.

    Returns:
        The names copied.

    Raises:
        ValueError: Naming the first entry whose shape differs or which is missing.
    """
    if isinstance(checkpoint, Mapping):
        state = dict(checkpoint)
    else:
        state = source_state_dict(checkpoint, trust_pickle=trust_pickle)
    own = model.state_dict()
    copied: list[str] = []
    for name, target in own.items():
        if matches_any(name, skip):
            continue
        if name not in state:
            if strict:
                raise ValueError(
                    f"source checkpoint has no entry {name!r}; add it to `skip` if it is new"
                )
            continue
        if tuple(state[name].shape) != tuple(target.shape):
            raise ValueError(
                f"source entry {name!r} has shape {tuple(state[name].shape)} but the model's has "
                f"{tuple(target.shape)}; add it to `skip` if the module is new for the target"
            )
        copied.append(name)
    extra = [k for k in state if k not in own and not matches_any(k, skip)]
    if strict and extra:
        raise ValueError(f"source checkpoint entry {extra[0]!r} is not in the model")
    model.load_state_dict({k: state[k] for k in copied}, strict=False)
    return copied


class LoadSourceWeights(PacCallback):
    """Starts a fit from the source checkpoint's weights, skipping new modules (a new head).

    Loads in ``setup`` (before optimizers are built and before a resumed checkpoint is restored,
    which then takes precedence), then publishes the checkpoint on the fit's
    :mod:`~pl_pac_trs.pac.handoff` record: a ``GradientMask(phase="calibrate", masks=None)`` of
    the same fit takes its masks from it, ``WandbArtifacts`` declares it as the run's input.

    Args:
        checkpoint: The (allocated) source checkpoint.
        skip: Name patterns of modules that are new for the target (kept as initialised).
        strict: See :func:`load_source_weights`.
        trust_pickle: Allow a full unpickling of a trusted legacy checkpoint (default: the file
            is loaded as data, ``weights_only=True``; see :mod:`pl_pac_trs.serialization`).

    Raises:
        FileNotFoundError: If ``checkpoint`` is not a file.

    Example::

        >>> LoadSourceWeights("runs/pac/friedman/source.ckpt", skip=["head"])  # doctest: +SKIP
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        skip: Sequence[str] = (),
        strict: bool = True,
        trust_pickle: bool = False,
    ) -> None:
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"LoadSourceWeights: checkpoint {str(checkpoint)!r} not found")
        self.checkpoint = checkpoint
        self.skip = (skip,) if isinstance(skip, str) else tuple(skip)
        self.strict = strict
        self.trust_pickle = bool(trust_pickle)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        copied = load_source_weights(
            pl_module, self.checkpoint, self.skip, self.strict, trust_pickle=self.trust_pickle
        )
        rank_zero_info(f"LoadSourceWeights: {len(copied)} entries from {self.checkpoint}")
        source = SourceCheckpoint(Path(self.checkpoint), self.trust_pickle)
        handoff(trainer).publish_source(source)


@contextmanager
def source_view(
    model: nn.Module,
    masks: Mapping[str, Tensor],
    source_state: Mapping[str, Tensor] | None = None,
    strict: bool = True,
) -> Iterator[nn.Module]:
    """Temporarily turns a calibrated model back into the allocated source model (no forgetting).

    Inside the context the redundant (calibrated) entries of every masked parameter are ``0.0``
    and every other parameter or buffer named in ``source_state`` (the source head when the target
    head differs, shared parameters when calibrate trained them) holds the source tensor, shape
    included. Outside, the model is exactly as before. With the default ``GradientMask`` settings
    (shared parameters and batch-norm statistics frozen in calibrate), the model in eval mode then
    gives bit-identical outputs to the allocated source model; pass
    ``source_state=source_state_dict(source_ckpt)`` when the head differs.

    Args:
        model: The calibrated model.
        masks: The PAC-Net masks (``True`` = essential).
        source_state: Optional source ``state_dict`` (entries under masked names are not used).
        strict: Raise when ``source_state`` has an entry the model lacks.

    Yields:
        ``model`` itself.
    """
    # aliases (one module registered under two names) appear once per name in a state dict
    params = dict(model.named_parameters(remove_duplicate=False))
    modules = dict(model.named_modules(remove_duplicate=False))
    buffers = dict(model.named_buffers(remove_duplicate=False))
    source_state = dict(source_state or {})

    def replaced(name: str) -> bool:  # a source entry that differs in shape (a different head)
        return name in source_state and tuple(source_state[name].shape) != tuple(params[name].shape)

    for name, mask in masks.items():
        if name not in params:
            raise ValueError(f"source_view: mask {name!r} names no parameter of the model")
        if tuple(mask.shape) != tuple(params[name].shape) and not replaced(name):
            raise ValueError(
                f"source_view: mask {name!r} has shape {tuple(mask.shape)} but the parameter has "
                f"{tuple(params[name].shape)}; pass the source head in `source_state`"
            )
    saved_masked: list[tuple[Tensor, Tensor, Tensor]] = []
    swapped: list[tuple[Any, str, Tensor]] = []
    with torch.no_grad():
        try:
            for name, mask in masks.items():
                if replaced(name):
                    continue
                p = params[name]
                mask = mask.to(p.device)
                saved_masked.append((p, mask, p[~mask].clone()))
                p.masked_fill_(~mask, 0.0)
            done = {id(params[n]) for n in masks if not replaced(n)}
            for name, value in source_state.items():
                if name not in params and name not in buffers:
                    if strict:
                        raise ValueError(f"source_state entry {name!r} is not in the model")
                    continue
                tensor = params[name] if name in params else buffers[name]
                if id(tensor) in done:  # masked (possibly under an alias) or already swapped
                    continue
                done.add(id(tensor))
                owner_name, _, local = name.rpartition(".")
                owner = modules[owner_name]
                if name in params:
                    p = params[name]
                    swapped.append((p, "data", p.data))
                    p.data = value.to(device=p.device, dtype=p.dtype)
                else:
                    old = owner._buffers[local]
                    swapped.append((owner, local, old))
                    owner._buffers[local] = value.to(old.device) if old is not None else value
            yield model
        finally:
            for obj, attr, old in reversed(swapped):
                if attr == "data":
                    obj.data = old
                else:
                    obj._buffers[attr] = old
            for p, mask, values in saved_masked:
                p.masked_scatter_(~mask, values)
