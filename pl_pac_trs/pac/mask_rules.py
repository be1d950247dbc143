"""PAC-Net mask rules: which parameters are prunable, and which of their weights a pruning keeps.

A rule is a function ``pruning_fn(params, amount) -> masks`` (``True`` = kept), as in Lightning's
``ModelPruning(pruning_fn=...)``; ``MagnitudePruning(pruning_fn=...)`` takes one, or the name of
a shipped rule: ``"global"`` (:func:`magnitude_global`, the default) or ``"layer"``
(:func:`magnitude_layer`). :func:`compute_masks` runs a rule and checks what it returns.
:func:`select_parameters` picks the prunable parameters by module type, parameter name and name
pattern; :func:`matches_any` is the name-pattern rule every PAC-Net callback uses
(``new_modules``, ``skip``, ``exclude``, ``head``).
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from pl_pac_trs.pac.checks import check_amount
from pl_pac_trs.pac.state import Masks

__all__ = [
    "DEFAULT_MODULE_TYPES",
    "PRUNING_FNS",
    "PruningFn",
    "check_pruning_fn",
    "compute_masks",
    "magnitude_global",
    "magnitude_layer",
    "matches_any",
    "require_matches",
    "resolve_module_types",
    "select_parameters",
]

#: Default prunable module types: every ``nn.Linear`` and every convolution (``nn.ConvNd`` and
#: ``nn.ConvTransposeNd``; their lazy variants derive from them). Dotted names, so that
#: LightningCLI can print and parse the default.
DEFAULT_MODULE_TYPES: tuple[str, ...] = (
    "torch.nn.Linear",
    "torch.nn.Conv1d",
    "torch.nn.Conv2d",
    "torch.nn.Conv3d",
    "torch.nn.ConvTranspose1d",
    "torch.nn.ConvTranspose2d",
    "torch.nn.ConvTranspose3d",
)


def resolve_module_types(types: Iterable[type[nn.Module] | str]) -> tuple[type[nn.Module], ...]:
    """Turns module classes or dotted names (``"torch.nn.Linear"``, as in YAML) into classes.

    Args:
        types: Classes or dotted import paths of ``nn.Module`` subclasses.

    Returns:
        The classes.

    Raises:
        ValueError: If a name cannot be imported or is not an ``nn.Module`` subclass.
    """
    out: list[type[nn.Module]] = []
    for item in types:
        cls = item
        if isinstance(item, str):
            module_name, _, attr = item.rpartition(".")
            try:
                cls = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError, ValueError) as err:
                raise ValueError(
                    f"module_types: cannot import {item!r}; expected a dotted path to an "
                    "nn.Module subclass such as 'torch.nn.Linear'"
                ) from err
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ValueError(f"module_types: {item!r} is not an nn.Module subclass")
        out.append(cls)
    return tuple(out)


def matches_any(name: str, patterns: Sequence[str]) -> bool:
    """Whether ``name`` matches one of the ``fnmatch`` patterns or starts with ``pattern + '.'``.

    So ``"head"`` matches every parameter of the module ``head`` and ``"*.bias"`` every bias.
    """
    return any(fnmatch.fnmatchcase(name, p) or name.startswith(p + ".") for p in patterns)


def require_matches(model: nn.Module, patterns: Sequence[str], what: str) -> None:
    """Raises ``ValueError("<what> <pattern> matches no parameter of <model>")`` for the first
    of ``patterns`` that matches no parameter name of ``model`` (see :func:`matches_any`)."""
    names = [n for n, _ in model.named_parameters()]
    for pattern in patterns:
        if not any(matches_any(n, (pattern,)) for n in names):
            raise ValueError(f"{what} {pattern!r} matches no parameter of {type(model).__name__}")


def select_parameters(
    model: nn.Module,
    module_types: Sequence[type[nn.Module] | str] = DEFAULT_MODULE_TYPES,
    param_names: Sequence[str] = ("weight",),
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> dict[str, nn.Parameter]:
    """The prunable parameters of ``model``, by qualified name, in ``named_modules`` order.

    A parameter is selected when its module is an instance of one of ``module_types``, its local
    name is in ``param_names``, its qualified name matches ``include`` (when given) and does not
    match ``exclude`` (patterns as in :func:`matches_any`).

    Args:
        model: The model (typically the ``LightningModule``; names are relative to it).
        module_types: Module classes or dotted names.
        param_names: Local parameter names inside the matched modules.
        include: Optional patterns a qualified parameter name must match.
        exclude: Patterns that remove parameters from the selection.

    Returns:
        Ordered mapping from qualified parameter name to parameter.
    """
    types = resolve_module_types(module_types)
    selected: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        if not isinstance(module, types):
            continue
        for local, param in module.named_parameters(recurse=False):
            if local not in param_names or param is None or id(param) in seen:
                continue
            name = f"{module_name}.{local}" if module_name else local
            if include is not None and not matches_any(name, include):
                continue
            if matches_any(name, exclude):
                continue
            seen.add(id(param))
            selected[name] = param
    return selected


def _prune_flat(scores: Tensor, amount: float) -> Tensor:
    """Bool keep-mask for a flat score vector: exactly ``round(amount * n)`` smallest pruned.

    Ties are broken deterministically by position (earlier entries are pruned first), so the
    count is exact whatever the weight values.
    """
    n = scores.numel()
    k = round(amount * n)
    keep = torch.ones(n, dtype=torch.bool, device=scores.device)
    if k:
        order = torch.argsort(scores, stable=True)
        keep[order[:k]] = False
    return keep


def magnitude_global(params: Mapping[str, Tensor], amount: float) -> Masks:
    """Keeps the largest ``|w|`` ranked over all tensors together: exactly
    ``round(amount * total)`` entries pruned (the shipped ``pruning_fn="global"``)."""
    with torch.no_grad():
        device = next(iter(params.values())).device
        scores = torch.cat([p.detach().abs().flatten().to(device) for p in params.values()])
        keep = _prune_flat(scores, amount)
        del scores
        out: Masks = {}
        start = 0
        for name, p in params.items():
            out[name] = keep[start : start + p.numel()].view_as(p).to(p.device).clone()
            start += p.numel()
        return out


def magnitude_layer(params: Mapping[str, Tensor], amount: float) -> Masks:
    """Keeps the largest ``|w|`` of each tensor: ``round(amount * n_l)`` entries pruned in each
    (the shipped ``pruning_fn="layer"``; most likely the paper's "LWM")."""
    with torch.no_grad():
        return {
            name: _prune_flat(p.detach().abs().flatten(), amount).view_as(p)
            for name, p in params.items()
        }


#: A mask rule: ``pruning_fn(params, amount) -> masks`` (``True`` = essential).
PruningFn = Callable[[Mapping[str, Tensor], float], Masks]
#: The shipped mask rules, by the name ``MagnitudePruning(pruning_fn=...)`` accepts.
PRUNING_FNS: dict[str, PruningFn] = {"global": magnitude_global, "layer": magnitude_layer}


def check_pruning_fn(value: str | PruningFn) -> PruningFn:
    if callable(value):
        return value
    if value not in PRUNING_FNS:
        raise ValueError(
            f"pruning_fn must be one of {tuple(PRUNING_FNS)} or a callable "
            f"(params, amount) -> masks, got {value!r}"
        )
    return PRUNING_FNS[value]


def compute_masks(
    params: Mapping[str, Tensor], amount: float = 0.8, pruning_fn: str | PruningFn = "global"
) -> Masks:
    """Masks by ``pruning_fn`` (default: global magnitude), checked: ``True`` = essential.

    Args:
        params: Tensors by name (e.g. from :func:`select_parameters`).
        amount: Fraction pruned, in ``[0, 1)``.
        pruning_fn: ``"global"`` (:func:`magnitude_global`), ``"layer"``
            (:func:`magnitude_layer`) or a callable ``(params, amount) -> masks``.

    Returns:
        Bool masks with the names, shapes and devices of ``params``.

    Raises:
        ValueError: On a bad ``amount``/``pruning_fn``, no tensors, non-finite weights (named),
            or masks from a custom rule that do not match ``params``.
    """
    amount = check_amount(amount)
    fn = check_pruning_fn(pruning_fn)
    if not params:
        raise ValueError("compute_masks: no parameters to prune")
    for name, p in params.items():
        if not torch.isfinite(p).all():
            raise ValueError(f"cannot prune {name!r}: it holds NaN or infinite values")
    masks = fn(params, amount)
    if not isinstance(masks, Mapping) or set(masks) != set(params):
        raise ValueError(f"pruning_fn {fn!r} must return one mask per parameter given")
    for name, mask in masks.items():
        ok = isinstance(mask, Tensor) and mask.dtype == torch.bool
        if not ok or mask.shape != params[name].shape:
            raise ValueError(
                f"pruning_fn {fn!r}: the mask of {name!r} must be a bool tensor of the "
                "parameter's shape"
            )
    return {name: masks[name].to(params[name].device) for name in params}
