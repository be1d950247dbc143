"""PAC-Net mask rules: which weights a pruning keeps (``True``) and which it prunes.

A rule is a function ``pruning_fn(params, amount) -> masks``, as in Lightning's
``ModelPruning(pruning_fn=...)``; ``MagnitudePruning(pruning_fn=...)`` takes one, or the name of
a shipped rule: ``"global"`` (:func:`magnitude_global`, the default) or ``"layer"``
(:func:`magnitude_layer`). :func:`compute_masks` runs a rule and checks what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from pl_pac_trs.pac.checks import check_amount
from pl_pac_trs.pac.state import Masks

__all__ = [
    "PRUNING_FNS",
    "PruningFn",
    "check_pruning_fn",
    "compute_masks",
    "magnitude_global",
    "magnitude_layer",
]


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
        params: Tensors by name (e.g. from :func:`~pl_pac_trs.pac.selection.select_parameters`).
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
