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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = ["ATTRIBUTE", "CHECKPOINT_KEY", "Masks", "PacState", "pac_state", "set_pac_state"]

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
