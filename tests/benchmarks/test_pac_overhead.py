"""``benchmarks/pac_overhead.py``: its source training, masks, A/B arms and tables, on tiny
budgets (values and structure; no timing is asserted)."""

from functools import partial

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from benchmarks import pac_overhead, speed
from pl_pac_trs.models import MLPRegressor


@pytest.fixture
def friedman_batches():
    return pac_overhead._source_batches("friedman", 64)[:4]


def test_source_trained_lowers_the_loss_and_is_cached(friedman_batches, monkeypatch):
    monkeypatch.setattr(pac_overhead, "_TRAINED", {})
    mse = nn.functional.mse_loss
    make = partial(MLPRegressor, hidden=(16, 16))
    torch.manual_seed(0)
    fresh = make()
    trained = pac_overhead.source_trained("tiny", make, friedman_batches, mse, 20)

    def loss(model):
        with torch.no_grad():
            return sum(float(mse(model(x), y)) for x, y in friedman_batches)

    assert loss(trained) < 0.5 * loss(fresh)
    again = pac_overhead.source_trained("tiny", make, friedman_batches, mse, 20)
    assert again is not trained
    assert all(
        torch.equal(a, b) for a, b in zip(trained.parameters(), again.parameters(), strict=True)
    )


def test_source_batches_are_full_batches_of_the_shipped_tasks():
    digits = pac_overhead._source_batches("digits", 64)
    assert digits and all(x.shape == (64, 1, 8, 8) for x, _ in digits)
    assert set(torch.cat([y for _, y in digits]).tolist()) == set(range(6))
    friedman = pac_overhead._source_batches("friedman", 256)
    assert len(friedman) == 2000 // 256  # the last, partial batch is dropped
    assert all(x.shape == (256, 10) and y.shape == (256, 1) for x, y in friedman)


@pytest.mark.parametrize("check_every", [None, 3])
@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_bench_reports_mask_memory_and_timings(friedman_batches, phase, check_every):
    make = partial(MLPRegressor, hidden=(16, 16))
    r = pac_overhead.bench(
        "tiny", make, friedman_batches, nn.functional.mse_loss, torch.device("cpu"), phase, 4,
        optimizer="adam", scope="global", warmup=1, check_every=check_every,
    )  # fmt: skip
    n = 10 * 16 + 16 * 16 + 16
    assert r["prunable_params"] == n
    assert r["mask_bytes_per_param"] == 1.0
    kept = n - round(0.8 * n)  # global ranking prunes exactly round(amount * total)
    assert r["stored_bytes_per_param"] == (4 * kept / n if phase == "calibrate" else 0.0)
    assert (r["model"], r["device"], r["phase"], r["optimizer"]) == ("tiny", "cpu", phase, "adam")


def test_cases_train_lazily_with_global_masks(monkeypatch):
    calls = []
    monkeypatch.setattr(pac_overhead, "source_trained", lambda *a: calls.append(a) or a)
    trained = pac_overhead.cases("trained", source_epochs=3)
    assert not calls  # nothing trains until a model is made
    names = [c[0] for c in trained]
    assert set(pac_overhead.LIGHTNING_CASES) <= set(names)
    assert {c[5] for c in trained if c[4].type == "cpu"} == {"global"}
    trained[0][1]()
    assert calls[0][0] == names[0] and calls[0][4] == 3
    fresh = pac_overhead.cases("fresh")
    assert {c[5] for c in fresh if c[4].type == "cpu"} == {"layer"}


@pytest.mark.parametrize("phase", ["allocate", "calibrate"])
def test_paired_lightning_arms_train_one_masked_copy(friedman_batches, phase, monkeypatch):
    """The paired A/B: both arms step on every batch of one fit, and only the masked arm is
    under the callback (its pruned / essential weights obey the phase, the plain arm's move)."""
    pairs = []
    real = pac_overhead._PairedArms
    spent = []
    timed = pac_overhead._TimedGradientMask

    def timed_and_kept(*args, **kwargs):
        cb = timed(*args, **kwargs)
        cb.spent = spent
        return cb

    monkeypatch.setattr(pac_overhead, "_TimedGradientMask", timed_and_kept)
    monkeypatch.setattr(pac_overhead, "_PairedArms", lambda *a: pairs.append(real(*a)) or pairs[-1])
    make = partial(MLPRegressor, hidden=(16, 16))
    r = pac_overhead.bench_lightning_paired(
        "tiny", make, friedman_batches, nn.functional.mse_loss, phase, "global", rounds=1, steps=6
    )
    (pair,) = pairs
    assert len(pair.times["plain"]) == len(pair.times["masked"]) == 6
    assert len(spent) == 6  # the callback's time: one entry per step of the masked arm only
    assert (r["model"], r["phase"]) == ("tiny", phase)
    torch.manual_seed(0)
    start = make()  # the arms' common starting weights (_PairedArms seeds 0 before making them)
    masks = pac_overhead._masks(start, "global")
    plain, masked = dict(pair.plain.named_parameters()), dict(pair.masked.named_parameters())
    for name, mask in masks.items():
        w0 = dict(start.named_parameters())[name].detach()
        assert not torch.equal(plain[name].detach(), w0), name  # plain training moved it
        w = masked[name].detach()
        if phase == "allocate":
            assert torch.equal(w[~mask], torch.zeros_like(w[~mask])), name
            assert not torch.equal(w[mask], w0[mask]), name
        else:
            assert torch.equal(w[mask], w0[mask]), name
    if phase == "calibrate":  # shared (unmasked) parameters of the masked arm stay frozen
        assert torch.equal(pair.masked.head.bias, dict(start.named_parameters())["head.bias"])


def test_timed_callback_times_every_optimizer_step(friedman_batches):
    make = partial(MLPRegressor, hidden=(16, 16))
    torch.manual_seed(0)
    model = make()
    masks = pac_overhead._masks(model, "global")
    cb = pac_overhead._TimedGradientMask("allocate", masks=masks, verbose=False)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    Trainer(max_steps=5, callbacks=[cb], **pac_overhead._QUIET_CPU).fit(
        model, pac_overhead._loader(friedman_batches)
    )
    assert len(cb.spent) == 5  # one entry per optimizer step: its hooks and its post-step hook
    for name, mask in masks.items():  # and the timing hooks leave the masking exact
        w = dict(model.named_parameters())[name].detach()
        assert torch.equal(w[~mask], torch.zeros_like(w[~mask])), name
        assert not torch.equal(w[mask], start[name][mask]), name


def test_main_returns_the_rows_it_prints(friedman_batches, monkeypatch, capsys):
    """The printed tables and the returned rows agree (``speed.parse_pac_overhead`` reads the
    printed ones), over the whole grid: 3 optimizers x 2 phases bare, 2 x 2 in each fit setting."""
    name = pac_overhead.LIGHTNING_CASES[1]
    make = partial(MLPRegressor, hidden=(16, 16))
    case = (name, make, friedman_batches, nn.functional.mse_loss, torch.device("cpu"), "global")
    monkeypatch.setattr(pac_overhead, "cases", lambda masks, epochs: [case])
    argv = ["--steps=2", "--lightning-rounds=1", "--lightning-steps=3", "--paired-rounds=1"]
    rows = pac_overhead.main([*argv, "--paired-steps=3", "--threads=1"])
    grid = {(r["setting"], r["optimizer"], r["phase"]) for r in rows}
    bare = {(pac_overhead.BARE, o, p) for o in pac_overhead.OPTIMIZERS for p in PHASES}
    fits = {(s, o, p) for s in FIT_SETTINGS for o in ("adam", "adam_fused") for p in PHASES}
    assert len(rows) == len(grid) == 14 and grid == bare | fits
    printed = speed.parse_pac_overhead(capsys.readouterr().out)
    assert len(printed) == len(rows)
    for got, row in zip(printed, rows, strict=True):
        assert {k: got[k] for k in KEYS} == {k: row[k] for k in KEYS}
        for key, digits in (("plain_ms", 3), ("masked_ms", 3), ("overhead_pct", 2)):
            assert got[key] == pytest.approx(round(row[key], digits), abs=10**-digits)


PHASES = ("allocate", "calibrate")
FIT_SETTINGS = (pac_overhead.PAIRED, pac_overhead.SEPARATE)
KEYS = ("setting", "model", "device", "phase", "optimizer")
