"""Smoke test of ``benchmarks/thread_phases.py``: windows are timed and counted as printed."""

from __future__ import annotations

import pytest

from benchmarks import thread_phases


def test_summary_counts_windows_above_the_threshold():
    s = thread_phases.summarise([0.030, 0.031, 0.010, 0.030, 0.014], slow=1.5)
    # a slow phase longer than half the run: counted against the fastest window, not the median
    assert s == {"fastest_s": 0.010, "median_s": 0.030, "slow_windows": 3}


@pytest.mark.parametrize("workload", thread_phases.WORKLOADS)
def test_child_times_each_window(workload):
    medians = thread_phases.child(workload, threads=1, seconds=0.4, window=0.2)
    assert 2 <= len(medians) <= 3 and all(0 < m < 0.4 for m in medians)


def test_main_runs_fresh_processes_and_rejects_bad_arguments(capsys):
    argv = ["--threads", "1,2", "--seconds", "0.4", "--window", "0.2", "--cores", ""]
    thread_phases.main(argv)
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == [
        "transpose, 1 thread(s)",
        "transpose, 2 thread(s)",
    ]
    assert all("windows > 1.5x the fastest" in line for line in out)
    for bad in (
        ["--threads", "0"],
        ["--threads", "x"],
        ["--window", "0"],
        ["--seconds", "1", "--window", "2"],
    ):
        with pytest.raises(SystemExit, match="--threads"):
            thread_phases.main(bad)
