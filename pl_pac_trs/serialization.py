"""Reading checkpoints and masks files as data: ``torch.load(weights_only=True)``, never a pickle.

A file a user hands us (``--ckpt_path``, ``LoadSourceWeights(checkpoint=...)``, a masks file) is
data. A full unpickling of it can run arbitrary code, so every loader of this package goes through
:func:`load_torch_file`: tensors, plain Python containers and numbers, and the few harmless classes
of :data:`SAFE_GLOBALS` load; anything else is refused with :class:`UnsafeFileError`, naming the
file and the first offending global. :class:`SafeCheckpointIO` applies the same rule to
Lightning's own checkpoint loading (``trainer.fit(ckpt_path=...)``); the ``pl-pac-trs`` command
line installs it.

Trusted legacy files that do need a full unpickling can be opted in explicitly: the argument
``trust_pickle=True`` of the loaders, or the environment variable ``PL_PAC_TRS_TRUST_PICKLE=1``
for a whole process (command line included), or Lightning's own ``weights_only=False``
(``--weights_only=false`` on the command line).
"""

from __future__ import annotations

import os
import pathlib
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.data import AttributeDict
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = [
    "SAFE_GLOBALS",
    "TRUST_ENV",
    "SafeCheckpointIO",
    "UnsafeFileError",
    "load_torch_file",
    "pickle_trusted",
]

#: Environment variable that opts the whole process in to full unpickling (trusted files only).
TRUST_ENV = "PL_PAC_TRS_TRUST_PICKLE"

#: Classes allowed besides ``torch.load``'s own weights-only set: plain-data containers that
#: hyper-parameters of Lightning checkpoints may hold (paths, Lightning's ``AttributeDict``,
#: ranges).
SAFE_GLOBALS: list[type] = [
    AttributeDict,
    pathlib.PosixPath,
    pathlib.PurePosixPath,
    pathlib.WindowsPath,
    pathlib.PureWindowsPath,
    range,  # e.g. a hyper-parameter `range(...)`: rebuilt from three ints, runs no code
]


class UnsafeFileError(ValueError):
    """A file holds pickled objects that a weights-only load refuses (they could run code)."""


def pickle_trusted(trust_pickle: bool = False) -> bool:
    """Whether full unpickling is allowed: ``trust_pickle`` or ``PL_PAC_TRS_TRUST_PICKLE=1``."""
    return bool(trust_pickle) or os.environ.get(TRUST_ENV, "").strip().lower() in (
        "1",
        "true",
        "yes",
    )


def _unsafe_globals(path: Path) -> list[str]:
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip checkpoint: the refusal message alone has to do
        return []


def load_torch_file(
    path: str | os.PathLike,
    what: str = "checkpoint",
    trust_pickle: bool = False,
    map_location: Any = "cpu",
) -> Any:
    """Loads a ``torch.save`` file as data (``weights_only=True`` with :data:`SAFE_GLOBALS`).

    Args:
        path: The file.
        what: How error messages name the file (``"--ckpt_path"``, ``"masks file"``, ...).
        trust_pickle: Allow a full unpickling (only for files you trust; see the module
            docstring for the environment variable).
        map_location: Passed to ``torch.load``.

    Returns:
        The loaded object.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        UnsafeFileError: If the file holds objects a weights-only load refuses.
        ValueError: If the file is empty, truncated or not a torch file.
    """
    path = Path(path)
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "missing"
        raise FileNotFoundError(f"{what} {str(path)!r} is {kind}; expected a checkpoint file")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {str(path)!r} is empty (0 bytes); expected a torch checkpoint")
    trusted = pickle_trusted(trust_pickle)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS), warnings.catch_warnings():
            # a corrupt file's first bytes read as a bogus protocol number: the error says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as err:
        text = str(err).lower()
        found = _unsafe_globals(path) if not trusted and "weights only" in text else []
        if found or (not trusted and "weights only" in text and "global" in text):
            names = f" ({', '.join(found[:3])})" if found else ""
            raise UnsafeFileError(
                f"{what} {str(path)!r} holds pickled objects{names} besides tensors and plain "
                f"data: refused, unpickling them could run code.\nOnly for a file you trust: set "
                f"{TRUST_ENV}=1 (or pass trust_pickle=True)."
            ) from None
        raise _unreadable(what, path, err) from err
    except Exception as err:  # corrupt bytes can fail anywhere in the unpickler
        # (IndexError, KeyError, struct.error, EOFError, zipfile.BadZipFile, ...)
        raise _unreadable(what, path, err) from err


def _unreadable(what: str, path: Path, err: BaseException) -> ValueError:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    if len(reason) > 100:
        reason = reason[:97] + "..."
    return ValueError(
        f"{what} {str(path)!r} is not a readable torch checkpoint (truncated or corrupt?): {reason}"
    )


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` whose loading goes through :func:`load_torch_file`.

    Local files load weights-only (clear errors for missing, empty, corrupt and unsafe files);
    an explicit ``weights_only=False`` from Lightning (``--weights_only=false``) or
    ``PL_PAC_TRS_TRUST_PICKLE=1`` opts in to a full unpickling. Remote (``fsspec`` URL) paths
    use Lightning's loader, weights-only unless opted in the same way.
    """

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        trusted = weights_only is False or pickle_trusted()
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only=not trusted)
        return load_torch_file(
            path,
            what="checkpoint",
            trust_pickle=trusted,
            map_location=map_location if map_location is not None else "cpu",
        )
