"""The shipped W&B sweeps: valid sweep configs, and commands that take every swept parameter.

Offline throughout: the sweep configs are checked with ``sweeps`` (the validator of wandb's local
controller), and the commands are built the way ``wandb agent`` builds them, then parsed by the
CLI or run (tiny budget) in a process with the environment the agent gives a trial.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from wandb.proto import wandb_internal_pb2
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args
from wandb_records import _chunks

from pl_pac_trs.apps.cli import PacTrsCLI
from pl_pac_trs.apps.config_commands import resolve_config_args
from pl_pac_trs.apps.pipeline.command import build_parser
from pl_pac_trs.pac import GradientMask, load_masks

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yml"))


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / "sweeps" / name).read_text())


def _samples(parameter: dict) -> list:
    """Values a sweep can give a parameter: its listed values, or both ends of its range."""
    if "values" in parameter:
        return list(parameter["values"])
    if "value" in parameter:
        return [parameter["value"]]
    return [parameter["min"], parameter["max"]]


def agent_argv(sweep: dict, values: dict) -> list[str]:
    """The command ``wandb agent`` runs for a trial with ``values``, as in
    ``wandb.wandb_agent.Agent._command_run`` (``${interpreter}``: this Python, ``${env}``: none,
    the environment is passed directly)."""
    command = create_sweep_command(copy.deepcopy(sweep["command"]))
    sweep_vars = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    sweep_vars.update(env=[], interpreter=[sys.executable], program=[])
    argv: list[str] = []
    for chunk in map(str, command):
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += sweep_vars.get(chunk[2:-1]) or []
        else:
            argv.append(chunk)
    return argv


def _cli_args(argv: list[str]) -> list[str]:
    """The arguments after ``python -m pl_pac_trs``."""
    index = argv.index("pl_pac_trs")
    assert argv[index - 1] == "-m"
    return argv[index + 1 :]


def test_the_sweeps_are_shipped():
    assert {p.name for p in SWEEPS} >= {"pac_friedman.yml", "trs_exp1.yml"}


@pytest.mark.filterwarnings("ignore")  # sweeps 0.2 predates pydantic 2's config names
@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_files_satisfy_wandbs_sweep_schema(path):
    sweeps = pytest.importorskip("sweeps")
    config = yaml.safe_load(path.read_text())
    assert sweeps.schema_violations_from_proposed_config(config) == []
    assert config["metric"]["goal"] == "minimize" and config["metric"]["name"]
    assert "${args}" in config["command"] and config["parameters"]
    # the validator is live: the same file with an inverted range, or no method, is refused
    broken = copy.deepcopy(config)
    name, parameter = next((k, v) for k, v in broken["parameters"].items() if "min" in v)
    parameter["min"], parameter["max"] = parameter["max"] * 10, parameter["min"]
    assert any(name in v for v in sweeps.schema_violations_from_proposed_config(broken))
    del broken["method"]
    assert sweeps.schema_violations_from_proposed_config(broken)


def test_trs_sweep_weight_reaches_the_model(monkeypatch, tmp_path):
    sweep = _load("trs_exp1.yml")
    assert set(sweep["parameters"]) == {"model.trs_weight"}
    monkeypatch.chdir(tmp_path)  # the agent may run anywhere: the config is named, not a path
    for weight in _samples(sweep["parameters"]["model.trs_weight"]):
        args = _cli_args(agent_argv(sweep, {"model.trs_weight": weight}))
        assert args[0] == "fit" and f"--model.trs_weight={weight}" in args
        args = resolve_config_args(args)  # as `pl-pac-trs` does before parsing
        cli = PacTrsCLI(args=[*args[1:], "--trainer.logger=false"], run=False)
        assert cli.model.trs_weight == weight


def test_pac_sweep_parameters_are_pipeline_options():
    sweep = _load("pac_friedman.yml")
    assert set(sweep["parameters"]) == {"lam", "amount"}
    lams = _samples(sweep["parameters"]["lam"])
    for lam, amount in zip(lams * 5, _samples(sweep["parameters"]["amount"]), strict=False):
        args = _cli_args(agent_argv(sweep, {"lam": lam, "amount": amount}))
        assert args[:2] == ["pac", "friedman"]
        parsed = build_parser().parse_args(args[1:])
        assert (parsed.lam, parsed.amount) == (lam, amount)


def test_pipeline_options_refuse_what_the_callbacks_would(capsys):
    for bad in (["--lam=-1"], ["--lam=nan"], ["--amount=1"], ["--amount=x"]):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(["friedman", *bad])
        assert exit_info.value.code == 2
        assert bad[0].split("=")[0] in capsys.readouterr().err


def _run_records(run_path: Path, timeout: float = 30.0) -> dict:
    """The run record and the summary of an offline run, once its ``exit`` record is written."""
    (path,) = run_path.glob("run-*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        out: dict = {"summary": {}, "exit": False}
        for payload in _chunks(path.read_bytes()):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                out["run"] = record.run
            elif kind == "exit":
                out["exit"] = True
            elif kind == "summary":
                for item in record.summary.update:
                    key = item.key or "/".join(item.nested_key)
                    out["summary"][key] = json.loads(item.value_json)
        if out["exit"] or time.monotonic() > deadline:
            return out
        time.sleep(0.1)


@pytest.mark.slow
def test_pac_sweep_trial_runs_as_the_agent_launches_it(tmp_path, monkeypatch):
    """One trial, offline, in the environment `wandb agent` gives it (sweep and run ids, the
    parameter file): the swept λ and amount reach calibrate and pruning, and the agent's run
    holds the sweep's metric, equal to the pipeline's summary."""
    sweep = _load("pac_friedman.yml")
    lam, amount = 0.05, 0.6
    argv = agent_argv(sweep, {"lam": lam, "amount": amount})
    argv += ["--epochs-scale=0.02", "--set=data.init_args.n_source=300"]  # a tiny budget
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"lam": {"value": lam}, "amount": {"value": amount}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    env.update(
        HOME=str(tmp_path),
        PYTHONPATH=str(ROOT),
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_SWEEP_ID="sweep01",
        WANDB_RUN_ID="trial01",
        WANDB_SWEEP_PARAM_PATH=str(params),
        WANDB_DATA_DIR=str(tmp_path / "wandb_data"),
    )
    done = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "runs" / "pac" / "friedman-sweep"

    masks = load_masks(out / "source.ckpt")
    total = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(amount * total)
    monkeypatch.chdir(tmp_path)  # the resolved paths are relative to the trial's working directory
    resolved = yaml.safe_load((out / "config_calibrate.yaml").read_text())  # as fitted
    for key in ("ckpt_path", "weights_only"):  # `fit` options: not taken without a subcommand
        resolved.pop(key, None)
    (tmp_path / "calibrate.yaml").write_text(yaml.safe_dump(resolved))
    args = ["--config", str(tmp_path / "calibrate.yaml"), "--trainer.logger=false"]
    cli = PacTrsCLI(args=args, run=False)
    (mask_cb,) = [cb for cb in cli.trainer.callbacks if isinstance(cb, GradientMask)]
    assert (mask_cb.phase, mask_cb.lam) == ("calibrate", lam)

    (run_path,) = (out / "wandb").glob("offline-run-*")  # stages and summary: the agent's run
    records = _run_records(run_path)
    assert (records["run"].run_id, records["run"].sweep_id) == ("trial01", "sweep01")
    summary = json.loads((out / "summary.json").read_text())
    expected = summary["stages"]["PAC-Net (calibrate)"]["target"]["val/mse"]  # validation
    assert math.isclose(records["summary"][sweep["metric"]["name"]], expected, rel_tol=1e-6)
    assert torch.isfinite(torch.tensor(expected))
