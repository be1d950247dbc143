"""PAC-Net under 2-process DDP on CPU (gloo), launched as a subprocess."""

from pathlib import Path

import pytest
import torch
from ddp_script import run_ddp_script

SCRIPT = Path(__file__).with_name("ddp_pac.py")


@pytest.mark.ddp
@pytest.mark.slow
def test_ddp_allocate_and_calibrate_exact(tmp_path):
    run_ddp_script(SCRIPT, tmp_path)
    src = [torch.load(tmp_path / f"source_{r}.pt") for r in (0, 1)]
    tgt = [torch.load(tmp_path / f"target_{r}.pt") for r in (0, 1)]
    masks = src[0]["masks"]
    # both ranks hold the same masks and parameters (BN running statistics are per rank in DDP)
    assert all(torch.equal(masks[k], src[1]["masks"][k]) for k in masks)
    for key in src[0]["state"]:
        if "running_" in key or "num_batches" in key:
            continue
        assert torch.equal(src[0]["state"][key], src[1]["state"][key]), key
        assert torch.equal(tgt[0]["state"][key], tgt[1]["state"][key]), key
    for name, mask in masks.items():
        w = src[0]["state"][name]
        assert torch.equal(w[~mask], torch.zeros_like(w[~mask])), name  # allocate: pruned stay 0
        if name.startswith("head."):
            continue
        v = tgt[0]["state"][name]
        assert torch.equal(v[mask], w[mask]), name  # calibrate: essential bit-identical
        assert (v[~mask] != 0).any(), name  # and the redundant ones were trained
    # pac/penalty: logged with sync_dist (no Lightning warning), the same value on both ranks
    assert tgt[0]["sync_warnings"] == [] and tgt[1]["sync_warnings"] == []
    assert tgt[0]["penalty"] == tgt[1]["penalty"] > 0
    for key, value in src[0]["state"].items():  # frozen shared params and BN statistics
        if key not in masks and not key.startswith("head."):
            assert torch.equal(tgt[0]["state"][key], value), key
