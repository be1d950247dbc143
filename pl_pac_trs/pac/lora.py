"""LoRA (low-rank adapters, Hu et al. 2021) from Hugging Face ``peft`` as a Lightning callback:
the "adapt without forgetting" method PAC-Net is compared with.

:class:`LoRA` injects ``peft`` LoRA adapters (``peft.inject_adapter_in_model`` with a
``LoraConfig``) into the model's ``nn.Linear`` / convolution modules when the fit is set up,
trains only the adapters and the new modules (a new head), and keeps every other parameter and
the normalisation statistics frozen. With the adapters disabled (:func:`adapters_disabled`) the
model computes exactly what the source model computes: each adapted layer then runs its base
layer alone, whose weights never changed.

``peft`` is an optional dependency: ``pip install 'pl-pac-trs[peft]'``. Checkpoints of an
adapted model hold ``peft``'s parameter names (``<layer>.base_layer.weight``, ...) and the adapter
settings (:data:`LORA_CHECKPOINT_KEY`): :func:`load_adapted` rebuilds any LightningModule from
one; a module whose ``on_load_checkpoint`` calls :func:`restore_adapters` (the package's task
models) also loads with ``Module.load_from_checkpoint``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from pl_pac_trs.pac.callback import Freezer, FreezingCallback, PacCallback
from pl_pac_trs.pac.mask_rules import matches_any, require_matches, resolve_module_types
from pl_pac_trs.pac.state import load_checkpoint

__all__ = [
    "LORA_CHECKPOINT_KEY",
    "LORA_MODULE_TYPES",
    "LoRA",
    "adapter_state_dict",
    "adapters_disabled",
    "base_state_dict",
    "inject_lora",
    "is_adapted",
    "load_adapted",
    "lora_spec",
    "restore_adapters",
]

#: Top-level checkpoint key under which :class:`LoRA` stores its adapter settings.
LORA_CHECKPOINT_KEY = "pl_pac_trs_lora"
#: Module types adapted by default: the linear and convolution layers ``peft`` supports.
LORA_MODULE_TYPES = ("torch.nn.Linear", "torch.nn.Conv1d", "torch.nn.Conv2d", "torch.nn.Conv3d")
_INSTALL = "LoRA needs the optional dependency peft: pip install 'pl-pac-trs[peft]'"

M = TypeVar("M", bound=nn.Module)


def _peft() -> Any:
    try:
        import peft
    except ImportError as err:
        raise ImportError(_INSTALL) from err
    return peft


def _tuner_layer() -> type:
    return _peft().tuners.tuners_utils.BaseTunerLayer


def is_adapted(model: nn.Module) -> bool:
    """Whether ``model`` holds ``peft`` adapter layers (``False`` when peft is not installed)."""
    try:
        layer = _tuner_layer()
    except ImportError:
        return False
    return any(isinstance(m, layer) for m in model.modules())


def lora_spec(
    model: nn.Module,
    rank: int,
    alpha: float,
    dropout: float = 0.0,
    module_types: Sequence[type[nn.Module] | str] = LORA_MODULE_TYPES,
    exclude: Sequence[str] = (),
) -> dict[str, Any]:
    """The adapter settings for ``model``: ``LoraConfig`` arguments as plain data (what a
    checkpoint stores), with the adapted modules named exactly (a full-match regex).

    Raises:
        ValueError: If no module of ``module_types`` is left outside ``exclude``.
    """
    types = resolve_module_types(module_types)
    targets = [
        name
        for name, module in model.named_modules()
        if name and isinstance(module, types) and not matches_any(name, exclude)
    ]
    if not targets:
        raise ValueError(
            f"LoRA: no module of {[t.__name__ for t in types]} outside exclude={list(exclude)} "
            f"in {type(model).__name__}"
        )
    return {
        "r": int(rank),
        "lora_alpha": float(alpha),
        "lora_dropout": float(dropout),
        "bias": "none",
        "target_modules": "^(" + "|".join(re.escape(t) for t in targets) + ")$",
    }


def inject_lora(model: M, spec: Mapping[str, Any]) -> M:
    """Injects ``peft`` LoRA adapters described by ``spec`` (see :func:`lora_spec`) into
    ``model`` in place (``peft.inject_adapter_in_model``); returns ``model``.

    ``peft`` leaves every parameter but the adapters with ``requires_grad=False``."""
    peft = _peft()
    with warnings.catch_warnings():  # peft warns that a plain nn.Module has no `config`
        warnings.filterwarnings("ignore", message=".*config.*", category=UserWarning)
        return peft.inject_adapter_in_model(peft.LoraConfig(**dict(spec)), model)


@contextmanager
def adapters_disabled(model: M) -> Iterator[M]:
    """Inside the context every ``peft`` adapter layer of ``model`` runs its base layer alone:
    the model computes what the model without adapters computed (bit for bit; the base weights
    are never trained). Outside, adapters and their ``requires_grad`` flags are as before.

    Raises:
        ValueError: If adapters were merged into the base weights (``peft``'s ``merge``): the
            base is then no longer the source, and un-merging is not exact.
    """
    layers = [m for m in model.modules() if isinstance(m, _tuner_layer())]
    if any(m.merged for m in layers):
        raise ValueError(
            "adapters_disabled: adapters are merged into the base weights; the source model is "
            "no longer exact (un-merging subtracts in floating point). Keep adapters unmerged."
        )
    saved = [(m, m.disable_adapters) for m in layers]
    grads = [(p, p.requires_grad) for m in layers for p in m.parameters()]
    try:
        for m in layers:
            m.enable_adapters(False)
        yield model
    finally:
        for m, disabled in saved:
            m.enable_adapters(not disabled)
        for p, flag in grads:
            p.requires_grad_(flag)


def base_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model``'s parameters and buffers as the model without adapters names them: each adapter
    layer contributes its base layer's tensors under the layer's own name, adapters are left
    out. Equals the source ``state_dict`` entry for entry while the base is untouched."""
    layer = _tuner_layer()
    out: dict[str, Tensor] = {}

    def walk(module: nn.Module, prefix: str) -> None:
        if isinstance(module, layer):
            module = module.get_base_layer()
        for name, p in module.named_parameters(recurse=False):
            out[prefix + name] = p
        for name, b in module.named_buffers(recurse=False):
            out[prefix + name] = b
        for name, child in module.named_children():
            walk(child, f"{prefix}{name}.")

    walk(model, "")
    return out


def _spec_of(model: nn.Module, lora: LoRA) -> dict[str, Any]:
    """The settings of an already adapted model: its adapter layers' names, ``lora``'s values."""
    names = [n for n, m in model.named_modules() if isinstance(m, _tuner_layer())]
    spec = {"r": lora.rank, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout, "bias": "none"}
    return {**spec, "target_modules": "^(" + "|".join(re.escape(n) for n in names) + ")$"}


def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The adapter weights alone (``peft.get_peft_model_state_dict``): what LoRA adds to the
    source model for the target task, besides the new modules."""
    return _peft().get_peft_model_state_dict(model)


class LoRA(FreezingCallback):
    """Fine-tunes with ``peft`` LoRA adapters: the source model is kept and recoverable exactly.

    At ``setup`` (after ``LoadSourceWeights``, which must be listed before it) adapters
    ``W x + (alpha / rank) * B A x`` (``B`` initialised to zero) are injected into every module of
    ``module_types`` outside ``exclude`` and ``new_modules``; only the adapters and the
    ``new_modules`` train. Every other parameter is frozen (and stays frozen after the fit) and
    normalisation layers outside ``new_modules`` run in eval mode during the fit, so their running
    statistics stay the source ones. The model keeps its adapters after the fit;
    :func:`adapters_disabled` gives the source model back (with the source head put back where
    ``new_modules`` replaced it). The adapter settings go into every checkpoint
    (:data:`LORA_CHECKPOINT_KEY`) for :func:`load_adapted` / :func:`restore_adapters`.

    Args:
        rank: Adapter rank ``r`` (``>= 1``).
        alpha: Scaling numerator (``peft``'s ``lora_alpha``; scaling ``alpha / rank``);
            default ``rank`` (scaling 1).
        dropout: Dropout on the adapters' input (``peft``'s ``lora_dropout``).
        module_types: Module classes (or dotted names) that get adapters.
        new_modules: Name patterns of modules new for the target (a new head): trained fully,
            no adapters.
        exclude: Name patterns of modules that get no adapters (and stay frozen).

    Raises:
        ImportError: If ``peft`` is not installed (the message says how to install it).
        ValueError: For a rank < 1, a non-finite alpha, a dropout outside ``[0, 1)``; at
            ``setup``, if a ``new_modules`` pattern matches nothing or no module gets adapters.

    Example::

        >>> LoRA(rank=4, alpha=8, new_modules=["head"]).scaling
        2.0
    """

    def __init__(
        self,
        rank: int = 4,
        alpha: float | None = None,
        dropout: float = 0.0,
        module_types: Sequence[type[nn.Module] | str] = LORA_MODULE_TYPES,
        new_modules: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> None:
        super().__init__()
        _peft()
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"LoRA: rank must be a whole number >= 1, got {rank!r}")
        alpha = float(rank if alpha is None else alpha)
        if not torch.isfinite(torch.tensor(alpha)) or alpha <= 0:
            raise ValueError(f"LoRA: alpha must be a finite number > 0, got {alpha!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"LoRA: dropout must be in [0, 1), got {dropout!r}")
        self.rank, self.alpha, self.dropout = rank, alpha, float(dropout)
        self.module_types = tuple(module_types)
        self.new_modules = (new_modules,) if isinstance(new_modules, str) else tuple(new_modules)
        exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
        self.exclude = exclude
        self.spec: dict[str, Any] | None = None

    @property
    def scaling(self) -> float:
        """``alpha / rank``, the factor on the adapters' output."""
        return self.alpha / self.rank

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        require_matches(pl_module, self.new_modules, "LoRA: new_modules")
        adapted = is_adapted(pl_module)  # a second fit of an adapted model keeps its adapters
        if not adapted:
            spec = lora_spec(
                pl_module,
                self.rank,
                self.alpha,
                self.dropout,
                self.module_types,
                (*self.exclude, *self.new_modules),
            )
        # freeze everything but the new modules (recorded, released at teardown), then inject:
        # peft freezes every non-adapter parameter, the new modules are made trainable again
        self.freezer.freeze(pl_module, trainable_modules=self.new_modules)
        new = [
            p
            for n, p in pl_module.named_parameters()
            if matches_any(n, self.new_modules) and p.requires_grad
        ]
        if adapted:
            for m in pl_module.modules():
                if isinstance(m, _tuner_layer()):
                    m.set_adapter(m.active_adapters)  # its adapters trainable again
            self.spec = self.spec or _spec_of(pl_module, self)
        else:
            inject_lora(pl_module, spec)
            self.spec = spec
        for p in new:
            p.requires_grad_(True)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # the base stays frozen after the fit (unlike LinearProbe's release): the adapted model
        # is adapters + new modules on a fixed base
        PacCallback.teardown(self, trainer, pl_module, stage)
        if stage == "fit":
            self.freezer = Freezer()

    @override
    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.spec is not None:
            checkpoint[LORA_CHECKPOINT_KEY] = dict(self.spec)

    @override
    def state_dict(self) -> dict[str, Any]:
        # in every checkpoint: a LoRA checkpoint is told apart from a fine-tuning one when a
        # stage resumes or tests it, and a resume checks the adapters' settings
        return {"rank": self.rank, "alpha": self.alpha}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        theirs = (state_dict.get("rank"), state_dict.get("alpha"))
        if theirs != (self.rank, self.alpha):
            raise ValueError(
                f"LoRA: the checkpoint resumed was trained with rank={theirs[0]}, "
                f"alpha={theirs[1]}; this fit has rank={self.rank}, alpha={self.alpha}"
            )


def restore_adapters(model: nn.Module, checkpoint: Mapping[str, Any]) -> bool:
    """Injects the adapters a LoRA checkpoint describes into a model built without them, so that
    its ``state_dict`` can then be loaded; call it from a LightningModule's
    ``on_load_checkpoint`` to make ``Module.load_from_checkpoint`` work on LoRA checkpoints (the
    package's task models do). Does nothing for other checkpoints or an adapted model.

    Returns:
        Whether adapters were injected.
    """
    spec = checkpoint.get(LORA_CHECKPOINT_KEY)
    if not isinstance(spec, dict) or is_adapted(model):
        return False
    inject_lora(model, spec)
    return True


def load_adapted(
    module_cls: type[LightningModule],
    checkpoint: str | os.PathLike,
    trust_pickle: bool = False,
    **kwargs: Any,
) -> LightningModule:
    """A LightningModule with its LoRA adapters from a checkpoint written during a
    :class:`LoRA` fit: built as ``module_cls.load_from_checkpoint`` builds it (hyper-parameters,
    ``kwargs``), adapters injected with the stored settings, then every entry loaded strictly.

    Raises:
        ValueError: If the checkpoint holds no LoRA settings (not from a LoRA fit).
    """
    data = load_checkpoint(checkpoint, what="LoRA checkpoint", trust_pickle=trust_pickle)
    spec = data.get(LORA_CHECKPOINT_KEY)
    if not isinstance(spec, dict):
        raise ValueError(
            f"{str(checkpoint)!r} holds no {LORA_CHECKPOINT_KEY!r} entry: not written by a LoRA "
            "fit (use module_cls.load_from_checkpoint)"
        )
    with warnings.catch_warnings():  # the adapter entries are loaded below, strictly
        warnings.filterwarnings("ignore", message="Found keys that are")
        model = module_cls.load_from_checkpoint(
            checkpoint, strict=False, weights_only=not trust_pickle, **kwargs
        )
    inject_lora(model, spec)
    model.load_state_dict(data["state_dict"], strict=True)
    return model
