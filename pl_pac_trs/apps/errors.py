"""The command line's error contract: a bad input ends with exit code 2 and at most three lines.

``pl-pac-trs`` prints ``<prog>: error: <message>`` (one or two lines naming the argument, file or
value and what was expected) and a last line with the ``--help`` / ``PL_PAC_TRS_DEBUG=1`` tip.
This module turns the long messages of jsonargparse (union dumps with ``Subtypes:``,
``Given value: Namespace(...)``) and of Lightning's own checks into that form; it prints
nothing itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["DEBUG_ENV", "MAX_LINE", "condense", "short", "trainer_culprits"]

#: Set to ``1`` for full tracebacks and uncondensed messages.
DEBUG_ENV = "PL_PAC_TRS_DEBUG"

#: Longest line kept in a message (longer ones are cut with ``...``).
MAX_LINE = 300

_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "Subclass types expect one of",
    "a class path (str)",
    "a dict with class_path entry",
    "a dict without class_path",
    "a dict with parameters accepted by the base class",
    "Expected a <class 'NoneType'>",
    "Expected a NoneType",
)
_GENERIC = ("Not a valid subclass of", "Expected a path but")
_KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')
_CLASS = re.compile(r"^Problem with given class_path '([^']+)':\s*(.*)$")


def _readable(text: str) -> str:
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    text = text.replace("collections.abc.Sequence", "list").replace("builtins.", "")
    return text


def _cut(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


def condense(message: str) -> str:
    """One line (two at most) from a jsonargparse validation message: key path, class, problem.

    ``Parser key "model": ... Problem with given class_path 'C': Parser key "lr": Expected a
    float. Got value: abc`` becomes ``--model.init_args.lr (C): Expected a float. Got value:
    abc``. Messages without that structure keep their first two non-empty lines.
    """
    raw = [line.strip() for line in str(message).splitlines()]
    lines = [re.sub(r"^-\s+", "", line) for line in raw if line]
    if not lines:
        return str(message).strip()
    structured = any(_KEY.match(x) or _CLASS.match(x) for x in lines) or any(
        x.startswith(_NOISE) for x in lines
    )
    if not structured:
        return "\n".join(_cut(_readable(x)) for x in lines[:2])
    path: list[str] = []
    klass: str | None = None
    leaves: list[str] = []
    generic: list[str] = []
    given: str | None = None
    for line in lines:
        key = _KEY.match(line)
        cls = _CLASS.match(line)
        if key:
            if klass is not None and path and path[-1] != "init_args":
                path.append("init_args")
            path.append(key.group(1))
            rest = key.group(2)
        elif cls:
            klass = cls.group(1)
            rest = cls.group(2)
        elif line.startswith("Given value:"):
            value = line.removeprefix("Given value:").strip()
            if len(value) <= 80 and "Namespace(" not in value and "NestedArg(" not in value:
                given = value
            continue
        elif line.startswith(_NOISE):
            continue
        elif line.startswith(_GENERIC):
            generic.append(line)
            continue
        else:
            rest = line
        if rest and rest not in leaves:
            leaves.append(rest)
    leaf = leaves[0] if leaves else (generic[0] if generic else lines[0])
    leaf = _readable(leaf)
    if given is not None and "Got value" not in leaf and leaf.startswith("Expected"):
        leaf = f"{leaf}; got {given!r}"
    where = ("--" + ".".join(path)) if path else ""
    if klass and (not path or klass not in leaf):
        where = f"{where} ({klass})" if where else f"class_path {klass!r}"
    text = f"{where}: {leaf}" if where else leaf
    if len(leaves) > 1:
        text += f" (and {len(leaves) - 1} more problem{'s' if len(leaves) > 2 else ''})"
    return _cut(text)


def short(message: str, max_lines: int = 2) -> str:
    """``message`` condensed to at most ``max_lines`` lines of at most :data:`MAX_LINE` chars."""
    lines = [line for line in condense(message).splitlines() if line.strip()]
    return "\n".join(_cut(line) for line in lines[:max_lines])


def trainer_culprits(message: str, trainer_config: Mapping[str, Any]) -> str:
    """The ``--trainer.<key>=<value>`` settings a Lightning error message refers to.

    A setting is named when the message mentions its key, or its (string) value as a word
    (``No supported gpu backend found!`` names ``--trainer.accelerator='gpu'``).
    """
    named = []
    for key, value in trainer_config.items():
        if value is None or isinstance(value, (list, dict)) or key in ("callbacks", "logger"):
            continue
        mentioned = re.search(rf"\b{re.escape(key)}\b", message) is not None
        if not mentioned and isinstance(value, str) and len(value) > 1:
            mentioned = re.search(rf"\b{re.escape(value)}\b", message) is not None
        if mentioned:
            named.append(f"--trainer.{key}={value!r}")
    return ", ".join(named)
