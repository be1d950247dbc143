"""The PAC-Net pipeline end to end through the ``pl-pac-trs pac`` entry, on tiny budgets."""

import json
import shutil

import pytest
import torch
import yaml

from pl_pac_trs.apps.cli import main as cli_main
from pl_pac_trs.apps.pipeline import StageOverrides, fit_stage
from pl_pac_trs.configs import config_dir
from pl_pac_trs.pac import load_masks

TINY = {
    "friedman": ["--set", "data.init_args.n_source=300", "--set", "data.init_args.n_val=100"],
    "digits": ["--set", "data.init_args.target_per_class=3"],
    "duffing": [
        *("--set", "data.init_args.num_val=2", "--set", "data.init_args.num_test=3"),
        *("--set", "data.init_args.test_steps=40", "--set", "data.init_args.test_span=4.0"),
    ],
}
METRIC = {"friedman": "test/mse", "digits": "test/acc", "duffing": "test/traj_mse"}


@pytest.mark.slow
@pytest.mark.parametrize("task", ["friedman", "digits", "duffing"])
def test_pipeline_all_stages(tmp_path, task, capsys):
    out = tmp_path / task
    argv = [
        "pac",
        task,
        "--out",
        str(out),
        "--no-wandb",
        "--epochs-scale",
        "0.1",
        "--baselines",
        "all",
        *TINY[task],
    ]
    assert cli_main(argv) == 0
    for name in (
        "source_dense",
        "source",
        "calibrate",
        "finetune",
        "l2sp",
        "scratch",
        "linear_probe",
        "lora",
    ):
        assert (out / f"{name}.ckpt").is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    stages = summary["stages"]
    pac = stages["PAC-Net (calibrate)"]
    assert pac["source_outputs_identical"] is True
    metric = METRIC[task]
    assert pac["source"][metric] == stages["source (pruned + allocated)"]["source"][metric]
    assert metric in pac["target"] and metric in stages["finetune"]["target"]
    # LoRA with its adapters disabled is the dense source model it started from
    dense = stages["source (dense, whole source budget)"]["source"][metric]
    assert stages["lora"]["source_outputs_identical"] is True
    assert stages["lora"]["source"][metric] == dense
    # a scratch model has the source output space except on digits (new 4-class head)
    assert ("source" in stages["scratch"]) == (task != "digits")
    masks = load_masks(out / "source.ckpt")
    source_config = yaml.safe_load((out / "config_source.yaml").read_text())
    (amount,) = [
        c["init_args"]["amount"]
        for c in source_config["trainer"]["callbacks"]
        if c["class_path"].endswith("MagnitudePruning")
    ]
    assert sum(int((~m).sum()) for m in masks.values()) == round(
        amount * sum(m.numel() for m in masks.values())
    )
    state = torch.load(out / "calibrate.ckpt", weights_only=False)["state_dict"]
    source = torch.load(out / "source.ckpt", weights_only=False)["state_dict"]
    for name, mask in masks.items():
        if state[name].shape == mask.shape:
            assert torch.equal(state[name][mask], source[name][mask]), name
    assert "PAC-Net (calibrate)" in (out / "summary.md").read_text()
    assert "bit-identical" in capsys.readouterr().out


def test_standalone_allocate_config(tmp_path):
    """configs/pac/friedman/allocate.yaml from a model pruned in a separate fit."""
    cdir = config_dir("pac/friedman")
    data = ["--data.init_args.n_source=200"]
    overrides = StageOverrides(
        out=tmp_path, root_dir=tmp_path / "prune", epochs_scale=0.05, wandb=False
    )
    fit_stage(cdir / "prune.yaml", overrides, data)  # writes tmp_path/source_pruned.ckpt
    overrides = StageOverrides(
        out=tmp_path, root_dir=tmp_path / "allocate", epochs_scale=0.1, wandb=False
    )
    run = fit_stage(cdir / "allocate.yaml", overrides, data)
    masks = load_masks(tmp_path / "source_pruned.ckpt")
    pruned = torch.load(tmp_path / "source_pruned.ckpt", weights_only=False)["state_dict"]
    params = dict(run.model.named_parameters())
    for name, mask in masks.items():
        w = params[name].detach()
        assert torch.equal(w[~mask], torch.zeros_like(w[~mask]))
        assert not torch.equal(w[mask], pruned[name][mask])


def test_stage_overrides_change_only_what_they_name(tmp_path):
    """The pipeline's changes to a parsed stage config: epochs scaled, checkpoint paths moved
    into the output directory, a named callback argument set; nothing else touched."""
    from jsonargparse import dict_to_namespace

    config = dict_to_namespace(
        {
            "model": {"init_args": {"trs_weight": 10.0}},
            "trainer": {
                "max_epochs": 30,
                "logger": {"class_path": "WandbLogger", "init_args": {"save_dir": "runs"}},
                "callbacks": [
                    {
                        "class_path": "pl_pac_trs.pac.LoadSourceWeights",
                        "init_args": {"checkpoint": "runs/pac/x/source.ckpt", "skip": ["head"]},
                    },
                    {
                        "class_path": "pl_pac_trs.pac.MagnitudePruning",
                        "init_args": {
                            "amount": 0.8,
                            "epoch": 10,
                            "dense_checkpoint": "runs/pac/x/source_dense.ckpt",
                        },
                    },
                    {"class_path": "pl_pac_trs.pac.GradientMask", "init_args": {"lam": 0.01}},
                    {
                        "class_path": "pl_pac_trs.pac.FinalCheckpoint",
                        "init_args": {"path": "runs/pac/x/calibrate.ckpt"},
                    },
                ],
            },
        }
    )
    overrides = StageOverrides(
        out=tmp_path,
        root_dir=tmp_path / "cal",
        epochs_scale=0.5,
        callback_args={"GradientMask": {"lam": 0.0}},
    )
    overrides.apply(config)
    load, prune, mask, final = config.trainer.callbacks
    assert config.trainer.max_epochs == 15
    assert load.init_args.checkpoint == str(tmp_path / "source.ckpt")
    assert load.init_args.skip == ["head"]
    assert prune.init_args.epoch == 5 and prune.init_args.amount == 0.8
    assert prune.init_args.dense_checkpoint == str(tmp_path / "source_dense.ckpt")
    assert mask.init_args.lam == 0.0
    assert final.init_args.path == str(tmp_path / "calibrate.ckpt")
    assert config.model.init_args.trs_weight == 10.0  # the TRS weight is not PAC's lam
    assert config.trainer.logger.init_args.save_dir == str(tmp_path)
    with pytest.raises(ValueError, match="no L2SP callback"):
        StageOverrides(tmp_path, tmp_path, callback_args={"L2SP": {"lam": 1.0}}).apply(config)
    dense = StageOverrides(tmp_path, tmp_path, drop_callbacks=("MagnitudePruning", "GradientMask"))
    dense.apply(config)
    names = [cb.class_path.rsplit(".", 1)[-1] for cb in config.trainer.callbacks]
    assert names == ["LoadSourceWeights", "FinalCheckpoint"]


def test_pipeline_errors(tmp_path, capsys):
    assert cli_main(["pac", "nope", "--out", str(tmp_path), "--no-wandb"]) == 2
    assert "no stage configs for task 'nope'" in capsys.readouterr().err
    assert cli_main(["pac", "friedman", "--baselines", "bogus", "--no-wandb"]) == 2
    assert "unknown baseline 'bogus'" in capsys.readouterr().err
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.slow
def test_stage_by_stage_through_the_cli(tmp_path, monkeypatch):
    """The shipped configs chain by their checkpoint paths: prune -> allocate -> calibrate, and
    source (prune + allocate in one fit) -> calibrate, with plain ``pl-pac-trs fit`` runs."""
    cdir = config_dir("pac/friedman").resolve()
    monkeypatch.chdir(tmp_path)  # the configs write runs/pac/friedman/*.ckpt relative to here
    tiny = [
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--data.init_args.n_source=200",
        "--data.init_args.n_val=50",
    ]
    runs = tmp_path / "runs" / "pac" / "friedman"

    def fit(stage, *extra):
        assert cli_main(["fit", "--config", str(cdir / f"{stage}.yaml"), *tiny, *extra]) == 0

    fit("prune", "--trainer.max_epochs=2")
    pruned = load_masks(runs / "source_pruned.ckpt")
    assert (runs / "source_dense.ckpt").is_file()
    fit("allocate", "--trainer.max_epochs=2")
    allocated = torch.load(runs / "source.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(load_masks(runs / "source.ckpt")[k], m) for k, m in pruned.items())
    fit("calibrate", "--trainer.max_epochs=2")
    calibrated = torch.load(runs / "calibrate.ckpt", weights_only=False)["state_dict"]
    for name, mask in pruned.items():
        assert torch.equal(calibrated[name][mask], allocated[name][mask]), name
        assert (calibrated[name][~mask] != 0).any(), name
    (runs / "source.ckpt").unlink()
    fit("source", "--trainer.max_epochs=31")  # prunes at the start of epoch 30
    assert load_masks(runs / "source.ckpt").keys() == pruned.keys()


@pytest.mark.slow
def test_rerun_resumes_finished_stages_and_reruns_what_changed(tmp_path, capsys):
    """A killed run (simulated: a stage's checkpoint removed, a half-written file left) re-run
    into the same directory: finished stages with the same inputs are resumed, the rest re-run;
    other overrides re-run everything; --fresh starts clean. Each case is said in one line."""
    out = tmp_path / "friedman"
    base = ["pac", "friedman", "--out", str(out), "--no-wandb", "--epochs-scale", "0.02"]
    base += ["--baselines", "finetune", *TINY["friedman"]]

    def run(*extra):
        assert cli_main([*base, *extra]) == 0
        lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("pac pipeline")]
        assert len(lines) == 1
        return lines[0], json.loads((out / "summary.json").read_text())

    line, first = run()
    assert "new run" in line
    for stage in ("source", "calibrate", "finetune"):
        text = (out / f"config_{stage}.yaml").read_text()
        assert "--data.init_args.n_source=300" in text.splitlines()[0]  # the overrides, recorded
        assert "n_source: 300" in text  # and applied in the resolved config
    calibrated = (out / "calibrate.ckpt").read_bytes()
    line, again = run()
    assert "resumed: source, calibrate, dense, finetune" in line and "ran: nothing" in line
    assert again["stages"] == first["stages"]
    (out / "calibrate.ckpt").unlink()  # killed before calibrate finished writing
    (out / "calibrate.ckpt.partial").write_bytes(b"half a checkpoint")
    line, resumed = run()
    assert "resumed: source, dense, finetune" in line and "ran: calibrate" in line
    assert not list(out.glob("*.partial"))
    assert (out / "calibrate.ckpt").read_bytes() == calibrated  # same inputs, same result
    assert resumed["stages"] == first["stages"]
    line, _ = run("--set", "seed_everything=3")
    assert "ran every stage again" in line
    line, _ = run("--fresh")
    assert "started clean" in line


@pytest.mark.slow
def test_equal_source_budgets_validation_only_and_seeds(tmp_path, capsys):
    """Baselines start from a dense model trained for the source stage's whole budget;
    --val-only never evaluates a test split; --seeds reports mean ± std of the seeds' runs."""
    out = tmp_path / "friedman"
    argv = ["pac", "friedman", "--out", str(out), "--no-wandb", "--epochs-scale", "0.05"]
    argv += ["--baselines", "finetune", "--val-only", "--seeds", "2", *TINY["friedman"]]
    assert cli_main(argv) == 0
    result = json.loads((out / "summary_seeds.json").read_text())
    seeds = [json.loads((out / f"seed{k}" / "summary.json").read_text()) for k in (0, 1)]
    for summary in seeds:
        keys = [
            k
            for row in summary["stages"].values()
            for s in ("target", "source")
            for k in row.get(s, {})
        ]
        assert keys and all(k.startswith("val/") for k in keys), keys
    values = [s["stages"]["finetune"]["target"]["val/mse"] for s in seeds]
    cell = result["stages"]["finetune"]["target"]["val/mse"]
    assert cell["values"] == values
    assert cell["mean"] == pytest.approx(sum(values) / 2)
    assert cell["std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert values[0] != values[1]  # the seeds differ
    assert result["source_outputs_identical"] is True
    assert "± " in (out / "summary_seeds.md").read_text()
    seed0 = out / "seed0"
    dense = torch.load(seed0 / "dense.ckpt", weights_only=False)
    source = torch.load(seed0 / "source.ckpt", weights_only=False)
    at_pruning = torch.load(seed0 / "source_dense.ckpt", weights_only=False)
    assert dense["global_step"] == source["global_step"] > at_pruning["global_step"]
    assert not any(k.startswith("pac") or "Mask" in k for k in dense.get("callbacks", {}))
    config = (seed0 / "config_finetune.yaml").read_text()
    assert str(seed0 / "dense.ckpt") in config and "source_dense.ckpt" not in config


def test_pipeline_digits_resnet(tmp_path):
    """The over-parameterised image task: PAC-Net keeps the ResNet's source model bit-exactly,
    BatchNorm included: with calibrate training it (``train_shared``, given here as a callback
    argument: the shipped config keeps it frozen), source_view puts the source's weights and
    running statistics back. LoRA (peft adapters on every convolution) keeps it too: with the
    adapters disabled it is the dense source model, batch-norm statistics included."""
    from pl_pac_trs.apps.pipeline import run_pipeline

    out = tmp_path / "digits_resnet"
    run_pipeline(
        "digits_resnet",
        out,
        baselines=("finetune", "lora"),
        epochs_scale=0.07,
        wandb=False,
        extra_args=["--data.init_args.target_per_class=3"],
        callback_args={"calibrate": {"GradientMask": {"train_shared": True}}},
    )
    stages = json.loads((out / "summary.json").read_text())["stages"]
    pac = stages["PAC-Net (calibrate)"]
    assert pac["source_outputs_identical"] is True
    assert pac["source"]["test/acc"] == stages["source (pruned + allocated)"]["source"]["test/acc"]
    assert "test/acc" in stages["finetune"]["target"]
    lora = stages["lora"]
    assert lora["source_outputs_identical"] is True
    dense = stages["source (dense, whole source budget)"]["source"]["test/acc"]
    assert lora["source"]["test/acc"] == dense
    lora_state = torch.load(out / "lora.ckpt", weights_only=True)["state_dict"]
    dense_state = torch.load(out / "dense.ckpt", weights_only=True)["state_dict"]
    for name, value in dense_state.items():
        if not name.startswith("head."):  # the target head is new (4 classes)
            key = name if name in lora_state else name.replace(".weight", ".base_layer.weight")
            assert torch.equal(lora_state[key], value), name
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in lora_state.items())
    masks = load_masks(out / "source.ckpt")
    source = torch.load(out / "source.ckpt", weights_only=False)["state_dict"]
    state = torch.load(out / "calibrate.ckpt", weights_only=False)["state_dict"]
    # every convolution's weight and the head's, 50 % of them pruned (global ranking)
    convs = [k for k, v in source.items() if k.endswith(".weight") and v.dim() == 4]
    assert sorted(masks) == sorted([*convs, "head.weight"])
    total = sum(m.numel() for m in masks.values())
    assert total == 692_512 + 128 * 6  # ResNetClassifier(widths=(32, 64, 128)): see its tests
    source_config = yaml.safe_load((out / "config_source.yaml").read_text())
    (amount,) = [
        c["init_args"]["amount"]
        for c in source_config["trainer"]["callbacks"]
        if c["class_path"].endswith("MagnitudePruning")
    ]
    assert amount == 0.5  # chosen on validation at the full budget (the paper: 0.8)
    assert sum(int((~m).sum()) for m in masks.values()) == round(amount * total)
    for name in convs:
        mask = masks[name]
        assert torch.equal(state[name][mask], source[name][mask]), name
    assert any(bool((state[n][~masks[n]] != 0).any()) for n in convs)  # calibrate trained
    # BatchNorm weights, biases and running statistics trained in calibrate (train_shared);
    # the source outputs above were still bit-identical: source_view restored them
    batch_norm = [k for k in source if ".bn" in k or ".stem.1." in k or ".shortcut.1." in k]
    assert len(batch_norm) == 15 * 5  # 15 BatchNorm2d: weight, bias, mean, var, batches
    assert any(not torch.equal(state[name], source[name]) for name in batch_norm)


def test_paper_settings_reach_the_stage_configs(tmp_path, capsys):
    """--settings paper: pruning 0.8 layer-wise, calibrate λ=0.01 on the sum, shared frozen.
    Then the source hand-off given to calibrate as ``--ckpt_path``: exit 2 naming it, nothing
    written."""

    out = tmp_path / "paper"
    argv = ["pac", "friedman", "--out", str(out), "--no-wandb", "--epochs-scale", "0.02"]
    argv += ["--baselines", "none", "--settings", "paper", *TINY["friedman"]]
    assert cli_main(argv) == 0

    def callback(stage, name):
        config = yaml.safe_load((out / f"config_{stage}.yaml").read_text())
        (cb,) = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith(name)]
        return cb["init_args"]

    prune = callback("source", "MagnitudePruning")
    assert (prune["amount"], prune["pruning_fn"]) == (0.8, "layer")
    mask = callback("calibrate", "GradientMask")
    assert (mask["lam"], mask["penalty_norm"], mask["train_shared"]) == (0.01, "sum", False)
    masks = load_masks(out / "source.ckpt")
    for name, m in masks.items():  # layer-wise: every tensor keeps its own 20%
        assert int(m.sum()) == m.numel() - round(0.8 * m.numel()), name
    before = (out / "calibrate.ckpt").read_bytes()
    capsys.readouterr()
    argv = ["fit", "--config", str(out / "config_calibrate.yaml")]
    assert cli_main([*argv, "--ckpt_path", str(out / "source.ckpt")]) == 2
    err = capsys.readouterr().err
    assert "source.ckpt' was written by another stage" in err and len(err.splitlines()) <= 3
    assert (out / "calibrate.ckpt").read_bytes() == before
