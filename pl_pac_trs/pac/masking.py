"""Deprecated alias: the ``GradientMask`` callback is in :mod:`pl_pac_trs.pac.gradient_mask`,
its masked-optimizer kernels in :mod:`pl_pac_trs.pac.masked_optimizer`.

Kept for one release; import from :mod:`pl_pac_trs.pac` instead.
"""

import warnings

from pl_pac_trs.pac.gradient_mask import GradientMask, NonFiniteError, Phase
from pl_pac_trs.pac.masked_optimizer import STATE_TIDY_EVERY

warnings.warn(
    "pl_pac_trs.pac.masking is split into pl_pac_trs.pac.gradient_mask (the callback) and "
    "pl_pac_trs.pac.masked_optimizer (its kernels); the old name goes in the next release",
    FutureWarning,
    stacklevel=2,
)

__all__ = ["STATE_TIDY_EVERY", "GradientMask", "NonFiniteError", "Phase"]
