"""Run by tests/pac/test_ddp.py as ``python ddp_pac.py OUT_DIR``: source (prune + allocate) and
calibrate fits under 2-process DDP on CPU; every rank saves its final weights and masks."""

import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
from pac_tiny import TinyData, TinyNet, trainer

from pl_pac_trs.pac import GradientMask, LoadSourceWeights, MagnitudePruning


def main(out: Path) -> None:
    common = dict(strategy="ddp", devices=2, accelerator="cpu", max_epochs=3)
    torch.manual_seed(0)
    source = TinyNet(hidden=(8,), out_features=2, batch_norm=True, optimizer="adamw")
    prune = MagnitudePruning(amount=0.7, epoch=1)
    t = trainer(out, callbacks=[prune, GradientMask("allocate", verbose=False)], **common)
    t.fit(source, TinyData(out_features=2))
    t.save_checkpoint(out / "source.ckpt")
    rank = t.global_rank
    torch.save({"state": source.state_dict(), "masks": prune.masks}, out / f"source_{rank}.pt")

    torch.manual_seed(rank)  # a different head init per rank: DDP must broadcast rank 0's
    target = TinyNet(hidden=(8,), out_features=1, batch_norm=True, optimizer="adamw")
    callbacks = [
        LoadSourceWeights(str(out / "source.ckpt"), skip=["head"]),
        GradientMask("calibrate", verbose=False),  # the skipped head is new
    ]
    t2 = trainer(out, callbacks=callbacks, **common)
    with warnings.catch_warnings(record=True) as caught:  # pac/penalty is logged per epoch
        warnings.simplefilter("always")
        t2.fit(target, TinyData(out_features=1, seed=1))
    sync = [str(w.message) for w in caught if "sync_dist" in str(w.message)]
    logged = float(t2.callback_metrics["pac/penalty"])
    torch.save(
        {"state": target.state_dict(), "sync_warnings": sync, "penalty": logged},
        out / f"target_{t2.global_rank}.pt",
    )
    # stop gloo before exit: a process group left to interpreter teardown can abort the rank
    # ("terminate called without an active exception", seen once in CI after a passing run)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("PL_DISABLE_FORK", "1")
    main(Path(sys.argv[1]))
