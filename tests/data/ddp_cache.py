"""2-process DDP run of a trajectory datamodule with a cache dir (launched by test_ddp_cache.py).

Usage: python ddp_cache.py OUT_DIR. Each rank writes OUT_DIR/rank_<r>.pt with the number of cache
writes it made, a digest of its datasets, and the training windows it was served.
"""

import hashlib
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

import pl_pac_trs.data.generated as generated
from pl_pac_trs.data import DuffingDataModule
from pl_pac_trs.data.windows import BatchDictDataset

OUT = Path(sys.argv[1])
WRITES = []
_save = generated.save_arrays_atomic


def counting_save(path, arrays):
    WRITES.append(str(path))
    return _save(path, arrays)


generated.save_arrays_atomic = counting_save


class Probe(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch["x0"].clone())
        return (self.w * batch["y"].sum()) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def digest(dataset):
    h = hashlib.sha256()
    for key in sorted(dataset.data):
        h.update(dataset.data[key].numpy().tobytes())
    return h.hexdigest()


if __name__ == "__main__":
    dm = DuffingDataModule(num_train=4, num_val=0, num_test=2, cache_dir=str(OUT / "cache"))
    model = Probe()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    torch.save(
        {
            "writes": WRITES,
            "train": digest(dm.train_dataset),
            "test": digest(BatchDictDataset(next(iter(dm.test_dataloader())))),
            "seen": torch.cat(model.seen),
            "all": dm.train_dataset.data["x0"],
        },
        OUT / f"rank_{trainer.global_rank}.pt",
    )
    # stop gloo before exit: a process group left to interpreter teardown can abort the rank
    # ("terminate called without an active exception", seen once in CI after a passing run)
    torch.distributed.destroy_process_group()
