"""Smoke test of ``benchmarks/lightning_overhead.py``: both arms train the same field on the
same batch (equal losses after the same epochs), the ratios are the medians' quotients."""

from __future__ import annotations

import itertools

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


def test_shortcuts_module_trains_the_same_model(capsys):
    default = lightning_overhead.measure(hidden=8, epochs=6, trs_weight=0.0, warmup=2)
    short = lightning_overhead.measure(8, 6, 0.0, warmup=2, variant="shortcuts")
    # the shortcuts skip bookkeeping only: the same float operations on the same batch
    assert short["lightning_loss"] == default["lightning_loss"]
    assert short["lightning_loss"] == pytest.approx(short["bare_loss"], rel=1e-5)
    with pytest.raises(ValueError, match="variant"):
        lightning_overhead.measure(8, 6, 0.0, warmup=2, variant="other")
    argv = ["--hidden", "8", "--epochs", "4", "--warmup", "1", "--variants", "default,shortcuts"]
    lightning_overhead.main(argv)
    out = capsys.readouterr().out
    assert out.count("full loader:") == 1 and out.count("full loader, shortcuts module:") == 1
    assert "full loader, shortcuts module, median of 1 fit(s)" in out
    with pytest.raises(SystemExit, match="--variants"):
        lightning_overhead.main(["--variants", "default,other"])


def test_manual_optimisation_module_trains_the_same_model():
    default = lightning_overhead.measure(hidden=8, epochs=6, trs_weight=10.0, warmup=2)
    manual = lightning_overhead.measure(8, 6, 10.0, warmup=2, variant="manual")
    # zero_grad, backward and Adam by hand: the same float operations in the same order
    assert manual["lightning_loss"] == default["lightning_loss"]
    assert manual["lightning_loss"] == pytest.approx(manual["bare_loss"], rel=1e-5)


def test_shortcuts_keep_lightnings_view_of_the_module():
    from pl_pac_trs.trs import ODENField

    model = lightning_overhead._Shortcuts(ODENField(2, (4,)), integrator="leapfrog")
    model._current_fx_name = "training_step"
    assert model.__dict__["_current_fx_name"] == "training_step"
    model.extra = torch.nn.Linear(1, 1)  # other attributes still go through nn.Module
    assert "extra" in model._modules
    batch = {"x0": torch.zeros(2, 2)}
    assert model.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch


def test_segments_chain_from_epoch_start_to_epoch_end(capsys):
    seg = lightning_overhead.segments(hidden=8, epochs=6, trs_weight=10.0, warmup=2)
    chain = [name.split(" -> ") for name in seg if not name.startswith("bare:")]
    assert chain[0][0] == "epoch start" and chain[-1][1] == "epoch end"
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chain))
    for hook in [*lightning_overhead.SEGMENT_HOOKS, "training_step", "loss", "loss returned"]:
        assert any(hook in pair for pair in chain), hook
    assert list(seg)[-2:] == ["bare: zero_grad .. backward", "bare: step"]
    assert all(s > 0 for s in seg.values())
    lightning_overhead.main(["--hidden", "8", "--epochs", "4", "--warmup", "1", "--segments"])
    assert "loss -> loss returned" in capsys.readouterr().out
