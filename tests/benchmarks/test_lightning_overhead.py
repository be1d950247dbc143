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
    with pytest.raises(SystemExit, match="--loaders"):
        lightning_overhead.main(["--loaders", "full,other"])


def test_both_loaders_train_the_same_model_and_summarise(capsys):
    # the shuffling DataLoader permutes the rows of the one batch: the same loss up to rounding
    full = lightning_overhead.measure(hidden=8, epochs=6, trs_weight=10.0, warmup=2)
    shuffled = lightning_overhead.measure(8, 6, 10.0, warmup=2, loader="dataloader")
    assert shuffled["lightning_loss"] == pytest.approx(full["lightning_loss"], rel=1e-5)
    assert shuffled["lightning_loss"] == pytest.approx(shuffled["bare_loss"], rel=1e-5)
    argv = ["--hidden", "8", "--epochs", "4", "--warmup", "1", "--loaders", "full,dataloader"]
    lightning_overhead.main([*argv, "--rounds", "2"])
    out = capsys.readouterr().out
    assert out.count("full loader:") == 2 and out.count("dataloader loader:") == 2
    assert "full loader, median of 2 fit(s)" in out and "dataloader loader, median of 2" in out
