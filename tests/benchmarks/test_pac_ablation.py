"""The PAC-Net ablation's plan and bookkeeping (the runs themselves: docs/results.md)."""

import json

import pytest

from benchmarks import pac_ablation as ab


def test_one_factor_at_a_time_around_the_base():
    plan = ab.settings()
    assert plan[0] == ab.BASE
    assert len({json.dumps(s, sort_keys=True) for s in plan}) == len(plan)  # no repeats
    for setting in plan[1:]:
        changed = {k for k in ab.BASE if setting[k] != ab.BASE[k]}
        assert changed and (changed <= {"penalty_norm", "lam"} or len(changed) == 1), setting
    lams = sorted(
        s["lam"]
        for s in plan
        if s["penalty_norm"] == "sum"
        and s["amount"] == 0.8
        and s["scope"] == "global"
        and s["shared"] == "frozen"
    )
    assert lams == sorted(ab.LAMS["sum"])
    assert {s["amount"] for s in plan} == set(ab.AMOUNTS)
    labels = [ab.label(s) for s in plan]
    assert labels[0] == "base" and len(set(labels)) == len(labels)


def test_a_setting_becomes_the_pipelines_callback_args():
    args = ab.callback_args({**ab.BASE, "scope": "layer", "shared": "trained"})
    assert args["source"] == {"MagnitudePruning": {"amount": 0.8, "pruning_fn": "layer"}}
    assert args["calibrate"] == {
        "GradientMask": {"lam": 0.01, "penalty_norm": "sum", "train_shared": True}
    }


def test_summary_and_choice_use_validation_means():
    rows = []
    for seed, (base, layer) in enumerate([(0.2, 0.1), (0.4, 0.2)]):
        for setting, value in ((ab.BASE, base), ({**ab.BASE, "scope": "layer"}, layer)):
            rows.append(
                {
                    "task": "friedman",
                    "seed": seed,
                    "setting": setting,
                    "label": ab.label(setting),
                    "target": value,
                    "source": 0.05,
                    "identical": True,
                    **({"finetune": 0.3} if setting == ab.BASE else {}),
                }
            )
    summary = ab.summarise(rows)["friedman"]
    assert summary["base"]["target_mean"] == pytest.approx(0.3)
    assert summary["base"]["target_std"] == pytest.approx(0.1414, abs=1e-4)
    assert summary["scope=layer"]["target_mean"] == pytest.approx(0.15)
    assert summary["_finetune"] == [0.3, 0.3]
    assert ab.best(summary) == "scope=layer"
    assert ab.best(summary, lambda s: s["scope"] == "global") == "base"
    text = ab.to_markdown({"friedman": summary}, {"budget": "ci", "seeds": 2, "machine": {}})
    assert "| scope=layer | 0.1500 ± 0.0707 | 0.0500 ± 0.0000 | True |" in text
    assert "Best (lowest mean validation error): **scope=layer**" in text


def test_stage_two_combines_the_levels_that_beat_the_base_by_a_std():
    def cell(setting, mean, std=0.01):
        return {"setting": setting, "target_mean": mean, "target_std": std}

    cells = {
        "base": cell(ab.BASE, 0.50, std=0.02),
        "scope=layer": cell({**ab.BASE, "scope": "layer"}, 0.45),  # beats by 0.05 > 0.02
        "shared=trained": cell({**ab.BASE, "shared": "trained"}, 0.49),  # within one std
        "amount=0.5": cell({**ab.BASE, "amount": 0.5}, 0.60),
        "lam=0.1": cell({**ab.BASE, "lam": 0.1}, 0.40),  # beats
        "_finetune": [0.5],
    }
    assert ab.combined(cells) == {**ab.BASE, "scope": "layer", "lam": 0.1}
    del cells["lam=0.1"]
    assert ab.combined(cells) is None  # one factor only: its run is already in stage 1
    del cells["scope=layer"]
    cells["mean"] = cell({**ab.BASE, "penalty_norm": "mean", "lam": 10.0}, 0.40)
    assert ab.combined(cells) is None  # penalty form and λ are one factor
