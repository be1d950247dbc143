"""The warning of a module that moved (its old name stays importable for one release)."""

import warnings


def warn_moved(old: str, new: str) -> None:
    """Warns (``FutureWarning``, at the importer) that module ``old`` is now ``new``."""
    warnings.warn(
        f"{old} is now {new}; the old name goes in the next release", FutureWarning, stacklevel=3
    )
