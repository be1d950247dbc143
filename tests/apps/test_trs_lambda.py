"""``pl-pac-trs trs-lambda``: one fit per TRS weight, the table, the chosen config; bad input."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from pl_pac_trs.apps.cli import main
from pl_pac_trs.apps.trs_lambda import parse_weights, select_weight

USER = {
    "seed_everything": 3,
    "model": {
        "class_path": "pl_pac_trs.trs.TRSODEN",
        "init_args": {
            "vector_field": {
                "class_path": "pl_pac_trs.trs.ODENField",
                "init_args": {"state_dim": 2, "hidden": [8]},
            },
            "integrator": "leapfrog",
            "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.003}},
        },
    },
    "data": {
        "class_path": "pl_pac_trs.data.ODESystemDataModule",
        "init_args": {"system": "damped_pendulum", "num_train": 3, "num_val": 2, "num_test": 1},
    },
    # the user's own logger: the command must not touch W&B (its fits log to CSV)
    "trainer": {
        "max_epochs": 50,
        "logger": {"class_path": "lightning.pytorch.loggers.WandbLogger"},
    },
}


def _config(tmp_path, **data_args):
    cfg = json.loads(json.dumps(USER))
    cfg["data"]["init_args"].update(data_args)
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _table(text):
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "trs_weight |" not in ln]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows]


def test_fits_every_weight_and_writes_the_chosen_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    config, out = _config(tmp_path), tmp_path / "out"
    argv = ["trs-lambda", "--config", str(config), "--lambdas", "10,0.5", "--time-weighted"]
    assert main([*argv, "--out", str(out), "--trainer.max_epochs=3"]) == 0
    printed = capsys.readouterr().out
    rows = _table(printed)
    # 0 added; the time-weighted variant at each weight above 0
    assert [(r[0], r[1]) for r in rows] == [
        ("0", "no"),
        ("0.5", "no"),
        ("10", "no"),
        ("0.5", "yes"),
        ("10", "yes"),
    ]
    assert (out / "trs_lambda.md").read_text() == printed[printed.index("# TRS weight") :]
    payload = json.loads((out / "trs_lambda.json").read_text())
    vals = [r["val_ode"] for r in payload["rows"]]
    best = payload["rows"][vals.index(min(vals))]
    assert payload["chosen"] == best and payload["seeds"] == [3]
    chosen = yaml.safe_load((out / "chosen.yaml").read_text())
    model = chosen["model"]["init_args"]
    assert model["trs_weight"] == best["trs_weight"]
    assert model["time_weighted"] is best["time_weighted"]
    # the user's settings are kept (budget and logger), ours (CSV logs, overrides) are not
    assert chosen["trainer"]["max_epochs"] == 3
    assert chosen["trainer"]["logger"]["class_path"].endswith("WandbLogger")
    assert chosen["data"]["init_args"]["system"] == "damped_pendulum"
    logs = sorted((out / "fits").rglob("metrics.csv"))
    assert [p.parent.name for p in logs] == ["seed3"] * 5  # every weight from the same seed
    assert not (tmp_path / "wandb").exists()
    # the chosen config runs as it is
    assert (
        main(
            [
                "fit",
                "--config",
                str(out / "chosen.yaml"),
                "--trainer.max_epochs=1",
                "--trainer.logger=false",
            ]
        )
        == 0
    )


def test_several_seeds_average(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    argv = ["trs-lambda", "-c", str(_config(tmp_path)), "--lambdas", "1", "--seeds", "2"]
    assert main([*argv, "--out", str(out), "--trainer.max_epochs=2"]) == 0
    payload = json.loads((out / "trs_lambda.json").read_text())
    assert payload["seeds"] == [3, 4]
    for row in payload["rows"]:
        assert len(row["val_ode_seeds"]) == 2
        assert math.isclose(row["val_ode"], sum(row["val_ode_seeds"]) / 2)
    assert [r["trs_weight"] for r in payload["rows"]] == [0.0, 1.0]


def test_a_config_without_a_seed_compares_the_weights_from_one_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    del cfg["seed_everything"]  # LightningCLI draws one
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["trs-lambda", "-c", str(config), "--out", str(out), "--trainer.max_epochs=1"]) == 0
    (seed,) = json.loads((out / "trs_lambda.json").read_text())["seeds"]
    logs = sorted((out / "fits").rglob("metrics.csv"))
    assert [p.parent.name for p in logs] == [f"seed{seed}"] * 3


@pytest.mark.parametrize(
    ("extra", "data_args", "message"),
    [
        (["--lambdas", "1,abc"], {}, "--lambdas: 'abc' is not a number"),
        (["--lambdas", "-1"], {}, "finite number >= 0"),
        (["--lambdas", "inf"], {}, "finite number >= 0"),
        (["--seeds", "0"], {}, "--seeds must be >= 1"),
        ([], {"num_val": 0}, "has no validation split"),
        (["--model.init_args.integrator=bogus"], {}, "unknown integrator 'bogus'"),
    ],
)
def test_bad_input_exits_2_before_any_fit(tmp_path, monkeypatch, capsys, extra, data_args, message):
    monkeypatch.chdir(tmp_path)
    config, out = _config(tmp_path, **data_args), tmp_path / "out"
    assert main(["trs-lambda", "--config", str(config), *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) <= 3
    assert not out.exists()


def test_not_a_trs_model_and_missing_config_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["trs-lambda", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert main(["trs-lambda", "--config", "pac/friedman/source", "--out", "o"]) == 2
    assert "not pl_pac_trs.trs.TRSODEN" in capsys.readouterr().err
    assert main(["trs-lambda"]) == 2  # no --config
    assert not (tmp_path / "o").exists()


def test_parse_and_select():
    assert parse_weights("0,1,1,10") == [0.0, 1.0, 10.0]
    rows = [
        {"trs_weight": 0.0, "time_weighted": False, "val_ode": 2.0},
        {"trs_weight": 1.0, "time_weighted": False, "val_ode": math.nan},
        {"trs_weight": 10.0, "time_weighted": False, "val_ode": 2.0},
    ]
    assert select_weight(rows) is rows[0]  # NaN never wins; a tie goes to the smaller weight
