"""Components as ``class_path`` specs: what :class:`~pl_pac_trs.trs.TRSODEN` stores as its
hyper-parameters so that ``TRSODEN.load_from_checkpoint(path)`` rebuilds it alone.

The spec of a component is the form LightningCLI writes into a config (and so into the
hyper-parameters of a CLI-written checkpoint): ``{"class_path": "pkg.Class", "init_args": {...}}``
for an object, ``"pkg.function"`` for a function or class given as a callable, plain values
as they are. Only data goes into a checkpoint (strings, numbers, lists, dicts): it loads with
``torch.load(weights_only=True)``, and rebuilding it imports the named classes the way a
LightningCLI config does.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.core.mixins import HyperparametersMixin

__all__ = ["component_spec", "plain"]

_PLAIN = (str, int, float, bool, type(None))


def _path(obj: Any) -> str | None:
    """The import path of a module-level class or function, else ``None``: the shortest one
    among its module's already imported parent packages that re-export it (``torch.optim.Adam``,
    ``pl_pac_trs.trs.ODENField``, as one writes them in a config)."""
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or not name or "<" in name or module == "__main__":
        return None
    parts = module.split(".")
    for i in range(1, len(parts)):
        package = sys.modules.get(".".join(parts[:i]))
        if "." not in name and getattr(package, name, None) is obj:
            return f"{'.'.join(parts[:i])}.{name}"
    return f"{module}.{name}"


def plain(value: Any) -> Any:
    """``value`` as checkpoint data (tensors as lists, tuples as lists, nested specs), or
    raises ``TypeError`` naming what is not data."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [plain(v) for v in value]
    spec = component_spec(value)
    if spec is None:
        raise TypeError(f"{type(value).__name__} is not data and has no class_path spec")
    return spec


def component_spec(obj: Any) -> dict[str, Any] | str | None:
    """The ``class_path`` spec of ``obj`` (see the module docstring), or ``None`` when it cannot
    be written as one.

    * a module-level class or function: its import path;
    * ``functools.partial(cls, **kwargs)`` of a class: ``{"class_path", "init_args": kwargs}``;
    * a :class:`~lightning.pytorch.core.mixins.HyperparametersMixin` that saved its
      hyper-parameters (e.g. :class:`~pl_pac_trs.trs.ODENField`): its class and ``hparams``;
    * any other object whose constructor arguments are all kept as attributes of the same name
      (e.g. :class:`~pl_pac_trs.trs.Reversal`, the integrators): its class and those attributes.

    Example:
        >>> from pl_pac_trs.trs import Reversal
        >>> spec = component_spec(Reversal([1, -1]))
        >>> spec["class_path"], spec["init_args"]
        ('pl_pac_trs.trs.Reversal', {'signs': [1.0, -1.0], 'permutation': [0, 1]})
        >>> component_spec(functools.partial(torch.optim.SGD, lr=0.1))
        {'class_path': 'torch.optim.SGD', 'init_args': {'lr': 0.1}}
    """
    if isinstance(obj, _PLAIN):
        return obj
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return _path(obj)
    if isinstance(obj, functools.partial):
        path = _path(obj.func) if inspect.isclass(obj.func) else None
        if path is None or obj.args:
            return None
        return _spec(path, obj.keywords)
    path = _path(type(obj))
    if path is None:
        return None
    if isinstance(obj, HyperparametersMixin) and obj.hparams:
        return _spec(path, dict(obj.hparams))
    try:
        params = inspect.signature(type(obj).__init__).parameters.values()
    except (TypeError, ValueError):
        return None
    args = {}
    for p in list(params)[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not hasattr(obj, p.name):
            return None
        args[p.name] = getattr(obj, p.name)
    return _spec(path, args)


def _spec(path: str, init_args: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        return {"class_path": path, "init_args": plain(init_args)}
    except TypeError:
        return None
