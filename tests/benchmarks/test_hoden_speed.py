"""Smoke test of ``benchmarks/hoden_speed.py``: settings from the shipped configs, every arm
checked against autograd, the payload and the table well formed."""

from __future__ import annotations

import json

import torch

from benchmarks import hoden_speed


def test_settings_follow_the_shipped_configs():
    exp2 = hoden_speed.setting("exp2_trs_hoden")
    assert (exp2["windows"], exp2["steps"], exp2["lam"]) == (150, 10, 10.0)
    assert exp2["integrator"] == "leapfrog" and not exp2["field"]["time_augmented"]
    assert exp2["field"]["hidden"] == (100, 100)
    exp3 = hoden_speed.setting("exp3_hoden")
    assert (exp3["windows"], exp3["steps"], exp3["lam"]) == (1000, 10, 0.0)
    assert exp3["integrator"] == "rk4" and exp3["field"]["time_augmented"]
    t = exp3["batch"]["t"]
    assert t.shape == (1000, 11) and torch.allclose(t[:5, 0], torch.tensor([0, 1, 2, 3, 4.0]))
    assert hoden_speed.setting("exp3_trs_hoden")["lam"] == 0.5


def test_runs_and_reports_ratios_and_checks(tmp_path, capsys):
    threads = torch.get_num_threads()
    out = tmp_path / "hoden.json"
    payload = hoden_speed.main(
        ["--repeats", "1", "--scale", "0.02", "--plain-ops", "--fast-tanh", f"--out={out}"]
    )
    assert torch.get_num_threads() == threads  # the run's thread count is undone
    assert json.loads(out.read_text()) == json.loads(json.dumps(payload))
    assert payload["arms"] == ["autograd", "closed_form", "plain_ops", "fast_tanh"]
    assert payload["machine"]["threads"] == 1
    assert set(payload["settings"]) == set(hoden_speed.SETTINGS)
    for res in payload["settings"].values():
        t = res["median_seconds"]
        ratio = res["ratio_to_autograd"]["closed_form"]["cpu"]
        assert ratio == t["closed_form"]["cpu"] / t["autograd"]["cpu"]
        diffs = res["max_rel_diff_to_autograd"]
        assert diffs["closed_form"] < 1e-5 and diffs["plain_ops"] < 1e-5
        assert diffs["fast_tanh"] < 1e-4
    text = capsys.readouterr().out
    assert text.count("\n| exp") == 3 and "closed_form / autograd (cpu / wall)" in text
