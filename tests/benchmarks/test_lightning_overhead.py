"""Smoke test of ``benchmarks/lightning_overhead.py``: both arms train the same field on the
same batch (equal losses after the same epochs), the ratios are the medians' quotients."""

from __future__ import annotations

import pytest
import torch

from benchmarks import lightning_overhead


def test_paired_arms_train_the_same_model(capsys):
    threads = torch.get_num_threads()
    r = lightning_overhead.measure(hidden=8, epochs=6, trs_weight=10.0, warmup=2)
    assert r["lightning_loss"] == pytest.approx(r["bare_loss"], rel=1e-5)
    assert r["ratio"] == r["lightning_s"] / r["bare_s"] and r["paired_ratio"] > 0
    lightning_overhead.main(["--hidden", "8", "--epochs", "4", "--warmup", "1"])
    assert "Lightning / bare" in capsys.readouterr().out
    assert torch.get_num_threads() == threads
    with pytest.raises(SystemExit, match="--epochs"):
        lightning_overhead.main(["--epochs", "5", "--warmup", "5"])
