"""On-disk cache of generated datasets: ``.npz`` files keyed by a hash of the generation arguments.

Files are written atomically (temporary file in the same directory, then :func:`os.replace`), so
an interrupted write never leaves a truncated cache file behind. Every file stores a SHA-256 digest
of its arrays; a file that cannot be read, lacks arrays, or whose digest does not match is treated
as absent (the caller regenerates and overwrites it) instead of being trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["arrays_digest", "cache_key", "cache_path", "load_cached_arrays", "save_arrays_atomic"]

_DIGEST_KEY = "__digest__"


def cache_key(args: Mapping[str, Any]) -> str:
    """Return a stable hex key for a mapping of JSON-serialisable generation arguments."""
    text = json.dumps(dict(args), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_path(cache_dir: str | os.PathLike, prefix: str, args: Mapping[str, Any]) -> Path:
    """Path of the cache file for a dataset named ``prefix`` generated with ``args``."""
    return Path(cache_dir).expanduser() / f"{prefix}-{cache_key(args)[:20]}.npz"


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``arrays`` (in sorted name order)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_arrays_atomic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` (plus their digest) to ``path`` as ``.npz``, atomically.

    Args:
        path: destination file; its directory is created if needed.
        arrays: the arrays to store; names must not start with ``__``.

    Returns:
        The destination path.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    for name, a in payload.items():
        if a.dtype == object:
            raise TypeError(f"cannot cache {name!r}: object arrays are not supported")
    payload[_DIGEST_KEY] = np.asarray(arrays_digest(payload))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_cached_arrays(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict | None:
    """Load arrays written by :func:`save_arrays_atomic`, or ``None`` if absent or not valid.

    A file is valid when it can be read, holds every name in ``required``, its stored digest
    matches the arrays, and no floating-point array contains NaN or inf.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return None
    stored = arrays.pop(_DIGEST_KEY, None)
    if stored is None or str(stored) != arrays_digest(arrays):
        return None
    if any(name not in arrays for name in required):
        return None
    for a in arrays.values():
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            return None
    return arrays
