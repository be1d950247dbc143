"""Shipped configs by name: ``pl-pac-trs configs`` and ``--config NAME`` from any directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pl_pac_trs.apps.cli import main
from pl_pac_trs.apps.config_commands import resolve_config_args
from pl_pac_trs.configs import config_dir, config_path, configs_root, list_configs

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_configs_are_the_repository_configs():
    assert configs_root().resolve() == (ROOT / "configs").resolve()
    expected = sorted(
        p.relative_to(ROOT / "configs").with_suffix("").as_posix()
        for p in (ROOT / "configs").rglob("*.yaml")
    )
    assert list_configs() == expected
    assert list_configs("pac/friedman") == [n for n in expected if n.startswith("pac/friedman/")]
    assert config_path("trs/exp1/oden.yaml") == config_path("trs/exp1/oden")
    assert config_dir("pac/digits") == configs_root() / "pac" / "digits"


@pytest.mark.parametrize("name", ["trs/exp1/nope", "../pyproject", "", "trs/exp1"])
def test_unknown_names_are_refused_naming_neighbours(name):
    with pytest.raises(FileNotFoundError, match="no shipped config named"):
        config_path(name)


def test_config_args_resolve_names_and_leave_files_and_inline_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "mine.yaml"
    own.write_text("seed_everything: 1\n")
    args = ["fit", "-c", "trs/exp1/oden", "--config=pac/friedman/source", "--config", str(own)]
    args += ["--config", "{seed_everything: 2}", "--model.lr", "trs/exp1/oden"]
    resolved = resolve_config_args(args)
    assert resolved[2] == str(config_path("trs/exp1/oden"))
    assert resolved[3] == "--config=" + str(config_path("pac/friedman/source"))
    assert resolved[5] == str(own) and resolved[7] == "{seed_everything: 2}"
    assert resolved[9] == "trs/exp1/oden"  # not a --config value: untouched
    # a file of that name in the working directory wins over the shipped config
    (tmp_path / "trs" / "exp1").mkdir(parents=True)
    (tmp_path / "trs" / "exp1" / "oden").write_text("seed_everything: 3\n")
    assert resolve_config_args(["-c", "trs/exp1/oden"]) == ["-c", "trs/exp1/oden"]


def test_fit_print_config_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "trs/exp4/quick/trs_oden", "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["time_weighted"] is True
    assert printed["trainer"]["default_root_dir"] == "runs/trs/exp4/quick/trs_oden"


def test_configs_command_lists_shows_and_copies(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["configs"]) == 0
    assert capsys.readouterr().out.split() == list_configs()
    assert main(["configs", "list", "pac/duffing"]) == 0
    assert capsys.readouterr().out.split() == list_configs("pac/duffing")
    assert main(["configs", "show", "trs/exp1/oden"]) == 0
    assert capsys.readouterr().out == config_path("trs/exp1/oden").read_text()
    assert main(["configs", "path"]) == 0
    assert Path(capsys.readouterr().out.strip()) == configs_root()

    assert main(["configs", "copy", "pac/friedman", "mine"]) == 0
    copied = sorted(p.name for p in (tmp_path / "mine" / "friedman").iterdir())
    assert copied == sorted(p.name for p in config_dir("pac/friedman").glob("*.yaml"))
    assert main(["configs", "copy", "trs/exp2/oden"]) == 0
    assert (tmp_path / "oden.yaml").read_text() == config_path("trs/exp2/oden").read_text()


def test_configs_command_bad_input_exits_2_and_keeps_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "oden.yaml"
    mine.write_text("my edits\n")
    assert main(["configs", "copy", "trs/exp2/oden"]) == 2
    err = capsys.readouterr().err
    assert "oden.yaml" in err and "--force" in err and len(err.strip().splitlines()) <= 3
    assert mine.read_text() == "my edits\n"
    assert main(["configs", "copy", "pac/nope"]) == 2
    err = capsys.readouterr().err
    assert "pac/nope" in err and "pac/friedman" in err
    assert main(["configs", "show", "trs/exp9/oden"]) == 2
    assert "trs/exp9/oden" in capsys.readouterr().err
    assert main(["configs", "copy", "trs/exp2/oden", "--force"]) == 0
    assert mine.read_text() == config_path("trs/exp2/oden").read_text()


@pytest.mark.parametrize("name", ["trs/exp3/hoden", "pac/digits/source"])
def test_shipped_configs_checkpoint_last_and_periodically(tmp_path, monkeypatch, name):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from pl_pac_trs.apps.cli import PacTrsCLI

    monkeypatch.chdir(tmp_path)
    base = ["--config", str(config_path(name)), "--trainer.logger=false"]
    trainer = PacTrsCLI(args=base, run=False).trainer
    (ckpt,) = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert ckpt.save_last is True and ckpt._save_on_train_epoch_end is True
    # no folder of its own: it follows the run (the CLI's run directory, tests/test_run_dirs.py)
    assert ckpt.dirpath is None
    assert trainer.max_epochs % ckpt._every_n_epochs == 0  # the last epoch is saved too
    off = PacTrsCLI(args=[*base, "--trainer.enable_checkpointing=false"], run=False).trainer
    assert not [c for c in off.callbacks if isinstance(c, ModelCheckpoint)]
    assert len(off.callbacks) == len(trainer.callbacks) - 1
