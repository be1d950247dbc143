"""Which parameters PAC-Net prunes: selection by module type, parameter name and name pattern.

Also :func:`matches_any`, the name-pattern rule every PAC-Net callback uses (``new_modules``,
``skip``, ``exclude``, ``head``).
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Iterable, Sequence

from torch import nn

__all__ = [
    "DEFAULT_MODULE_TYPES",
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
