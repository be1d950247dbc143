"""Download of data files into a cache directory, verified by SHA-256 and written atomically.

The file is streamed into a temporary file in the cache directory while its SHA-256 is computed;
only a file whose digest matches is moved (``os.replace``) to its final name. A failed, interrupted
or corrupted download therefore never leaves a file under the final name, and an existing cache
file is reused only after its digest has been checked again.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["ChecksumError", "default_cache_dir", "download_file", "sha256_file"]

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class ChecksumError(ValueError):
    """The SHA-256 of a downloaded file differs from the expected one."""


def default_cache_dir() -> Path:
    """``$PL_PAC_TRS_CACHE``, else ``$XDG_CACHE_HOME/pl_pac_trs``, else ``~/.cache/pl_pac_trs``."""
    env = os.environ.get("PL_PAC_TRS_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pl_pac_trs"


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def download_file(
    url: str,
    sha256: str,
    cache_dir: str | os.PathLike | None = None,
    filename: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Return the cached copy of ``url``, downloading it first if needed.

    Args:
        url: ``http(s)://`` or ``file://`` address of the file.
        sha256: expected hex SHA-256 of the file (64 hex digits).
        cache_dir: directory of the cache; ``None`` uses :func:`default_cache_dir`.
        filename: name of the cached file; default: the last component of the URL path.
        timeout: socket timeout in seconds.

    Returns:
        Path of the verified cached file.

    Raises:
        ValueError: if ``sha256`` is not 64 hex digits or no file name can be derived.
        ChecksumError: if the downloaded file's digest differs (nothing is written to the cache).
        OSError: if the download fails (nothing is written to the cache).
    """
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    expected = sha256.lower()
    name = filename or Path(urlparse(url).path).name
    if not name:
        raise ValueError(f"cannot derive a file name from url={url!r}; pass filename=")
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = directory / name
    if dest.is_file() and sha256_file(dest) == expected:
        return dest
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    while chunk := response.read(1 << 16):
                        h.update(chunk)
                        out.write(chunk)
            except OSError as err:  # URLError and socket errors derive from OSError
                raise OSError(f"download of {url} failed: {err}") from err
            out.flush()
            os.fsync(out.fileno())
        actual = h.hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}; "
                f"the download was discarded and {dest} was not written"
            )
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
