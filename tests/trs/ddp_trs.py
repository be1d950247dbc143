"""Fit + test TRSODEN with 2-process CPU DDP on small Duffing data (run by test_ddp.py).

Usage: ``python tests/trs/ddp_trs.py OUT_DIR``. Rank 0 writes ``OUT_DIR/result.json`` (the test
metrics logged under DDP) and ``OUT_DIR/weights.pt`` (the trained field).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from pl_pac_trs.data import DuffingDataModule
from pl_pac_trs.trs import TRSODEN, ODENField

DATA = {
    "num_train": 4,
    "train_steps": 20,
    "train_span": 2.0,
    "num_val": 2,
    "num_test": 9,  # odd: the distributed sampler pads rank 1 with a repeat of trajectory 0
    "test_steps": 40,
    "test_span": 4.0,
}


def main(out_dir: str) -> None:
    out = Path(out_dir)
    pl.seed_everything(0)
    model = TRSODEN(ODENField(2, hidden=(16,)), integrator="leapfrog", lam=1.0, lr=1e-2, num_plot=2)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
    )
    dm = DuffingDataModule(**DATA)
    trainer.fit(model, datamodule=dm)
    results = trainer.test(model, datamodule=dm, verbose=False)[0]
    if trainer.is_global_zero:
        torch.save(model.vector_field.state_dict(), out / "weights.pt")
        (out / "result.json").write_text(json.dumps({k: float(v) for k, v in results.items()}))


if __name__ == "__main__":
    main(sys.argv[1])
