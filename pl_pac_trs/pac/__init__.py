"""PAC-Net (prune, allocate, calibrate) transfer learning as Lightning callbacks.

Typical use (see ``docs/pac.md``)::

    # source fit: dense training, pruning at epoch 20, then allocate in the same fit
    Trainer(callbacks=[MagnitudePruning(amount=0.8, epoch=20), GradientMask("allocate")])
    # target fit: start from the allocated source weights, train the redundant weights only
    Trainer(callbacks=[LoadSourceWeights(src_ckpt, skip=["head"]),
                       GradientMask("calibrate", lam=0.01, new_modules=["head"])])
    # the LoRA baseline (peft adapters; pip install 'pl-pac-trs[peft]')
    Trainer(callbacks=[LoadSourceWeights(dense_ckpt, skip=["head"]),
                       LoRA(rank=4, alpha=8, new_modules=["head"])])

The callbacks never look each other up: what one needs from another (pruning's masks, the
source checkpoint, the final checkpoint's path) goes through the fit's hand-off record
(:mod:`pl_pac_trs.pac.handoff`).
"""

from pl_pac_trs.pac.artifacts import WandbArtifacts
from pl_pac_trs.pac.baselines import L2SP, LinearProbe
from pl_pac_trs.pac.checkpoint import FinalCheckpoint
from pl_pac_trs.pac.checks import check_amount, check_strength
from pl_pac_trs.pac.gradient_mask import GradientMask
from pl_pac_trs.pac.lora import LoRA, adapters_disabled, load_adapted
from pl_pac_trs.pac.masks import (
    CHECKPOINT_KEY,
    load_masks,
    mask_sparsity,
    save_masks,
    validate_masks,
)
from pl_pac_trs.pac.nonfinite import NonFiniteError
from pl_pac_trs.pac.pruning import MagnitudePruning, apply_masks, compute_masks
from pl_pac_trs.pac.selection import matches_any, select_parameters
from pl_pac_trs.pac.transfer import (
    LoadSourceWeights,
    load_source_weights,
    source_state_dict,
    source_view,
)

__all__ = [
    "CHECKPOINT_KEY",
    "L2SP",
    "FinalCheckpoint",
    "GradientMask",
    "LinearProbe",
    "LoRA",
    "LoadSourceWeights",
    "MagnitudePruning",
    "NonFiniteError",
    "WandbArtifacts",
    "adapters_disabled",
    "apply_masks",
    "check_amount",
    "check_strength",
    "compute_masks",
    "load_adapted",
    "load_masks",
    "load_source_weights",
    "mask_sparsity",
    "matches_any",
    "save_masks",
    "select_parameters",
    "source_state_dict",
    "source_view",
    "validate_masks",
]
