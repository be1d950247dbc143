"""The shipped LightningCLI configs, installed with the package as ``pl_pac_trs.configs``.

In the repository this is the top-level ``configs/`` folder (the source of truth); a wheel
installs it as ``pl_pac_trs/configs/`` (see ``pyproject.toml``). A config is named by its path
below this folder without ``.yaml``, e.g. ``trs/exp1/quick/trs_oden`` or ``pac/friedman/source``::

    pl-pac-trs fit --config trs/exp1/quick/trs_oden
    pl-pac-trs configs                      # lists them
    pl-pac-trs configs copy pac/friedman    # copies a config (or a folder of them) to edit

Example:
    >>> from pl_pac_trs.configs import config_path, list_configs
    >>> "trs/exp1/quick/trs_oden" in list_configs()
    True
    >>> config_path("trs/exp1/quick/trs_oden").name
    'trs_oden.yaml'
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["config_dir", "config_path", "configs_root", "list_configs"]


def configs_root() -> Path:
    """The folder the shipped configs are installed in."""
    return Path(str(files(__name__)))


def list_configs(prefix: str = "") -> list[str]:
    """The names of the shipped configs (sorted), optionally only those under ``prefix``."""
    root = configs_root()
    names = sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))
    prefix = prefix.strip("/")
    return [n for n in names if not prefix or n == prefix or n.startswith(prefix + "/")]


def config_path(name: str) -> Path:
    """The file of the shipped config ``name`` (``.yaml`` optional).

    Raises:
        FileNotFoundError: No shipped config has that name; the message names the closest
            folder's configs.
    """
    rel = name.strip("/").removesuffix(".yaml")
    path = configs_root() / f"{rel}.yaml"
    if rel and ".." not in Path(rel).parts and path.is_file():
        return path
    parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
    near = list_configs(parent) or list_configs()
    shown = ", ".join(near[:6]) + (", ..." if len(near) > 6 else "")
    raise FileNotFoundError(
        f"no shipped config named {name!r}; e.g. {shown} (all: pl-pac-trs configs)"
    )


def config_dir(name: str) -> Path:
    """The folder of shipped configs ``name`` (e.g. ``pac/friedman``).

    Raises:
        FileNotFoundError: No such folder of shipped configs.
    """
    rel = name.strip("/")
    path = configs_root() / rel
    if rel and ".." not in Path(rel).parts and path.is_dir():
        return path
    folders = sorted({n.rsplit("/", 1)[0] for n in list_configs()})
    raise FileNotFoundError(
        f"no folder of shipped configs named {name!r}; choose from {', '.join(folders)}"
    )
