"""``python -m benchmarks trs_study --budget smoke``: records as jobs finish, resume, tables."""

from __future__ import annotations

import json

from benchmarks import trs_study
from benchmarks.__main__ import main
from benchmarks.trs_study import BUDGETS, choose, conditions, jobs


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_smoke_study_writes_records_and_tables_and_resumes(tmp_path, restore_threads, capsys):
    out, work = tmp_path / "out", tmp_path / "work"
    argv = ["trs_study", "--budget=smoke", "--seeds=1", "--no-progress"]
    argv += [f"--out={out}", f"--work={work}"]
    assert main([*argv, "--systems=lotka_volterra,damped_pendulum"]) == 0
    log = out / "trs_study_runs.jsonl"
    records = _records(log)
    assert len(records) == 2 * len(BUDGETS["smoke"].settings())
    lv = next(r for r in records if r["system"] == "lotka_volterra")
    assert set(lv["fits"]) == {"oden_0", "oden_1", "oden_10", "hoden_0"}
    damped = next(r for r in records if r["system"] == "damped_pendulum")
    assert {"oden_tw_1", "oden_tw_10"} <= set(damped["fits"]) and "hoden_0" not in damped["fits"]
    for rec in records:
        for epoch in map(str, BUDGETS["smoke"].epochs):
            tested = rec["results"][epoch]
            # the chosen model is the ODEN-field fit of lowest validation loss, and was tested
            best = min(
                (f for f in rec["fits"].values() if f["field"] == "oden"),
                key=lambda f: f["val"][epoch],
            )
            assert tested["chosen"]["label"] == best["label"]
            assert tested["chosen"]["test"] == tested[_role(best)]["test"]
            assert tested["ODEN"]["trs_weight"] == 0
    md = (out / "trs_study.md").read_text()
    assert "lotka_volterra" in md and "swap" in md and "2/2 jobs done" in md
    payload = json.loads((out / "trs_study.json").read_text())
    assert payload["jobs_done"] == payload["jobs_total"] == 2

    # resume: a second call with one more system runs only that system's jobs
    capsys.readouterr()
    assert main([*argv, "--systems=lotka_volterra,damped_pendulum,pendulum"]) == 0
    again = _records(log)
    assert again[:2] == records and [r["system"] for r in again[2:]] == ["pendulum"]
    # report only: nothing runs, the tables say how much is done
    more = "--systems=lotka_volterra,damped_pendulum,pendulum,forced_pendulum"
    assert main([*argv, more, "--report-only"]) == 0
    assert _records(log) == again
    assert "3/4 jobs done" in (out / "trs_study.md").read_text()


def _role(fit):
    if fit["trs_weight"] == 0:
        return "ODEN"
    return "TRS-ODEN tw" if fit["time_weighted"] else "TRS-ODEN"


def test_bad_system_exits_2_before_running(tmp_path, capsys):
    code = main(["trs_study", "--budget=smoke", "--systems=spring", f"--out={tmp_path / 'o'}"])
    assert code == 2
    assert "unknown system 'spring'" in capsys.readouterr().err
    assert not (tmp_path / "o" / "trs_study_runs.jsonl").exists()


def test_grid_and_conditions():
    full = BUDGETS["full"]
    settings = full.settings()
    assert settings[0] == full.base and len(settings) == len(set(settings)) == 5
    assert len(jobs("full", ["pendulum", "lotka_volterra"], 3)) == 2 * 5 * 3
    assert [c["label"] for c in conditions("forced_pendulum")] == ["oden_0", "oden_1", "oden_10"]
    fits = {
        "oden_0": {"field": "oden", "trs_weight": 0.0, "time_weighted": False, "val": {"5": 2.0}},
        "oden_1": {"field": "oden", "trs_weight": 1.0, "time_weighted": False, "val": {"5": 3.0}},
        "oden_10": {
            "field": "oden",
            "trs_weight": 10.0,
            "time_weighted": False,
            "val": {"5": float("nan")},  # a diverged fit is never chosen
        },
        "hoden_0": {"field": "hoden", "trs_weight": 0.0, "time_weighted": False, "val": {"5": 1.0}},
    }
    assert choose(fits, "5") == {
        "ODEN": "oden_0",
        "TRS-ODEN": "oden_1",
        "TRS-ODEN tw": None,
        "HODEN": "hoden_0",
        "chosen": "oden_0",
    }
    assert trs_study.LAMBDAS[0] == 0
