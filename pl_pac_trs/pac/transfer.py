"""Moving between the source and the target task: start a fit from the source checkpoint
(declaring what is new), and recover the source model exactly after calibration (no forgetting)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from typing_extensions import override

from pl_pac_trs.pac.callback import PacCallback
from pl_pac_trs.pac.mask_rules import matches_any
from pl_pac_trs.pac.state import (
    CHECKPOINT_KEY,
    PacState,
    load_checkpoint,
    pac_state,
    set_pac_state,
    state_of,
)

__all__ = [
    "LoadSourceWeights",
    "checkpoint_state_dict",
    "load_source_weights",
    "source_state_dict",
    "source_view",
    "state_swapped",
]


def checkpoint_state_dict(
    checkpoint: str | os.PathLike, trust_pickle: bool = False
) -> dict[str, Tensor]:
    """The model ``state_dict`` stored in a Lightning checkpoint (or a plain state-dict file).

    The file is loaded as data (``weights_only=True``); ``trust_pickle=True`` allows a full
    unpickling of a trusted legacy file (see :mod:`pl_pac_trs.serialization`).
    """
    obj = load_checkpoint(checkpoint, what="checkpoint", trust_pickle=trust_pickle)
    return _model_state(obj, checkpoint)


def _model_state(obj: Mapping[str, Any], checkpoint: Any) -> dict[str, Tensor]:
    state = obj.get("state_dict", obj)
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise ValueError(f"{str(checkpoint)!r} holds no model state_dict")
    return tensors


def source_state_dict(
    source: str | os.PathLike | nn.Module, trust_pickle: bool = False
) -> dict[str, Tensor]:
    """The source model's complete ``state_dict``, from a PAC-Net checkpoint or fitted model.

    From a calibrated checkpoint (or model) alone: the masked weights with the calibrated
    (redundant) entries zeroed, and the source values of everything else calibrate replaced or
    trained (a new head of any shape, shared parameters, normalisation statistics). Load it into
    a model built like the source model (``load_state_dict``, strict) to get the source model
    back bit for bit. A checkpoint of the source stage gives its own ``state_dict``.

    Args:
        source: A checkpoint written by a PAC-Net stage, or a model that carries its
            :class:`~pl_pac_trs.pac.state.PacState` (``model.pac_state``; after a fit).
        trust_pickle: See :func:`checkpoint_state_dict`.

    Raises:
        ValueError: If the checkpoint or model carries no PAC-Net state.

    Example::

        >>> source = MyModel(num_classes=5)  # doctest: +SKIP
        >>> source.load_state_dict(source_state_dict("runs/calibrate.ckpt"))  # doctest: +SKIP
    """
    if isinstance(source, nn.Module):
        state = pac_state(source)
        if state is None or state.masks is None:
            raise ValueError(
                f"{type(source).__name__} carries no PAC-Net state (model.pac_state): pass the "
                "model a PAC-Net fit trained, or its checkpoint file (a model loaded with "
                "load_from_checkpoint has none: source_view(model, 'calibrate.ckpt'))"
            )
        return state.source_state_dict(source.state_dict())
    obj = load_checkpoint(source, what="PAC-Net checkpoint", trust_pickle=trust_pickle)
    return state_of(obj, str(source)).source_state_dict(_model_state(obj, source))


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
        state = checkpoint_state_dict(checkpoint, trust_pickle=trust_pickle)
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
    """Starts a fit from the source checkpoint's weights; what it does not load is new.

    Loads in ``setup`` (before optimizers are built and before a resumed checkpoint is restored,
    which then takes precedence) and declares on the model (``model.pac_state``, a
    :class:`~pl_pac_trs.pac.state.PacState`) what a PAC-Net phase of the same fit needs: the
    source checkpoint's masks, minus those of entries not loaded; the entries not loaded (``skip``,
    or missing from the checkpoint with ``strict=False``) as *new* (a new head: trained normally,
    never under source masks, whatever its shape); and the source values of the entries it
    replaced, so that the source model can be recovered from the target checkpoint. List it
    before ``GradientMask("calibrate")``.

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
        path = str(self.checkpoint)
        obj = load_checkpoint(path, what="source checkpoint", trust_pickle=self.trust_pickle)
        state = _model_state(obj, path)
        copied = set(load_source_weights(pl_module, state, self.skip, self.strict))
        rank_zero_info(f"LoadSourceWeights: {len(copied)} entries from {path}")
        new = tuple(k for k in pl_module.state_dict() if k not in copied)
        replaced = {k: v for k, v in state.items() if k not in copied}
        declared = PacState(phase="dense", new=new, source=replaced, origin=path)
        if CHECKPOINT_KEY in obj:
            source = state_of(obj, path)
            if source.phase == "calibrate":
                raise ValueError(
                    f"LoadSourceWeights: {path!r} is a calibrated (target) checkpoint; start "
                    "from the source stage's checkpoint"
                )
            assert source.masks is not None
            declared.masks = {k: m for k, m in source.masks.items() if k in copied}
            declared.phase = source.phase
        set_pac_state(pl_module, declared)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"skip": list(self.skip)}  # (checkpoints name the stage that wrote them)


@contextmanager
def state_swapped(
    model: nn.Module, state: Mapping[str, Tensor], strict: bool = True
) -> Iterator[nn.Module]:
    """Temporarily gives ``model`` the entries of ``state`` (shapes may differ: a head of
    another size is swapped in as it is); on exit the model is exactly as before.

    Args:
        model: Any module.
        state: ``state_dict``-style entries (a subset is fine).
        strict: Raise when ``state`` has an entry the model lacks.

    Yields:
        ``model`` itself.
    """
    # aliases (one module registered under two names) appear once per name in a state dict
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers(remove_duplicate=False))
    modules = dict(model.named_modules(remove_duplicate=False))
    for name in state:
        if strict and name not in params and name not in buffers:
            raise ValueError(f"state entry {name!r} is not in the model")
    swapped: list[tuple[Any, str, Tensor]] = []
    done: set[int] = set()
    with torch.no_grad():
        try:
            for name, value in state.items():
                tensor = params.get(name, buffers.get(name))
                if tensor is None or id(tensor) in done:
                    continue
                done.add(id(tensor))
                if name in params:
                    swapped.append((tensor, "data", tensor.data))
                    tensor.data = value.to(device=tensor.device, dtype=tensor.dtype)
                else:
                    owner_name, _, local = name.rpartition(".")
                    owner = modules[owner_name]
                    swapped.append((owner, local, tensor))
                    setattr(owner, local, value.to(tensor.device))
            yield model
        finally:
            for obj, attr, old in reversed(swapped):
                if attr == "data":
                    obj.data = old
                else:
                    setattr(obj, attr, old)


@contextmanager
def source_view(
    model: nn.Module, source: str | os.PathLike | None = None, trust_pickle: bool = False
) -> Iterator[nn.Module]:
    """Temporarily turns a calibrated model back into the source model (no forgetting).

    Inside the context ``model`` holds :func:`source_state_dict` (the calibrated entries zeroed,
    the source head, shared parameters and statistics swapped in, shapes included); in eval
    mode it gives bit-identical outputs to the allocated source model. On exit the model is
    exactly as before.

    Args:
        model: The calibrated model.
        source: Where the PAC-Net state comes from: ``None`` (default) the model's own
            (``model.pac_state``, after a fit), or a checkpoint of the calibrate stage (e.g. for
            a model loaded with ``load_from_checkpoint``).
        trust_pickle: See :func:`checkpoint_state_dict`.

    Yields:
        ``model`` itself.
    """
    state = source_state_dict(model if source is None else source, trust_pickle=trust_pickle)
    with state_swapped(model, state):
        yield model
