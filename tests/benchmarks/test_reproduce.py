"""CI-sized smoke runs of ``python -m benchmarks``: the tables are produced and well formed."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from benchmarks import reproduce_pac, reproduce_trs, speed
from benchmarks.__main__ import main
from benchmarks.common import fmt_mean_std

CELL = re.compile(r"^-?[0-9.]+(e[+-]?[0-9]+)? ± [0-9.]+(e[+-]?[0-9]+)?$")


def _table(markdown: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """The markdown table whose first header cell is ``first_header``."""
    lines = markdown.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    assert lines[start + 1] == "|" + "---|" * len(header)
    return header, rows


@pytest.mark.slow
@pytest.mark.parametrize("experiments", ["1", "5"])
def test_trs_smoke_tables(tmp_path, restore_threads, monkeypatch, request, experiments):
    """Exp I, and exp V (per-body columns) from the record this machine has: never downloads."""
    if experiments == "5":
        record = request.getfixturevalue("record_path")  # skips, saying why, without one
        monkeypatch.setattr(reproduce_trs, "EXP5_DATA", record)
    out = tmp_path / "out"
    argv = ["trs", "--budget=smoke", "--seeds=2", f"--experiments={experiments}", "--no-progress"]
    assert main([*argv, f"--out={out}", f"--work={tmp_path / 'work'}"]) == 0
    payload = json.loads((out / "trs.json").read_text())
    assert payload["budget"] == "smoke" and payload["seeds"] == [0, 1]
    metrics = {"1": ("traj_mse", "energy_mse"), "5": ("traj_mse", "body1_mse", "body2_mse")}
    columns = {"1": ["I traj", "I energy"], "5": ["V traj", "V body1", "V body2"]}
    header, rows = _table((out / "trs.md").read_text(), "model")
    assert header == ["model"] + [c for e in experiments.split(",") for c in columns[e]]
    assert [r[0] for r in rows] == ["ODEN", "HODEN", "TRS-ODEN"]
    for exp in experiments.split(","):
        summary = payload["summary"][exp]
        assert set(summary) == {"oden", "hoden", "trs_oden"}
        for cond, row in summary.items():
            for metric in metrics[exp]:
                values = row[metric]["values"]
                assert len(values) == 2 and all(math.isfinite(v) for v in values), (cond, metric)
        traj_col = header.index(columns[exp][0])
        for label, cond in zip(
            ["ODEN", "HODEN", "TRS-ODEN"], ["oden", "hoden", "trs_oden"], strict=True
        ):
            row = next(r for r in rows if r[0] == label)
            cells = [row[header.index(c)] for c in columns[exp]]
            assert all(CELL.match(c) for c in cells), row
            assert row[traj_col] == fmt_mean_std(summary[cond]["traj_mse"]["values"])
        ratio = payload["comparisons"][exp]["ratio_trs_oden_to_oden"]
        expected = summary["trs_oden"]["traj_mse"]["mean"] / summary["oden"]["traj_mse"]["mean"]
        assert ratio == pytest.approx(expected)
        assert (out / "trs" / f"exp{exp}_trs_oden_phase_portraits.png").stat().st_size > 0


@pytest.mark.slow
def test_trs_conditions_subset(tmp_path, restore_threads):
    """``--conditions`` runs only those; the table and comparisons mark the others n/a."""
    out = tmp_path / "out"
    argv = ["trs", "--budget=smoke", "--seeds=1", "--experiments=1", "--no-progress"]
    argv += ["--conditions=oden,trs_oden", f"--out={out}", f"--work={tmp_path / 'work'}"]
    assert main(argv) == 0
    payload = json.loads((out / "trs.json").read_text())
    assert set(payload["runs"]["1"]) == set(payload["summary"]["1"]) == {"oden", "trs_oden"}
    assert set(payload["configs"]["1"]) == {"oden", "trs_oden"}
    header, rows = _table((out / "trs.md").read_text(), "model")
    assert header[:3] == ["model", "I traj", "I energy"] and [r[0] for r in rows] == [
        "ODEN",
        "TRS-ODEN",
    ]
    _, comparison = _table((out / "trs.md").read_text(), "exp")
    assert comparison[0][3] == "n/a"  # "TRS-ODEN beats HODEN": HODEN not run


@pytest.mark.slow
def test_pac_smoke_tables(tmp_path, restore_threads):
    torch.set_num_threads(1)
    payload = reproduce_pac.run(
        ["friedman"], "smoke", 2, tmp_path / "out", tmp_path / "work", sweeps=False, progress=False
    )
    assert not payload["errors"]
    summary = payload["summary"]["friedman"]
    paper_pac = reproduce_pac.PAPER_METHODS["PAC-Net (calibrate)"]
    assert set(summary["target"]) == {*reproduce_pac.METHODS.values(), paper_pac}  # no conv
    for cell in summary["target"].values():
        assert len(cell["values"]) == 2 and all(math.isfinite(v) for v in cell["values"])
    # PAC-Net keeps the source task exactly: same source MSE as the allocated model, every seed
    for run in payload["runs"]["friedman"]:
        assert run["identical"] is True
        pac_source = run["source"][reproduce_pac.METHODS["PAC-Net (calibrate)"]]
        assert pac_source == run["source"]["source (pruned + allocated)"]
        assert run["source"]["source (dense, whole source budget)"] is not None
    md = (tmp_path / "out" / "pac.md").read_text()
    header, rows = _table(md, "method")
    assert header == ["method", "friedman: test MSE (standardised y)"]
    labels = [*reproduce_pac.METHODS.values(), *reproduce_pac.PAPER_METHODS.values()]
    assert [r[0] for r in rows] == labels
    assert all(CELL.match(r[1]) for r in rows[:-1]), rows
    assert rows[-1][1] == "n/a"  # the paper's L2-SP is on conv layers: none in an MLP
    _, src_rows = _table(md, "model evaluated on the source task")
    assert src_rows[-2] == ["PAC-Net source outputs bit-identical (all seeds)", "True"]
    lora_row = ["LoRA source outputs (adapters disabled) bit-identical to the dense source"]
    assert src_rows[-1] == [*lora_row, "True"]
    # costs, measured in the same runs: every method, PAC-Net and LoRA keep both tasks in
    # less than two models, LoRA trains fewer parameters than fine-tuning
    m = reproduce_pac.METHODS
    for run in payload["runs"]["friedman"]:
        costs = run["costs"]
        assert set(costs) == set(m.values())
        for cost in costs.values():
            assert cost["trainable"] > 0 and cost["bytes_both"] > 0 and cost["step_ms"] > 0
        ft = costs[m["finetune"]]
        for key in ("lora", "PAC-Net (calibrate)", "linear_probe"):
            assert costs[m[key]]["bytes_both"] < ft["bytes_both"], key
        assert costs[m["lora"]]["trainable"] < ft["trainable"]
    assert "## Costs" in md


def test_sweep_plots_written(tmp_path):
    result = {
        "n_target": {"10": {"PAC-Net": [0.5, 0.6], "fine-tuning": [0.7, 0.8]}},
        "pruning": {"0.5": {"PAC-Net": [0.4], "fine-tuning": [0.7]}},
    }
    paths = reproduce_pac.plot_sweeps(result, tmp_path)
    assert [p.name for p in paths] == ["sweep_n_target.png", "sweep_pruning.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="budget"):
        reproduce_trs.run([1], "huge", 1, tmp_path, tmp_path, progress=False)
    with pytest.raises(ValueError, match="experiment 7"):
        reproduce_trs.run([7], "smoke", 1, tmp_path, tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown PAC task 'celeba'"):
        reproduce_pac.run(["celeba"], "smoke", 1, tmp_path, tmp_path, progress=False)
    with pytest.raises(SystemExit):
        main(["trs", "--seeds=0"])
    with pytest.raises(ValueError, match="'trs_hoden' is not a condition of experiments \\[1\\]"):
        reproduce_trs.run([1], "smoke", 1, tmp_path, tmp_path, False, False, ["trs_hoden"])


PAC_OVERHEAD_OUT = """\
model                        device phase     optim  plain ms masked ms overhead callback  zero v
digits SmallCNN (batch 64)   cpu    allocate  adamw    10.767    12.137   12.73%    3.10%    0.0%
MLP 10-256-256-1 (batch 64)  cpu    calibrate adam      1.919     6.581  242.94%   -1.50%   12.5%

probe: torch.sqrt over 65536 floats: zeros 219.3 us, ones 36.2 us (ratio 6.06)

paired in one Lightning fit (CPU; both arms in the same fits, manual optimisation, ...)
MLP 10-64-64-1 (batch 64)    cpu    calibrate adam_fused 0.594  0.627    5.50%    6.10%

inside Lightning fits (CPU; step = on_train_batch_start..end, alternating fits)
digits SmallCNN (batch 64)   cpu    allocate  adam     13.146    13.348    1.54%    0.71%
"""


def test_parse_speed_tables():
    rows = speed.parse_pac_overhead(PAC_OVERHEAD_OUT)
    assert [(r["setting"], r["phase"], r["optimizer"]) for r in rows] == [
        ("bare step", "allocate", "adamw"),
        ("bare step", "calibrate", "adam"),
        ("paired in one Lightning fit", "calibrate", "adam_fused"),
        ("inside Lightning fit", "allocate", "adam"),
    ]
    assert rows[1]["model"] == "MLP 10-256-256-1 (batch 64)"
    assert [r["callback_pct"] for r in rows] == [3.1, -1.5, 6.1, 0.71]
    assert [r["zero_v_pct"] for r in rows] == [0.0, 12.5, None, None]
    assert (rows[2]["plain_ms"], rows[2]["masked_ms"]) == (0.594, 0.627)
    assert (rows[1]["plain_ms"], rows[1]["masked_ms"], rows[1]["overhead_pct"]) == (
        1.919,
        6.581,
        242.94,
    )
    gen = speed.parse_data_generation(
        "case    A ours [s]  B loop [s]     A/B\n"
        "exp VI (100 x 400 steps)                            0.135       8.100   0.017\n"
    )
    assert gen == [
        {"case": "exp VI (100 x 400 steps)", "ours_s": 0.135, "loop_s": 8.1, "ratio": 0.017}
    ]
    with pytest.raises(ValueError, match="could not parse"):
        speed.parse_pac_overhead("nothing here")


def test_trs_speed_runs_and_speed_markdown_has_a_column_per_thread_count(tmp_path, restore_threads):
    """trs_speed at a tiny repeat count through the runner, once per thread count, and the
    speed page's TRS tables with one column per run."""
    torch.set_num_threads(2)
    one = speed.run_trs_speed(tmp_path, 1, 1, 2, threads=1)
    assert torch.get_num_threads() == 2  # the run's thread count is undone
    assert one["machine"]["threads"] == 1
    med = one["median_seconds"]
    key = "trs_one_call / trs_two_call (target < 1)"
    assert med and all(math.isfinite(v) and v > 0 for v in med.values())
    assert key in one["ratios"]
    assert all(math.isfinite(v) and v > 0 for v in one["ratios"].values())
    two = {**one, "machine": {**one["machine"], "threads": 2}}
    two["ratios"] = {k: 2 * v for k, v in one["ratios"].items()}
    payload = {"budget": "smoke", "errors": {}, "gpu_run": False}
    text = speed.to_markdown({**payload, "trs_speed": one, "trs_speed_all_threads": two})
    header = "| ratio | 1 thread(s) | 2 thread(s) |"
    assert header in text
    row = next(line for line in text.splitlines() if line.startswith(f"| {key} |"))
    assert row == f"| {key} | {one['ratios'][key]:.3f} | {2 * one['ratios'][key]:.3f} |"
    assert "| ratio | 1 thread(s) |\n" in speed.to_markdown({**payload, "trs_speed": one})


def test_gpu_trs_timing_code_runs_on_cpu():
    """The CUDA-only TRS timing, exercised on the CPU so that it cannot rot unseen."""
    res = speed.gpu_trs(repeats=1, device="cpu")
    assert res["device"] == "cpu"
    assert set(res["median_seconds"]) == {"oden_step", "trs_step", "test_rollout"}
    assert all(math.isfinite(v) and v > 0 for v in res["median_seconds"].values())
    assert set(res["ratios"]) == {"trs / oden"}
    assert math.isfinite(res["ratios"]["trs / oden"]) and res["ratios"]["trs / oden"] > 0
    assert math.isfinite(res["test_rollout_traj_steps_per_s"])
    assert res["test_rollout_traj_steps_per_s"] > 0


def test_official_comparison_flags_cells_against_their_targets():
    from benchmarks.reproduce_trs import official_rows

    summary = {
        "1": {
            "trs_oden": {"traj_mse": {"mean": 0.36, "std": 0.0, "values": [0.36]}},
            "oden": {"traj_mse": {"mean": 6.5, "std": 0.0, "values": [6.5]}},
        }
    }
    rows = {(r[1], r[2]): r for r in official_rows(summary)}
    assert set(rows) == {("TRS-ODEN", "traj"), ("ODEN", "traj")}  # only cells both have
    trs, oden = rows["TRS-ODEN", "traj"], rows["ODEN", "traj"]
    assert trs[4:] == ["0.31", "1.16", "<= 1.2", "yes"]
    assert oden[4:] == ["4.05", "1.60", "<= 1.5", "no"]


@pytest.mark.slow
def test_trs_job_log_workers_resume_and_report_only(tmp_path, restore_threads, monkeypatch):
    """Fits in two worker processes give the numbers of in-process fits; every fit is in the job
    log as it ends; ``resume`` runs only what is missing; ``report_only`` runs nothing."""
    common = dict(budget="smoke", seeds=1, plots=False, progress=False, conditions=["oden"])
    one = reproduce_trs.run([1], out=tmp_path / "a", work=tmp_path / "wa", **common)
    two = reproduce_trs.run([1, 4], out=tmp_path / "b", work=tmp_path / "wb", workers=2, **common)
    assert two["runs"]["1"] == one["runs"]["1"]  # same fit, other process
    log = tmp_path / "wb" / "smoke_runs.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted((r["exp"], r["condition"], r["seed"]) for r in records) == [
        (1, "oden", 0),
        (4, "oden", 0),
    ]

    def no_fit(*args, **kwargs):
        raise AssertionError("a finished fit was run again")

    monkeypatch.setattr(reproduce_trs, "_fit_one", no_fit)
    again = reproduce_trs.run(
        [1, 4], out=tmp_path / "c", work=tmp_path / "wb", resume=True, **common
    )
    assert again["runs"] == two["runs"]
    log.write_text(log.read_text().splitlines()[0] + "\n{torn line\n")  # one fit left, one torn
    kept = records[0]
    report = reproduce_trs.run(
        [1, 4], out=tmp_path / "d", work=tmp_path / "wb", report_only=True, **common
    )
    assert list(report["runs"]) == [str(kept["exp"])]
    assert report["runs"][str(kept["exp"])]["oden"] == [kept["test"]]
    assert (tmp_path / "d" / "trs.md").is_file()


def test_pac_paired_table_differences_by_seed():
    """PAC-Net minus each baseline per seed: the mean ± std of the differences and the seeds won
    (a tie is not a win); a baseline missing on a seed drops that seed's pair only."""
    pac = reproduce_pac.METHODS["PAC-Net (calibrate)"]
    ft, l2 = reproduce_pac.METHODS["finetune"], reproduce_pac.METHODS["l2sp"]
    runs = {
        "digits": [
            {"target": {pac: 0.10, ft: 0.12, l2: 0.10}},
            {"target": {pac: 0.20, ft: 0.19, l2: None}},
            {"target": {pac: 0.05, ft: 0.08, l2: 0.06}},
        ]
    }
    header, rows = reproduce_pac.paired_table(runs)
    assert header == ["PAC-Net minus", "digits"]
    cells = {r[0]: r[1] for r in rows}
    assert (
        cells[ft] == reproduce_pac.fmt_mean_std([0.10 - 0.12, 0.20 - 0.19, 0.05 - 0.08]) + " (2/3)"
    )
    assert cells[l2] == reproduce_pac.fmt_mean_std([0.10 - 0.10, 0.05 - 0.06]) + " (1/2)"
    assert cells[reproduce_pac.METHODS["scratch"]] == reproduce_pac.EMPTY
