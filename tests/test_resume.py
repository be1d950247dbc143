"""``--ckpt_path=last`` continues a killed run of a shipped config to the very weights of the run
that was never interrupted (last and periodic checkpoints, epoch-seeded shuffling)."""

from __future__ import annotations

import signal

import pytest
import torch
from cli_run import run_cli

from pl_pac_trs.serialization import load_torch_file

pytestmark = pytest.mark.slow

#: A PAC stage, with mini-batches (the shuffling must repeat) and pruning at epoch 3 (the masks
#: must come back from the checkpoint), on a short budget: checkpoints every 2 epochs.
PAC_SHORT = """
checkpoint: {every_n_epochs: 2, save_on_train_epoch_end: true, save_last: true}
trainer:
  max_epochs: 10
  callbacks:
    - class_path: pl_pac_trs.pac.MagnitudePruning
      init_args: {amount: 0.8, epoch: 3, dense_checkpoint: runs/pac/friedman/source_dense.ckpt}
    - class_path: pl_pac_trs.pac.GradientMask
      init_args: {phase: allocate}
"""

#: name -> (extra arguments, override YAML, the epoch to kill the run at)
CASES = {
    # a TRS config as shipped: full batch, checkpoints every 25 epochs
    "trs/exp1/quick/oden": (["--trainer.max_epochs=50"], None, 30),
    "pac/friedman/source": ([], PAC_SHORT, 7),
}


def _last(cwd, name):
    """The last checkpoint of the one run of ``name`` in ``cwd`` (its first run directory)."""
    return cwd / "runs" / name / "version_0" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("name", CASES)
def test_killed_fit_resumes_to_the_uninterrupted_weights(tmp_path, name):
    overrides, override_yaml, kill_at = CASES[name]
    if override_yaml:
        (tmp_path / "short.yaml").write_text(override_yaml)
        overrides = [*overrides, "--config", str(tmp_path / "short.yaml")]
    args = [
        "fit",
        "--config",
        name,
        *overrides,
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=false",
    ]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for cwd in (whole, killed):
        cwd.mkdir()
    out = run_cli(args, cwd=whole)
    assert out.returncode == 0, out.stderr[-2000:]

    kill = [
        "--trainer.callbacks+=tiny_user_module.KillAtEpoch",
        f"--trainer.callbacks.epoch={kill_at}",
    ]
    out = run_cli([*args, *kill], cwd=killed)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    stopped = load_torch_file(_last(killed, name), what="last.ckpt")
    assert 0 < stopped["epoch"] < kill_at  # it died after a periodic checkpoint, before the end

    out = run_cli([*args, "--ckpt_path=last"], cwd=killed)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Restored all states from the checkpoint" in out.stdout + out.stderr

    a = load_torch_file(_last(whole, name), what="last.ckpt")
    b = load_torch_file(_last(killed, name), what="last.ckpt")
    assert a["epoch"] == b["epoch"] and a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    moments = zip(
        a["optimizer_states"][0]["state"].values(),
        b["optimizer_states"][0]["state"].values(),
        strict=True,
    )
    for sa, sb in moments:
        for key, value in sa.items():
            assert torch.equal(value, sb[key]), key
