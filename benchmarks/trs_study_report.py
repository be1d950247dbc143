"""Tables of :mod:`benchmarks.trs_study` from its job records (markdown + JSON)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import fmt_mean_std, markdown_table, mean_std, write_outputs

ROLES = ("ODEN", "HODEN", "TRS-ODEN", "TRS-ODEN tw", "chosen")
KIND = {
    "pendulum": "conservative, nonlinear; R = momentum flip",
    "damped_pendulum": "dissipative (not reversible); TRS term with the momentum flip",
    "forced_pendulum": "driven (time-augmented field, RK4); R = (q, -p, -t)",
    "henon_heiles": "2 degrees of freedom (4-D), conservative; R = momentum flip",
    "lotka_volterra": "log Lotka-Volterra; R = swap (u, v) -> (v, u)",
}


def _traj(rec: dict[str, Any], epoch: str, role: str) -> float | None:
    entry = rec["results"].get(epoch, {}).get(role)
    return None if entry is None else entry["test"].get("test/traj_mse")


def _weights(recs: Sequence[dict[str, Any]], epoch: str, role: str) -> str:
    values = []
    for rec in recs:
        entry = rec["results"].get(epoch, {}).get(role)
        if entry is not None:
            tw = " tw" if entry["time_weighted"] else ""
            values.append(f"{entry['trs_weight']:g}{tw}")
    return ", ".join(values) if values else "n/a"


def _groups(records: Sequence[dict[str, Any]]) -> dict[tuple[str, float, int], list[dict]]:
    groups: dict[tuple[str, float, int], list[dict]] = {}
    for rec in sorted(records, key=lambda r: r["seed"]):
        groups.setdefault((rec["system"], rec["noise"], rec["num_train"]), []).append(rec)
    return groups


def _order(meta: dict[str, Any], groups: dict) -> list[tuple[str, float, int]]:
    systems = list(meta["systems"])
    settings = [tuple(s) for s in meta.get("settings", [])]

    def key(k: tuple[str, float, int]) -> tuple:
        s = (k[1], k[2])
        return (
            systems.index(k[0]) if k[0] in systems else 99,
            settings.index(s) if s in settings else 99,
            k,
        )

    return sorted(groups, key=key)


def summarise(meta: dict[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per budget (epochs) and setting: test MSE per role over seeds, the weights chosen, and
    per system how often TRS-ODEN / the chosen model beat ODEN on test."""
    groups = _groups(records)
    epochs = [str(e) for e in meta["grid"]["epochs"]]
    cells: dict[str, list[dict[str, Any]]] = {}
    systems: dict[str, dict[str, dict[str, Any]]] = {}
    for epoch in epochs:
        rows = []
        for key in _order(meta, groups):
            recs = groups[key]
            row = {"system": key[0], "noise": key[1], "num_train": key[2], "seeds": len(recs)}
            for role in ROLES:
                values = [v for v in (_traj(r, epoch, role) for r in recs) if v is not None]
                row[role] = values
            row["trs_weights"] = _weights(recs, epoch, "TRS-ODEN")
            row["tw_weights"] = _weights(recs, epoch, "TRS-ODEN tw")
            row["chosen_weights"] = _weights(recs, epoch, "chosen")
            rows.append(row)
        cells[epoch] = rows
        for system in dict.fromkeys(r["system"] for r in rows):
            pairs = [(r, k) for k, rs in groups.items() if k[0] == system for r in rs]
            systems.setdefault(epoch, {})[system] = _system_summary(pairs, epoch)
    return {"cells": cells, "systems": systems}


def _system_summary(pairs: list[tuple[dict, tuple]], epoch: str) -> dict[str, Any]:
    wins = {"TRS-ODEN": 0, "TRS-ODEN tw": 0, "chosen": 0, "HODEN": 0}
    counts = dict.fromkeys(wins, 0)
    ratios: dict[str, list[float]] = {k: [] for k in wins}
    chose_trs = 0
    for rec, _ in pairs:
        base = _traj(rec, epoch, "ODEN")
        chosen = rec["results"].get(epoch, {}).get("chosen")
        if chosen is not None and chosen["trs_weight"] > 0:
            chose_trs += 1
        for role in wins:
            value = _traj(rec, epoch, role)
            if value is None or base is None:
                continue
            counts[role] += 1
            wins[role] += value < base
            if value > 0 and base > 0 and math.isfinite(value) and math.isfinite(base):
                ratios[role].append(math.log(value / base))
    return {
        "runs": len(pairs),
        "chose_trs": chose_trs,
        "wins": wins,
        "counts": counts,
        "geo_ratio": {k: (math.exp(statistics.fmean(v)) if v else None) for k, v in ratios.items()},
    }


#: The models the summary compares with ODEN.
SUMMARY_ROLES = ("TRS-ODEN", "TRS-ODEN tw", "HODEN", "chosen")


def _versus(s: dict[str, Any], role: str) -> str:
    """``ratio (wins/runs)`` of one role against ODEN, ``n/a`` where it was not fitted."""
    if not s["counts"][role]:
        return "n/a"
    ratio = s["geo_ratio"][role]
    text = "n/a" if ratio is None else f"{ratio:.2f}"
    return f"{text} ({s['wins'][role]}/{s['counts'][role]})"


def _cell(values: list[float]) -> str:
    return fmt_mean_std(values) if values else "n/a"


def to_markdown(payload: dict[str, Any]) -> str:
    meta, summary = payload["meta"], payload["summary"]
    grid = meta["grid"]
    lines = [
        f"# When does TRS-ODEN help? ({meta['budget']} budget, {meta['seeds']} seeds)",
        "",
        f"Test trajectory MSE x1e2 on {grid['num_test']} clean trajectories of "
        f"{grid['test_steps']} steps over [0, {grid['test_span']:g}], mean ± std over seeds; "
        f"training trajectories of 30 steps over [0, 3], windows of 10 steps, full batch, Adam "
        f"lr {meta['lr']:g}, MLP {tuple(grid['hidden'])} tanh. TRS weights fitted: "
        f"{', '.join(f'{w:g}' for w in meta['lambdas'])}; TRS-ODEN = the best weight above 0 "
        "on validation (`val/ode`, noisy held-out windows), chosen = the best including 0; "
        "the weights picked per seed are listed. Only validation chooses; each model is "
        "tested once.",
        "",
    ]
    for epoch, systems in summary["systems"].items():
        lines += [f"## Summary at {epoch} epochs", ""]
        header = ["system", "kind", "runs", *SUMMARY_ROLES, "validation chose a weight > 0"]
        rows = []
        for system, s in systems.items():
            cells = [_versus(s, role) for role in SUMMARY_ROLES]
            chose = f"{s['chose_trs']}/{s['runs']}"
            rows.append([system, KIND.get(system, ""), s["runs"], *cells, chose])
        lines += [markdown_table(header, rows), ""]
    lines += [
        "Each cell: the geometric mean over settings and seeds of test MSE / ODEN's test MSE "
        "on the same data and seed (below 1: better than ODEN), and in how many of those "
        "runs it was below ODEN. TRS-ODEN tw: the time-weighted TRS term (dissipative "
        "system only).",
        "",
    ]
    for epoch, rows in summary["cells"].items():
        lines += [f"## Per setting at {epoch} epochs", ""]
        header = [
            "system",
            "noise",
            "trajectories",
            "ODEN",
            "HODEN",
            "TRS-ODEN",
            "weights",
            "TRS-ODEN tw",
            "tw weights",
            "chosen",
            "chosen weights",
        ]
        table = [
            [
                r["system"],
                f"{r['noise']:g}",
                r["num_train"],
                _cell(r["ODEN"]),
                _cell(r["HODEN"]),
                _cell(r["TRS-ODEN"]),
                r["trs_weights"],
                _cell(r["TRS-ODEN tw"]),
                r["tw_weights"] if r["TRS-ODEN tw"] else "n/a",
                _cell(r["chosen"]),
                r["chosen_weights"],
            ]
            for r in rows
        ]
        lines += [markdown_table(header, table), ""]
    lines += [_validation_table(payload), ""]
    done, total = payload["jobs_done"], payload["jobs_total"]
    lines.append(
        f"{done}/{total} jobs done; {payload['fit_seconds']:.0f} s of fitting "
        f"({meta['workers']} workers) on {meta['machine']['processor']}."
    )
    return "\n".join(lines) + "\n"


def _validation_table(payload: dict[str, Any]) -> str:
    """Mean validation MSE (x1e2) per weight, per system, at the longest budget."""
    records, meta = payload["records"], payload["meta"]
    epoch = str(max(meta["grid"]["epochs"]))
    per: dict[str, dict[str, list[float]]] = {}
    for rec in records:
        for label, fit in rec["fits"].items():
            value = fit["val"].get(epoch)
            if value is not None and math.isfinite(value):
                per.setdefault(rec["system"], {}).setdefault(label, []).append(100 * value)
    labels = sorted({lab for d in per.values() for lab in d})
    rows = [
        [s, *[f"{mean_std(d[lab])[0]:.3g}" if lab in d else "n/a" for lab in labels]]
        for s, d in per.items()
    ]
    head = f"## Validation MSE x1e2 per fit at {epoch} epochs (mean over settings and seeds)"
    return head + "\n\n" + markdown_table(["system", *labels], rows)


def write_report(out: Path, name: str, meta: dict[str, Any], records: list[dict]) -> dict:
    """Summarise the records so far and (re)write ``<name>.json`` / ``<name>.md``."""
    from benchmarks.trs_study import BUDGETS, jobs

    meta = {**meta, "settings": [list(s) for s in BUDGETS[meta["budget"]].settings()]}
    payload = {
        "meta": meta,
        "jobs_total": len(jobs(meta["budget"], meta["systems"], meta["seeds"])),
        "jobs_done": len(records),
        "fit_seconds": sum(f["seconds"] for r in records for f in r["fits"].values()),
        "summary": summarise(meta, records),
        "records": records,
    }
    # the JSON keeps the tables; the job records are the log beside it
    tables = {k: v for k, v in payload.items() if k != "records"}
    write_outputs(out, name, tables, to_markdown(payload))
    return payload
