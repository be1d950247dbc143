"""Deprecated alias of :mod:`pl_pac_trs.pac.selection` (renamed: it selects prunable parameters).

Kept for one release; import from :mod:`pl_pac_trs.pac.selection` or :mod:`pl_pac_trs.pac`.
"""

from pl_pac_trs.pac._moved import warn_moved
from pl_pac_trs.pac.selection import *  # noqa: F403
from pl_pac_trs.pac.selection import __all__  # noqa: F401

warn_moved(__name__, "pl_pac_trs.pac.selection")
