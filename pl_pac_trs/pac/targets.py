"""Deprecated alias of :mod:`pl_pac_trs.pac.selection` (renamed: it selects prunable parameters).

Kept for one release; import from :mod:`pl_pac_trs.pac.selection` or :mod:`pl_pac_trs.pac`.
"""

import warnings

from pl_pac_trs.pac.selection import (
    DEFAULT_MODULE_TYPES,
    matches_any,
    resolve_module_types,
    select_parameters,
)

warnings.warn(
    "pl_pac_trs.pac.targets is renamed pl_pac_trs.pac.selection; the old name goes in the next "
    "release",
    FutureWarning,
    stacklevel=2,
)

__all__ = ["DEFAULT_MODULE_TYPES", "matches_any", "resolve_module_types", "select_parameters"]
