"""PAC-Net (prune, allocate, calibrate) transfer learning as Lightning callbacks.

Typical use (see ``docs/pac.md``)::

    # source fit: dense training, pruning at epoch 20, then allocate in the same fit
    Trainer(callbacks=[MagnitudePruning(amount=0.8, epoch=20), GradientMask("allocate")])
    # target fit: start from the allocated source weights; the skipped head is new
    Trainer(callbacks=[LoadSourceWeights(src_ckpt, skip=["head"]),
                       GradientMask("calibrate", lam=0.01)])
    # the source model, bit for bit, from the calibrated checkpoint alone
    source_model.load_state_dict(source_state_dict("calibrate.ckpt"))
    # the LoRA baseline (peft adapters; pip install 'pl-pac-trs[peft]')
    Trainer(callbacks=[LoadSourceWeights(dense_ckpt, skip=["head"]),
                       LoRA(rank=4, alpha=8, new_modules=["head"])])

What a PAC-Net model is (masks, new entries, the source values calibrate replaced) is declared
once, on the model (``model.pac_state``, :class:`PacState`), and carried by every checkpoint.
"""

from pl_pac_trs.pac.artifacts import WandbArtifacts
from pl_pac_trs.pac.baselines import L2SP, LinearProbe
from pl_pac_trs.pac.checkpoint import FinalCheckpoint
from pl_pac_trs.pac.checks import check_amount, check_strength
from pl_pac_trs.pac.gradient_mask import GradientMask
from pl_pac_trs.pac.lora import LoRA, adapters_disabled, load_adapted, restore_adapters
from pl_pac_trs.pac.mask_rules import (
    PRUNING_FNS,
    compute_masks,
    magnitude_global,
    magnitude_layer,
    matches_any,
    select_parameters,
)
from pl_pac_trs.pac.masked_optimizer import NonFiniteError
from pl_pac_trs.pac.pruning import MagnitudePruning, apply_masks
from pl_pac_trs.pac.state import (
    CHECKPOINT_KEY,
    PacState,
    load_masks,
    load_pac_state,
    mask_sparsity,
    pac_state,
    save_masks,
    validate_masks,
)
from pl_pac_trs.pac.transfer import (
    LoadSourceWeights,
    checkpoint_state_dict,
    load_source_weights,
    source_state_dict,
    source_view,
    state_swapped,
)

__all__ = [
    "CHECKPOINT_KEY",
    "L2SP",
    "PRUNING_FNS",
    "FinalCheckpoint",
    "GradientMask",
    "LinearProbe",
    "LoRA",
    "LoadSourceWeights",
    "MagnitudePruning",
    "NonFiniteError",
    "PacState",
    "WandbArtifacts",
    "adapters_disabled",
    "apply_masks",
    "check_amount",
    "check_strength",
    "checkpoint_state_dict",
    "compute_masks",
    "load_adapted",
    "load_masks",
    "load_pac_state",
    "load_source_weights",
    "magnitude_global",
    "magnitude_layer",
    "mask_sparsity",
    "matches_any",
    "pac_state",
    "restore_adapters",
    "save_masks",
    "select_parameters",
    "source_state_dict",
    "source_view",
    "state_swapped",
    "validate_masks",
]
