"""Smoke test of ``benchmarks/rk4_speed.py``: settings from the shipped configs' datamodules, the
fused and loop arms agreeing, the payload well formed."""

from __future__ import annotations

import json

import torch

from benchmarks import rk4_speed


def test_settings_follow_the_shipped_configs():
    exp3 = rk4_speed.setting("exp3_trs_oden")
    assert (exp3["windows"], exp3["steps"], exp3["trs_weight"]) == (1000, 10, 0.5)
    assert exp3["field"]["time_augmented"] and exp3["field"]["hidden"] == [100, 100]
    exp6 = rk4_speed.setting("exp6_oden")
    assert exp6["steps"] == 10 and exp6["trs_weight"] == 0.0
    assert exp6["field"]["hidden"] == [200, 200] and exp6["batch"]["x0"].shape[1] == 3


def test_fused_and_loop_arms_agree_and_the_report_is_written(tmp_path, capsys):
    threads = torch.get_num_threads()
    spec = rk4_speed.setting("exp3_trs_oden")
    assert rk4_speed.check(spec) < 1e-5  # float32: the same sums in another order
    rk4_speed.main(
        ["--settings", "exp3_oden", "--repeats", "1", "--inner", "1", "--out", str(tmp_path)]
    )
    assert torch.get_num_threads() == threads  # the run's thread count is undone
    payload = json.loads((tmp_path / "rk4_speed.json").read_text())
    row = payload["rows"]["exp3_oden"]
    t = row["times"]
    assert row["fused/loop"] == t["fused"]["cpu"] / t["loop"]["cpu"]
    assert row["max_rel_diff"] < 1e-5 and (row["windows"], row["steps"]) == (1000, 10)
    assert "| exp3_oden | 1000 x 10 |" in capsys.readouterr().out
