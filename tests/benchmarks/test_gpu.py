"""``python -m benchmarks gpu``: the CPU smoke run of every check, and its failure reporting."""

import json
import math

import pytest
import torch

from benchmarks import gpu
from benchmarks.__main__ import main


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # main sets --threads


@pytest.mark.slow
@pytest.mark.needs_compiler  # the smoke times compiled arms
def test_cpu_smoke_reports_every_check_with_values(tmp_path, keep_threads):
    out, work = tmp_path / "out", tmp_path / "work"
    argv = ["gpu", "--device=cpu", "--budget=smoke", f"--out={out}", f"--work={work}"]
    assert main([*argv, "--no-progress"]) == 0
    payload = json.loads((out / "gpu.json").read_text())
    md = (out / "gpu.md").read_text()
    assert payload["failed"] == []
    assert payload["environment"]["device"] == "cpu"
    assert payload["environment"]["torch"] == torch.__version__
    assert payload["budget_sizes"]["exp6_overrides"] == list(gpu.EXP6_SMOKE)
    for n in range(1, 6):
        assert f"## {n}. " in md
    precisions = payload["trs_precisions"]
    assert precisions["status"] == "pass"
    assert {f["precision"] for f in precisions["fits"]} == {
        "32-true",
        "64-true",
        "bf16-mixed",
        "16-mixed",
    }
    assert all(a["equal"] for a in precisions["autocast_equal_to_plain"])

    trs = payload["trs_step"]
    assert trs["status"] == "ok"
    assert len(trs["arms"]) == 14
    timed = {k: a for k, a in trs["arms"].items() if a["status"] == "ok"}
    skipped = {k for k, a in trs["arms"].items() if a["status"] == "skipped"}
    # fused: compile(field) does not reach the fused rollout; smoke: the fused loss not compiled
    assert skipped == {
        f"{cond}, fused, {mode}"
        for cond in ("ODEN", "TRS-ODEN one call")
        for mode in ("compiled field", "compiled loss")
    }
    assert len(timed) == 10
    assert all(a["median_ms"] > 0 and a["first_call_s"] > 0 for a in timed.values())
    assert len(trs["ratios"]) == 11  # 13 on a GPU budget, with the fused loss compiled
    assert all(v > 0 for v in trs["ratios"].values())
    # same weights and batch: fused / autograd, eager / compiled, one call / two calls all start
    # from the same loss
    diffs = trs["initial_loss_rel_diff_vs_autograd_eager"]
    assert len(diffs) == len(timed)
    assert max(diffs.values()) < 1e-5

    ex = payload["exp6"]
    assert ex["status"] == "ok"
    assert "--trainer.accelerator=cpu" in ex["overrides"]
    for cond in ("oden", "trs_oden"):
        run = ex["runs"][cond]
        assert run["wall_s"] > 0
        assert math.isfinite(run["test_metrics"]["test/traj_mse"])
        assert run["test_metrics"]["test/traj_mse"] > 0
        assert run["train_loss"] > 0

    gm = payload["gradient_mask_overhead"]
    assert gm["status"] == "ok"
    combos = {(r["precision"], r["phase"]) for r in gm["rows"]}
    assert combos == {
        (p, ph) for p in ("32-true", "bf16-mixed") for ph in ("allocate", "calibrate")
    }
    for r in gm["rows"]:
        assert r["plain_ms"] > 0 and r["masked_ms"] > 0 and r["ratio"] > 0
        assert r["prunable_params"] > 0 and r["params"] > r["prunable_params"]

    inv = payload["pac_invariants"]
    assert inv["status"] == "pass"
    assert inv["per_precision"] == {
        "16-mixed scaler 2^20": "pass",
        "bf16-mixed": "pass",
        "16-mixed": "skipped",
    }
    assert "CUDA" in inv["skipped"]["16-mixed"]
    assert len(inv["fits"]) == 4
    for fit in inv["fits"]:
        assert fit["status"] == "pass" and fit["violations"] == []
        assert fit["optimizer_steps"] > 0
        if fit["precision"].startswith("16-mixed"):
            # the scaler starts high enough to skip steps, and still leaves steps that train
            assert 0 < fit["scaler_skipped_steps"] < fit["optimizer_steps"]


def test_a_check_that_raises_is_reported_and_fails_the_command(tmp_path, keep_threads, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("no luck")

    for name in ("trs_steps", "exp6", "gradient_mask_overhead", "pac_invariants"):
        monkeypatch.setattr(gpu, name, boom)
    out = tmp_path / "out"
    argv = ["gpu", "--device=cpu", "--budget=smoke", f"--out={out}", f"--work={tmp_path}"]
    assert main([*argv, "--no-progress"]) == 1
    payload = json.loads((out / "gpu.json").read_text())
    assert payload["failed"] == ["trs_step", "exp6", "gradient_mask_overhead", "pac_invariants"]
    for name in payload["failed"]:
        assert payload[name]["status"] == "error"
        assert payload[name]["error"] == "RuntimeError: no luck"
    md = (out / "gpu.md").read_text()
    assert md.count("**error**") == 4 and "RuntimeError: no luck" in md


def test_gpu_suite_refuses_the_ci_budget_and_unknown_devices(tmp_path, keep_threads):
    with pytest.raises(SystemExit, match="full and smoke"):
        main(["gpu", "--budget=ci", f"--out={tmp_path}"])
    with pytest.raises(ValueError, match="cuda"):
        gpu.run("meta", tmp_path, tmp_path, "smoke")
    with pytest.raises(ValueError, match="budget"):
        gpu.run("cpu", tmp_path, tmp_path, "ci")
