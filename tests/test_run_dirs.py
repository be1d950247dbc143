"""Every run has its own directory: checkpoints follow the run, two runs of one config at once
never touch each other's files, ``--ckpt_path=last`` resumes the named run and continues its W&B
run."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cli_run import ASSETS, clean_env, run_cli

from pl_pac_trs.apps import runs
from pl_pac_trs.apps.cli import main
from pl_pac_trs.serialization import load_torch_file

TINY = str(ASSETS / "tiny.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
#: No logger: the run's artefacts (config.yaml) go to its directory (W&B: tests below).
NO_LOGGER = "--trainer.logger=false"


def test_claimed_directories_are_distinct_under_concurrency(tmp_path):
    claimed: list[Path] = []
    lock = threading.Lock()

    def claim() -> None:
        path = runs.claim_run_dir(tmp_path / "root")
        with lock:
            claimed.append(path)

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.name for p in claimed) == sorted(f"version_{n}" for n in range(16))
    assert runs.claim_run_dir(tmp_path / "root").name == "version_16"


def test_last_checkpoint_is_the_newest_last_file(tmp_path):
    folder = tmp_path / "run" / runs.CHECKPOINTS
    assert runs.last_checkpoint(tmp_path / "run") is None
    folder.mkdir(parents=True)
    (folder / "epoch=1-step=2.ckpt").write_bytes(b"x")
    assert runs.last_checkpoint(tmp_path / "run") is None
    (folder / "last.ckpt").write_bytes(b"x")
    assert runs.last_checkpoint(tmp_path / "run") == folder / "last.ckpt"
    assert runs.resumable_runs(tmp_path) == [tmp_path / "run"]


def _fit(tmp_path, *extra: str) -> int:
    root = tmp_path / "root"
    args = [
        "fit",
        "--config",
        TINY,
        *QUIET,
        NO_LOGGER,
        f"--trainer.default_root_dir={root}",
        *extra,
    ]
    try:
        return main(args)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(ASSETS))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "root"


def test_each_fit_gets_a_new_directory_with_its_checkpoints(tiny, tmp_path, capsys):
    assert _fit(tmp_path, "--trainer.max_epochs=2", "--checkpoint.save_last=true") == 0
    assert _fit(tmp_path, "--trainer.max_epochs=2", "--checkpoint.save_last=true") == 0
    first, second = tiny / "version_0", tiny / "version_1"
    for run in (first, second):
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert (run / "config.yaml").is_file()  # the run's artefacts beside its checkpoints
    assert sorted(p.name for p in tiny.iterdir()) == ["version_0", "version_1"]
    out = capsys.readouterr().out
    assert f"run directory {first} (to resume it: --run_dir={first} --ckpt_path=last)" in out

    # two runs hold a last checkpoint: "last" alone is ambiguous, and nothing is created
    capsys.readouterr()
    assert _fit(tmp_path, "--trainer.max_epochs=3", "--ckpt_path=last") == 2
    err = capsys.readouterr().err
    assert "2 runs" in err and "--run_dir" in err and len(err.strip().splitlines()) <= 3
    assert sorted(p.name for p in tiny.iterdir()) == ["version_0", "version_1"]

    # the named one resumes in its own directory; the other is not touched
    before = {p: p.stat().st_mtime_ns for p in second.rglob("*")}
    resume = [f"--run_dir={first}", "--ckpt_path=last", "--checkpoint.save_last=true"]
    capsys.readouterr()
    assert _fit(tmp_path, "--trainer.max_epochs=3", *resume) == 0
    assert f"resuming {first} " in capsys.readouterr().out
    assert load_torch_file(first / "checkpoints" / "last.ckpt", what="last")["epoch"] == 2
    assert {p: p.stat().st_mtime_ns for p in second.rglob("*")} == before
    assert sorted(p.name for p in tiny.iterdir()) == ["version_0", "version_1"]


def test_run_dir_of_an_earlier_run_is_not_overwritten(tiny, tmp_path, capsys):
    assert _fit(tmp_path, "--trainer.max_epochs=1", "--checkpoint.save_last=true") == 0
    run = tiny / "version_0"
    assert _fit(tmp_path, "--trainer.max_epochs=1", f"--run_dir={run}") == 2
    assert "holds the checkpoints of an earlier run" in capsys.readouterr().err
    assert _fit(tmp_path, f"--run_dir={tmp_path / 'none'}", "--ckpt_path=last") == 2
    assert "holds no last checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_a_setup_check_fails_before_any_run_directory_or_wandb_run(tmp_path, monkeypatch, capsys):
    """A field of the wrong state_dim: exit 2, one short message, nothing written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    config = Path(__file__).resolve().parents[1] / "configs/trs/exp1/quick/oden.yaml"
    args = ["fit", "--config", str(config), *QUIET, "--trainer.max_epochs=1"]
    field = "--model.init_args.vector_field.init_args.state_dim=3"
    assert main([*args, field]) == 2
    err = capsys.readouterr().err
    assert "state_dim=3 but the data has state dimension 2" in err
    assert len(err.strip().splitlines()) <= 3
    assert list(tmp_path.iterdir()) == []  # no run directory, no W&B folder


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pl_pac_trs", *args],
        cwd=cwd,
        env=clean_env(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out + err


@pytest.mark.slow
def test_two_concurrent_runs_of_a_shipped_config_keep_and_resume_their_own(tmp_path):
    """Two seeds of one shipped config at once, both killed, both resumed at once by name: each
    resumes its own checkpoint in its own directory and continues its own (offline) W&B run."""
    config = "trs/exp1/quick/oden"
    common = ["fit", "--config", config, "--trainer.max_epochs=4", "--checkpoint.every_n_epochs=2"]
    common += ["--trainer.enable_progress_bar=false", "--data.init_args.num_train=4"]
    kill = ["--trainer.callbacks+=tiny_user_module.KillAtEpoch", "--trainer.callbacks.epoch=3"]
    seeds = (1, 2)
    procs = [_start([*common, f"--seed_everything={s}", *kill], tmp_path) for s in seeds]
    for proc in procs:
        code, text = _finish(proc)
        assert code == -signal.SIGKILL, text[-3000:]

    root = tmp_path / "runs" / config
    run_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    assert [p.name for p in run_dirs] == ["version_0", "version_1"]
    ids = {p: runs.read_run_record(p)["wandb_id"] for p in run_dirs}
    assert len(set(ids.values())) == 2
    for run in run_dirs:
        last = load_torch_file(run / "checkpoints" / "last.ckpt", what="last")
        assert last["epoch"] == 1  # saved at the end of epoch 2, killed in epoch 3

    # "last" alone cannot tell them apart
    out = run_cli([*common, "--ckpt_path=last"], cwd=tmp_path)
    assert out.returncode == 2 and "--run_dir" in out.stderr, out.stderr[-2000:]

    procs = [
        _start(
            [*common, f"--seed_everything={s}", f"--run_dir={run}", "--ckpt_path=last"], tmp_path
        )
        for s, run in zip(seeds, run_dirs, strict=True)
    ]
    for proc, run in zip(procs, run_dirs, strict=True):
        code, text = _finish(proc)
        assert code == 0, text[-3000:]
        restored = run / "checkpoints" / "last.ckpt"
        assert f"Restored all states from the checkpoint at {restored}" in text
    assert sorted(p.name for p in root.iterdir()) == ["version_0", "version_1"]
    wandb_dirs = sorted((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    for run in run_dirs:
        assert load_torch_file(run / "checkpoints" / "last.ckpt", what="last")["epoch"] == 3
        # the resumed fit logged to the killed one's W&B run: two offline parts, one run id
        assert len([d for d in wandb_dirs if d.name.endswith(f"-{ids[run]}")]) == 2
        assert runs.read_run_record(run)["wandb_id"] == ids[run]
        files = next(d for d in wandb_dirs if d.name.endswith(ids[run])) / "files"
        assert f"id: {ids[run]}" in (files / "config.yaml").read_text()
        # with W&B on, the run's own directory holds its config too (test --ckpt_path finds
        # it): the resumed fit's, which no longer kills itself
        own = (run / "config.yaml").read_text()
        assert f"id: {ids[run]}" in own and "KillAtEpoch" not in own


def test_a_checkpoint_folder_named_by_the_user_keeps_lightnings_last(tiny, tmp_path):
    """``--checkpoint.dirpath``: checkpoints go there, and ``last`` is the newest one there."""
    folder = tmp_path / "mine"
    ckpt = [f"--checkpoint.dirpath={folder}", "--checkpoint.save_last=true"]
    assert _fit(tmp_path, "--trainer.max_epochs=2", *ckpt) == 0
    assert _fit(tmp_path, "--trainer.max_epochs=3", *ckpt, "--ckpt_path=last") == 0
    assert load_torch_file(folder / "last.ckpt", what="last")["epoch"] == 2
    assert not list(tiny.rglob("*.ckpt"))  # the run directories hold none
