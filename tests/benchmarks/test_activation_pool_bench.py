"""Smoke test of ``benchmarks/activation_pool.py``: both arms train the same model (equal
losses), the fresh arm really bypasses the pool, the table counts what it says."""

from __future__ import annotations

import pytest
import torch

from benchmarks import activation_pool as bench
from pl_pac_trs.trs.fused import tanh_mlp, tanh_mlp_rk4
from pl_pac_trs.trs.fused.activation_pool import POOL


def test_arms_train_the_same_model_and_only_the_pool_arm_pools(monkeypatch):
    for module in (tanh_mlp, tanh_mlp_rk4):  # the fresh arm patches these; undo after the test
        monkeypatch.setattr(module, "rollout_activations", module.rollout_activations)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the child pins 1 thread
    before = POOL.allocated
    pool = bench.child("pool", epochs=4, warmup=1, trs_weight=10.0, trim=False)
    assert POOL.allocated > before
    before = POOL.allocated
    fresh = bench.child("fresh", epochs=4, warmup=1, trs_weight=10.0, trim=True)
    assert POOL.allocated == before
    assert pool["loss"] == fresh["loss"]  # the same arithmetic, bit for bit
    assert pool["s"] > 0 and fresh["faults"] >= 0


def test_table_counts_faulting_processes():
    results = {
        "pool": [{"s": 0.010, "faults": 0, "loss": 0.5}, {"s": 0.012, "faults": 3, "loss": 0.5}],
        "fresh": [
            {"s": 0.011, "faults": 0, "loss": 0.5},
            {"s": 0.020, "faults": 4700, "loss": 0.5},
            {"s": 0.019, "faults": 4600, "loss": 0.5},
        ],
    }
    rows = bench.table(results)
    assert rows[2] == "| pool | 11.00 | 12.00 | 0 of 2 | 2 | 0.50000 |"
    assert rows[3] == "| fresh | 19.00 | 20.00 | 2 of 3 | 4600 | 0.50000 |"


def test_bad_arguments():
    with pytest.raises(SystemExit, match="--epochs"):
        bench.main(["--epochs", "5", "--warmup", "5"])
    with pytest.raises(SystemExit, match="--processes"):
        bench.main(["--processes", "0"])
