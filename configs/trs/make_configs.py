"""Regenerate the TRS-ODEN LightningCLI configs of reference experiments I-VI.

Run from the repository root: ``python configs/trs/make_configs.py``. Each experiment gets one
file per condition (``oden``, ``hoden``, ``trs_oden``, and ``trs_hoden`` for exp II) with the
reference defaults (Adam 2e-4, exp V the reference's Keras Adam, full batch, 5000 epochs),
plus a ``quick/`` copy that finishes on a CPU in about a minute (less data, fewer epochs, lr 3e-3).
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent

DUFFING = "pl_pac_trs.data.DuffingDataModule"
EXPERIMENTS = {
    "exp1": {
        "title": "simple harmonic oscillator",
        "data": {"class_path": DUFFING, "init_args": {"alpha": 1.0, "beta": 0.0}},
        "quick_data": {"num_train": 50},
        "hidden": [1000],
        "integrator": "leapfrog",
        "conditions": {"oden": ("oden", 0.0), "hoden": ("hoden", 0.0), "trs_oden": ("oden", 10.0)},
    },
    "exp2": {
        "title": "nonlinear Duffing",
        "data": {"class_path": DUFFING, "init_args": {"alpha": -1.0, "beta": 1.0}},
        "quick_data": {},
        "hidden": [100, 100],
        "integrator": "leapfrog",
        "conditions": {
            "oden": ("oden", 0.0),
            "hoden": ("hoden", 0.0),
            "trs_oden": ("oden", 10.0),
            "trs_hoden": ("hoden", 10.0),
        },
    },
    "exp3": {
        "title": "forced Duffing",
        "data": {
            "class_path": DUFFING,
            "init_args": {
                "alpha": -0.2,
                "beta": 0.2,
                "delta": 0.15,
                "num_train": 200,
                "train_steps": 50,
                "train_span": 5.0,
                "noise_std": 0.05,
                "test_steps": 100,
                "test_span": 10.0,
            },
        },
        "quick_data": {"num_train": 50},
        "hidden": [100, 100],
        "integrator": "rk4",
        "time_augmented": True,
        "conditions": {"oden": ("oden", 0.0), "hoden": ("hoden", 0.0), "trs_oden": ("oden", 0.5)},
    },
    "exp4": {
        "title": "damped oscillator",
        "data": {"class_path": DUFFING, "init_args": {"alpha": 1.0, "gamma": 0.1}},
        "quick_data": {},
        "hidden": [1000],
        "integrator": "leapfrog",
        "time_weighted": True,
        "conditions": {"oden": ("oden", 0.0), "hoden": ("hoden", 0.0), "trs_oden": ("oden", 0.5)},
    },
    "exp5": {
        "title": "real double oscillator",
        "data": {"class_path": "pl_pac_trs.data.DoubleOscillatorDataModule", "init_args": {}},
        "quick_data": {},
        "hidden": [1000],
        "integrator": "leapfrog",
        # the reference's legacy Keras Adam (eps 1e-7 on the uncorrected second moment): the
        # exp V HODEN's gradients are small (median 5e-5 at init), where torch's Adam (eps 1e-8)
        # steps differently; from the same initial weights it ended 2x off the reference code
        # (pl_pac_trs/trs/optim.py)
        "optimizer": "pl_pac_trs.trs.KerasAdam",
        "conditions": {"oden": ("oden", 0.0), "hoden": ("hoden", 0.0), "trs_oden": ("oden", 0.5)},
    },
    "exp6": {
        "title": "strange attractor",
        "data": {"class_path": "pl_pac_trs.data.StrangeAttractorDataModule", "init_args": {}},
        "quick_data": {
            "num_train": 40,
            "train_steps": 100,
            "train_span": 5.0,
            "num_val": 5,
            "num_test": 10,
            "test_steps": 200,
            "test_span": 10.0,
        },
        "hidden": [200, 200],
        "integrator": "rk4",
        "reversal": [-1.0, -1.0, -1.0],
        "lyapunov": True,
        "conditions": {"oden": ("oden", 0.0), "trs_oden": ("oden", 10.0)},
    },
}

STATE_DIM = {"exp5": 4, "exp6": 3}


#: The field initialisation every generated config states: the reference code's (Glorot-uniform
#: weights, zero biases), which the reproduction needs (docs/trs.md, "Initialisation").
INIT = "reference"


def field_config(exp: str, spec: dict, kind: str) -> dict:
    args = {"state_dim": STATE_DIM.get(exp, 2), "hidden": spec["hidden"], "init": INIT}
    if spec.get("time_augmented"):  # the reference time-augments both fields (exp III)
        args["time_augmented"] = True
    name = "HODENField" if kind == "hoden" else "ODENField"
    return {"class_path": f"pl_pac_trs.trs.{name}", "init_args": args}


def plots_config(spec: dict) -> dict:
    """The figures of the test rollouts (phase portraits, energy; Lyapunov curves for exp VI)."""
    args = {"num_plot": 3} | ({"lyapunov": True} if spec.get("lyapunov") else {})
    return {"class_path": "pl_pac_trs.trs.TrajectoryPlots", "init_args": args}


def config(exp: str, spec: dict, condition: str, quick: bool) -> dict:
    kind, trs_weight = spec["conditions"][condition]
    model = {
        "vector_field": field_config(exp, spec, kind),
        "integrator": spec["integrator"],
        "trs_weight": trs_weight,
        "optimizer": {
            "class_path": spec.get("optimizer", "torch.optim.Adam"),
            "init_args": {"lr": 3e-3 if quick else 2e-4},
        },
    }
    if spec.get("time_weighted") and trs_weight > 0:
        model["time_weighted"] = True
    if spec.get("reversal"):
        model["reversal"] = {
            "class_path": "pl_pac_trs.trs.Reversal",
            "init_args": {"signs": spec["reversal"]},
        }
    data = copy.deepcopy(spec["data"])
    if quick:
        data["init_args"].update(spec["quick_data"])
    name = condition.replace("_", "-")
    every = (25 if exp != "exp6" else 5) if quick else 100
    run = f"runs/trs/{exp}/" + ("quick/" if quick else "") + condition
    return {
        "seed_everything": 0,
        "model": {"class_path": "pl_pac_trs.trs.TRSODEN", "init_args": model},
        "data": data,
        # last.ckpt and the newest periodic checkpoint, at the end of every `every`-th training
        # epoch whether or not it validates, in the run's own directory
        # (<default_root_dir>/version_<N>/checkpoints): `--ckpt_path=last` resumes it
        "checkpoint": {"every_n_epochs": every, "save_on_train_epoch_end": True, "save_last": True},
        "trainer": {
            "max_epochs": (100 if exp != "exp6" else 10) if quick else 5000,
            "check_val_every_n_epoch": every,
            # every 10th step: 500 points per 5000-epoch curve; each training `self.log` costs
            # Lightning ~0.4 ms, ~4% of a full-batch exp I epoch at every step (docs/trs.md)
            "log_every_n_steps": 10,
            "default_root_dir": run,
            "callbacks": [
                plots_config(spec),
                # `pl-pac-trs predict` writes the rollouts to predictions.npz in the run directory
                {"class_path": "pl_pac_trs.trs.RolloutWriter"},
            ],
            "logger": {
                "class_path": "lightning.pytorch.loggers.WandbLogger",
                "init_args": {
                    "project": "pl-pac-trs",
                    "save_dir": "runs",
                    "group": f"trs-{exp}" + ("-quick" if quick else ""),
                    "name": name,
                },
            },
        },
    }


def main() -> None:
    for exp, spec in EXPERIMENTS.items():
        for quick in (False, True):
            out_dir = HERE / exp / "quick" if quick else HERE / exp
            out_dir.mkdir(parents=True, exist_ok=True)
            for condition in spec["conditions"]:
                kind, trs_weight = spec["conditions"][condition]
                header = (
                    f"# TRS-ODEN reference exp {exp[3:]} ({spec['title']}), condition {condition}"
                    f" ({kind.upper()}, trs_weight={trs_weight:g})"
                    + (": quick CPU variant (small budget, lr 3e-3)" if quick else "")
                    + ".\n# Generated by configs/trs/make_configs.py; run: pl-pac-trs fit --config "
                    + f"trs/{exp}/{'quick/' if quick else ''}{condition}\n"
                    + "# checkpoint: last.ckpt every N epochs in the run's directory "
                    + "(--ckpt_path=last resumes; --checkpoint.every_n_epochs=N)\n"
                )
                body = yaml.safe_dump(config(exp, spec, condition, quick), sort_keys=False)
                (out_dir / f"{condition}.yaml").write_text(header + body)


if __name__ == "__main__":
    main()
