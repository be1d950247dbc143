"""``pl-pac-trs configs``: list, show and copy out the shipped configs (:mod:`pl_pac_trs.configs`).

Shipped configs are also accepted by name wherever the CLI takes ``--config``
(:func:`resolve_config_args`): ``pl-pac-trs fit --config trs/exp1/quick/trs_oden`` works from any
directory, with or without a checkout. A file of that name in the working directory wins.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

from pl_pac_trs.configs import config_dir, config_path, configs_root, list_configs

__all__ = ["main", "resolve_config_args"]


def _shipped(value: str) -> str:
    """``value`` itself when it is a file (or inline YAML), else the shipped config it names."""
    if Path(value).is_file() or value.lstrip().startswith("{") or "\n" in value or ":" in value:
        return value
    try:
        return str(config_path(value))
    except FileNotFoundError:
        return value  # neither a file nor a name: jsonargparse names the missing file


def resolve_config_args(args: Sequence[str]) -> list[str]:
    """``--config NAME`` / ``-c NAME`` / ``--config=NAME`` with a shipped config's name replaced
    by its installed path; every other argument unchanged."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg in ("-c", "--config") and i + 1 < len(out):
            out[i + 1] = _shipped(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + _shipped(arg.split("=", 1)[1])
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pl-pac-trs configs",
        description="The shipped configs, by name (their path below the configs folder without "
        ".yaml). Any of them runs from anywhere: pl-pac-trs fit --config NAME.",
    )
    sub = p.add_subparsers(dest="action")
    ls = sub.add_parser("list", help="list the shipped configs (the default)")
    ls.add_argument("prefix", nargs="?", default="", help="only those under this folder")
    show = sub.add_parser("show", help="print a shipped config")
    show.add_argument("name")
    cp = sub.add_parser("copy", help="copy a shipped config, or a folder of them, to edit")
    cp.add_argument("name", help="a config (trs/exp1/oden) or a folder (pac/friedman)")
    cp.add_argument("dest", nargs="?", default=".", help="target folder (default: here)")
    cp.add_argument("--force", action="store_true", help="overwrite files that exist")
    sub.add_parser("path", help="print the folder the shipped configs are installed in")
    return p


def _copy(name: str, dest: Path, force: bool) -> list[Path]:
    try:
        sources = [config_path(name)]
        base = sources[0].parent
    except FileNotFoundError:
        base = config_dir(name)  # raises, naming the folders, when it is not one either
        sources = sorted(base.rglob("*.yaml"))
        dest = dest / base.name
    targets = [dest / src.relative_to(base) for src in sources]
    clash = [t for t in targets if t.exists()]
    if clash and not force:
        raise FileExistsError(
            f"{str(clash[0])!r} exists; pass --force to overwrite, or choose another folder"
        )
    for src, target in zip(sources, targets, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return targets


def main(argv: Sequence[str]) -> int:
    """Entry point of ``pl-pac-trs configs``; returns the exit code."""
    args = _parser().parse_args(list(argv))
    if args.action in (None, "list"):
        names = list_configs(getattr(args, "prefix", ""))
        if not names:
            raise FileNotFoundError(f"no shipped configs under {args.prefix!r}")
        print("\n".join(names))
    elif args.action == "show":
        print(config_path(args.name).read_text(), end="")
    elif args.action == "path":
        print(configs_root())
    else:
        try:
            written = _copy(args.name, Path(args.dest), args.force)
        except FileExistsError as err:
            raise ValueError(str(err)) from None
        for path in written:
            print(path)
    return 0
