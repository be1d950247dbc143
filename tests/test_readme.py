"""Every ``pl-pac-trs`` command in the README's shell examples runs as written.

The commands are read from the README's ```` ```bash ```` blocks, in order, and run in one working
directory (so the resume examples find the runs the earlier examples made), each with a tiny budget
appended (later overrides win) and the README's placeholders filled in. A README command this test
does not know fails it: a new example gets a budget here, or a stated reason to skip.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from cli_run import ASSETS, ROOT

from pl_pac_trs.apps.cli import main

README = ROOT / "README.md"

#: Appended to every ``fit``: two epochs that validate and checkpoint, on less data.
TINY_FIT = [
    "--trainer.max_epochs=2",
    "--trainer.check_val_every_n_epoch=1",
    "--checkpoint.every_n_epochs=1",
    "--trainer.enable_progress_bar=false",
    "--data.init_args.num_train=4",
]
#: Appended to ``--ckpt_path=last``: one epoch more than the run it resumes.
TINY_RESUME = ["--trainer.max_epochs=3", "--trainer.enable_progress_bar=false"]
#: Commands the test cannot run here, with the reason.
SKIP = {
    "pl-pac-trs fit --config configs/trs/exp1/trs_oden.yaml --trainer.accelerator=gpu "
    "--trainer.devices=4 --trainer.strategy=ddp": (
        torch.cuda.device_count() < 4,
        "needs 4 GPUs (the CPU DDP path is tests/trs/test_ddp.py)",
    ),
}


def readme_commands(text: str) -> list[str]:
    """The ``pl-pac-trs`` commands of the README's bash blocks, continuation lines joined and
    comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("pl-pac-trs "):
                commands.append(" ".join(line.split()))
    return commands


def _prepare(tmp_path: Path) -> None:
    """The working directory of a user in a checkout: ``configs/`` and the files the examples
    name (``base.yaml``, ``my_overrides.yaml``)."""
    (tmp_path / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    (tmp_path / "base.yaml").write_text((ROOT / "configs/trs/exp1/quick/oden.yaml").read_text())
    (tmp_path / "my_overrides.yaml").write_text("model:\n  init_args:\n    trs_weight: 1.0\n")


def _cheap(args: list[str], tmp_path: Path) -> list[str]:
    if "--ckpt_path=last" in args:
        return [*args, *TINY_RESUME]
    if "--ckpt_path" in args:  # the placeholder: a checkpoint an earlier example wrote
        i = args.index("--ckpt_path")
        (last,) = (tmp_path / "runs/trs/exp1/trs_oden").glob("version_*/checkpoints/last.ckpt")
        args = [*args[: i + 1], str(last), *args[i + 2 :]]
        return [*args, "--trainer.enable_progress_bar=false", "--data.init_args.num_test=2"]
    if args[0] == "fit" and "--print_config" not in args:
        given = {a.split("=", 1)[0] for a in args}
        if "--checkpoint.every_n_epochs" in given:  # the override example runs as written
            return [*args, *(a for a in TINY_FIT if a.split("=", 1)[0] not in given)]
        return [*args, *TINY_FIT]
    return args


def test_the_readme_has_the_examples_this_test_runs():
    commands = readme_commands(README.read_text())
    assert any("--ckpt_path=last" in c and "--run_dir" not in c for c in commands)
    assert any("--ckpt_path=last" in c and "--run_dir" in c for c in commands)
    assert any("--checkpoint.every_n_epochs" in c for c in commands)


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path, monkeypatch, capsys):
    """In this process (``main`` is the console script's entry point), one after the other."""
    _prepare(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "disabled")  # W&B: tests/test_run_dirs.py
    monkeypatch.syspath_prepend(str(ASSETS))
    threads = torch.get_num_threads()
    ran = []
    for command in readme_commands(README.read_text()):
        skip, _reason = SKIP.get(command, (False, ""))
        if skip:
            continue
        args = _cheap(command.split()[1:], tmp_path)
        try:
            code = main(args)
        except SystemExit as exc:  # --help, --print_config
            code = exc.code
        torch.set_num_threads(threads)
        out = capsys.readouterr()
        assert code in (0, None), f"{command}\n{out.err[-3000:]}"
        if "--ckpt_path=last" in args:
            assert "resuming " in out.out, command
        ran.append(command)
    assert len(ran) >= 10, ran
