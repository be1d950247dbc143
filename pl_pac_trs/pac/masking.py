"""Deprecated alias: the ``GradientMask`` callback is in :mod:`pl_pac_trs.pac.gradient_mask`,
its masked-optimizer kernels in :mod:`pl_pac_trs.pac.masked_optimizer`.

Kept for one release; import from :mod:`pl_pac_trs.pac` instead.
"""

from pl_pac_trs.pac._moved import warn_moved
from pl_pac_trs.pac.gradient_mask import *  # noqa: F403
from pl_pac_trs.pac.gradient_mask import __all__  # noqa: F401
from pl_pac_trs.pac.masked_optimizer import STATE_TIDY_EVERY  # noqa: F401

warn_moved(
    __name__, "pl_pac_trs.pac.gradient_mask (the callback) + pl_pac_trs.pac.masked_optimizer"
)
