"""The error contract, table-driven: every bad input ends with exit code 2 and at most three lines
of stderr that name the culprit, before any training, and nothing already on disk changes.

Rows run the CLI in-process (``main([...])``); a few run the console entry in a subprocess.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pl_pac_trs.apps.cli import main

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(__file__).parent / "apps" / "cli_assets"
TINY = str(ASSETS / "tiny.yaml")
EXP1 = str(ROOT / "configs/trs/exp1/quick/trs_oden.yaml")
EXP5 = str(ROOT / "configs/trs/exp5/quick/oden.yaml")
CALIBRATE = str(ROOT / "configs/pac/friedman/calibrate.yaml")
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false"]
MARKER = "pwned.txt"


class Evil:
    """Unpickling this writes a marker file: proof that a loader ran code from a file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Pre-existing files the bad inputs must leave untouched, and the bad files themselves."""
    d = tmp_path_factory.mktemp("bad_inputs")
    work = d / "work"  # the current directory of every row
    out = work / "out"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("an earlier run's output")
    (work / "cache").mkdir()
    (work / "cache" / "other.txt").write_text("cached")
    sys.path.insert(0, str(ASSETS))
    try:
        fit_dir = f"--trainer.default_root_dir={d / 'fit'}"
        code = main(["fit", "--config", TINY, *QUIET, "--trainer.max_epochs=1", fit_dir])
    finally:
        sys.path.remove(str(ASSETS))
    assert code == 0
    (good,) = (d / "fit").rglob("*.ckpt")
    ckpt = torch.load(good, weights_only=True)
    bad = d / "bad"
    bad.mkdir()
    (bad / "empty.ckpt").write_bytes(b"")
    (bad / "truncated.ckpt").write_bytes(good.read_bytes()[:500])
    # seed 2's bytes stop the weights-only unpickler with an IndexError (no UnpicklingError)
    (bad / "garbage.ckpt").write_bytes(random.Random(2).randbytes(2000))
    (bad / "a_dir.ckpt").mkdir()
    torch.save([1, 2, 3], bad / "list.ckpt")
    torch.save({"weights": torch.zeros(3)}, bad / "no_state.ckpt")
    torch.save({**ckpt, "payload": Evil(str(work / MARKER))}, bad / "evil.ckpt")
    torch.save({"pac_masks": Evil(str(work / MARKER))}, bad / "evil_masks.pt")
    other = dict(ckpt, hyper_parameters={**ckpt["hyper_parameters"]})
    other["hyper_parameters"]["_class_path"] = "pl_pac_trs.models.MLPRegressor"
    torch.save(other, bad / "other_class.ckpt")
    shapes = dict(ckpt, state_dict={**ckpt["state_dict"], "net.weight": torch.zeros(1, 7)})
    torch.save(shapes, bad / "other_shapes.ckpt")
    missing = dict(ckpt, state_dict={"net.weight": ckpt["state_dict"]["net.weight"]})
    torch.save(missing, bad / "missing_key.ckpt")
    (bad / "broken.yaml").write_text("trainer:\n  max_epochs: [1, 2\n")
    (bad / "tabs.yaml").write_text("trainer:\n\tmax_epochs: 3\n")
    (bad / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01" * 10)
    cal = yaml.safe_load(Path(CALIBRATE).read_text())
    (load,) = [c for c in cal["trainer"]["callbacks"] if c["class_path"].endswith("SourceWeights")]
    load["init_args"]["checkpoint"] = str(bad / "evil.ckpt")
    (bad / "calibrate_evil.yaml").write_text(yaml.safe_dump(cal))
    (bad / "grid.csv").write_text("trajectory,t,q,p\n0,0.0,1,0\n0,0.1,1,0\n0,0.1,1,0\n0,0.3,1,0\n")
    return {"dir": d, "work": work, "out": out, "good": good, "bad": bad}


def _snapshot(*roots: Path) -> dict[str, str]:
    state = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            key = str(path)
            state[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "d"
    return state


B = "{bad}/"
ROWS = [
    # --- command line and commands
    ("unknown-command", ["nosuchcmd"], ["'nosuchcmd'", "pac"]),
    ("no-command", [], ["subcommand", "pac"]),
    ("unknown-key", ["fit", "--config", TINY, "--trainer.max_epohcs=3"], ["max_epohcs"]),
    ("wrong-type", ["fit", "--config", TINY, "--trainer.max_epochs=abc"], ["trainer.max_epochs"]),
    ("unknown-init-arg", ["fit", "--config", TINY, "--model.init_args.learning_rate=1"],
     ["learning_rate"]),
    ("init-arg-type", ["fit", "--config", TINY, "--model.init_args.lr=abc"],
     ["--model.init_args.lr", "abc"]),
    ("init-arg-value", ["fit", "--config", TINY, "--model.init_args.lr=-1"], ["lr must be > 0"]),
    ("no-such-model", ["fit", "--config", TINY, "--model=nosuch.Module"], ["nosuch"]),
    ("no-such-callback", ["fit", "--config", TINY, "--trainer.callbacks+=nosuch.Callback"],
     ["trainer.callbacks", "nosuch"]),
    ("seed-type", ["fit", "--config", TINY, "--seed_everything=abc"], ["seed_everything"]),
    ("nested-init-arg", ["fit", "--config", EXP1,
                         "--model.init_args.vector_field.init_args.hidden=x"],
     ["vector_field.init_args.hidden", "x"]),
    ("trs-weight-nan", ["fit", "--config", EXP1, "--model.init_args.trs_weight=.nan"],
     ["trs_weight", "nan"]),
    # --- config files
    ("missing-config", ["fit", "--config", "no/such/file.yaml"], ["no/such/file.yaml"]),
    ("malformed-yaml", ["fit", "--config", B + "broken.yaml"],
     ["broken.yaml", "not valid YAML, line 3"]),
    ("yaml-tabs", ["fit", "--config", B + "tabs.yaml"], ["tabs.yaml", "line 2"]),
    ("binary-yaml", ["fit", "--config", B + "binary.yaml"], ["binary.yaml"]),
    # --- Lightning's own checks of the trainer settings
    ("accelerator-gpu", ["fit", "--config", TINY, "--trainer.accelerator=gpu"],
     ["--trainer.accelerator='gpu'"]),  # skipped where a GPU is there (it would train)
    ("accelerator-bogus", ["fit", "--config", TINY, "--trainer.accelerator=bogus"],
     ["accelerator", "bogus"]),
    ("max-epochs-negative", ["fit", "--config", TINY, "--trainer.max_epochs=-5"],
     ["max_epochs", "-5"]),
    ("devices-abc", ["fit", "--config", TINY, "--trainer.devices=abc"],
     ["--trainer.devices='abc'"]),
    ("precision-bogus", ["fit", "--config", TINY, "--trainer.precision=bogus"], ["precision"]),
    ("strategy-bogus", ["fit", "--config", TINY, "--trainer.strategy=bogus"], ["bogus"]),
    # --- --ckpt_path
    ("ckpt-missing", ["fit", "--config", TINY, "--ckpt_path=" + B + "nope.ckpt"], ["nope.ckpt"]),
    ("ckpt-empty", ["fit", "--config", TINY, "--ckpt_path=" + B + "empty.ckpt"],
     ["empty.ckpt", "empty"]),
    ("ckpt-truncated", ["fit", "--config", TINY, "--ckpt_path=" + B + "truncated.ckpt"],
     ["truncated.ckpt", "truncated or corrupt"]),
    ("ckpt-garbage", ["fit", "--config", TINY, "--ckpt_path=" + B + "garbage.ckpt"],
     ["garbage.ckpt"]),
    ("ckpt-directory", ["fit", "--config", TINY, "--ckpt_path=" + B + "a_dir.ckpt"],
     ["a_dir.ckpt", "directory"]),
    ("ckpt-not-a-dict", ["fit", "--config", TINY, "--ckpt_path=" + B + "list.ckpt"],
     ["list.ckpt", "not a Lightning checkpoint"]),
    ("ckpt-no-state-dict", ["fit", "--config", TINY, "--ckpt_path=" + B + "no_state.ckpt"],
     ["no_state.ckpt", "state_dict"]),
    ("ckpt-crafted-pickle", ["fit", "--config", TINY, "--ckpt_path=" + B + "evil.ckpt"],
     ["evil.ckpt", "refused", "PL_PAC_TRS_TRUST_PICKLE"]),
    ("ckpt-other-class", ["fit", "--config", TINY, "--ckpt_path=" + B + "other_class.ckpt"],
     ["other_class.ckpt", "MLPRegressor", "TinyRegressor"]),
    ("ckpt-other-shapes", ["fit", "--config", TINY, "--ckpt_path=" + B + "other_shapes.ckpt"],
     ["other_shapes.ckpt", "'net.weight'", "(1, 7)", "(1, 4)"]),
    ("ckpt-missing-key", ["fit", "--config", TINY, "--ckpt_path=" + B + "missing_key.ckpt"],
     ["missing_key.ckpt", "'net.bias'"]),
    ("test-ckpt-crafted", ["test", "--config", TINY, "--ckpt_path=" + B + "evil.ckpt"],
     ["evil.ckpt", "refused"]),
    # --- PAC callbacks and files
    ("source-ckpt-missing", ["fit", "--config", CALIBRATE], ["LoadSourceWeights", "source.ckpt"]),
    ("source-ckpt-crafted", ["fit", "--config", B + "calibrate_evil.yaml"],
     ["evil.ckpt", "refused"]),
    ("masks-crafted", ["fit", "--config", TINY, "--trainer.callbacks+=pl_pac_trs.pac.GradientMask",
                       "--trainer.callbacks.init_args.masks=" + B + "evil_masks.pt"],
     ["evil_masks.pt", "refused"]),
    ("masks-empty", ["fit", "--config", TINY, "--trainer.callbacks+=pl_pac_trs.pac.GradientMask",
                     "--trainer.callbacks.init_args.masks=" + B + "empty.ckpt"],
     ["empty.ckpt"]),
    ("gradientmask-lam-nan", ["fit", "--config", TINY,
                              "--trainer.callbacks+=pl_pac_trs.pac.GradientMask",
                              "--trainer.callbacks.init_args.lam=.nan"], ["lam", "nan"]),
    ("gradientmask-lam-negative", ["fit", "--config", TINY,
                                   "--trainer.callbacks+=pl_pac_trs.pac.GradientMask",
                                   "--trainer.callbacks.init_args.lam=-1"], ["lam", "-1"]),
    ("gradientmask-phase", ["fit", "--config", TINY,
                            "--trainer.callbacks+=pl_pac_trs.pac.GradientMask",
                            "--trainer.callbacks.init_args.phase=prune"], ["phase", "prune"]),
    ("pruning-amount", ["fit", "--config", TINY,
                        "--trainer.callbacks+=pl_pac_trs.pac.MagnitudePruning",
                        "--trainer.callbacks.init_args.amount=1.5"], ["amount", "1.5"]),
    ("pruning-scope", ["fit", "--config", TINY,
                       "--trainer.callbacks+=pl_pac_trs.pac.MagnitudePruning",
                       "--trainer.callbacks.init_args.pruning_fn=bogus"], ["pruning_fn", "bogus"]),
    # --- data
    ("exp5-no-network", ["fit", "--config", EXP5,
                         f"--data.init_args.url=http://127.0.0.1:{_closed_port()}/"
                         "real_double_linear_h_1.txt"],
     ["--data.init_args.path", "{cache}/real_double_linear_h_1.txt"]),
    ("exp5-missing-file", ["fit", "--config", EXP5, "--data.init_args.path=no/such.txt"],
     ["no/such.txt"]),
    ("time-grid", ["fit", "--config", EXP1, "--data=pl_pac_trs.data.TrajectoryFileDataModule",
                   "--data.init_args.path=" + B + "grid.csv", "--data.init_args.time_horizon=1",
                   "--data.init_args.position_dim=1"],
     ["grid.csv", "line 3 (t=0.1)", "line 4 (t=0.1)"]),
    # --- the PAC pipeline command
    ("pac-no-task", ["pac"], ["task"]),
    ("pac-unknown-task", ["pac", "nosuchtask", "--no-wandb"], ["'nosuchtask'", "friedman"]),
    ("pac-scale-nan", ["pac", "friedman", "--epochs-scale", "nan"], ["--epochs-scale", "nan"]),
    ("pac-scale-inf", ["pac", "friedman", "--epochs-scale", "inf"], ["--epochs-scale", "inf"]),
    ("pac-scale-zero", ["pac", "friedman", "--epochs-scale", "0"], ["--epochs-scale", "'0'"]),
    ("pac-scale-text", ["pac", "friedman", "--epochs-scale", "abc"], ["--epochs-scale", "abc"]),
    ("pac-baseline", ["pac", "friedman", "--baselines", "bogus", "--no-wandb"],
     ["'bogus'", "finetune"]),
    ("pac-unknown-option", ["pac", "friedman", "--bogus"], ["--bogus"]),
]  # fmt: skip


def test_the_table_is_large_enough():
    assert len(ROWS) >= 40
    assert len({name for name, _, _ in ROWS}) == len(ROWS)


def _fill(items, files):
    return [
        x.replace("{bad}", str(files["bad"])).replace("{cache}", str(files["work"] / "cache"))
        for x in items
    ]


def _gpu_available() -> bool:
    return torch.cuda.is_available() or torch.backends.mps.is_available()


#: Rows that are bad input only on some machines.
MACHINE = {
    "accelerator-gpu": pytest.mark.skipif(
        _gpu_available(), reason="this machine has a GPU: --trainer.accelerator=gpu is valid here"
    ),
}


@pytest.mark.parametrize(
    ("args", "expected"),
    [pytest.param(*r[1:], id=r[0], marks=MACHINE.get(r[0], ())) for r in ROWS],
)
def test_bad_input(args, expected, files, capsys, monkeypatch):
    monkeypatch.chdir(files["work"])
    monkeypatch.syspath_prepend(str(ASSETS))
    monkeypatch.setenv("PL_PAC_TRS_CACHE", str(files["work"] / "cache"))
    monkeypatch.delenv("PL_PAC_TRS_DEBUG", raising=False)
    monkeypatch.delenv("PL_PAC_TRS_TRUST_PICKLE", raising=False)
    args = _fill(args, files)
    if args and args[0] in ("fit", "test"):
        args += [*QUIET, f"--trainer.default_root_dir={files['out']}"]
    before = _snapshot(files["work"], files["dir"] / "fit")
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert 1 <= len(lines) <= 3, err
    assert "Traceback" not in err
    for word in _fill(expected, files):
        assert word in err, (word, err)
    assert "np.float64" not in err and "Namespace(" not in err
    assert _snapshot(files["work"], files["dir"] / "fit") == before  # nothing on disk changed
    assert not (files["work"] / MARKER).exists()  # no code ran from a file


def test_debug_env_gives_the_full_traceback(files, monkeypatch):
    monkeypatch.setenv("PL_PAC_TRS_DEBUG", "1")
    monkeypatch.syspath_prepend(str(ASSETS))
    with pytest.raises(ValueError, match="refused"):
        main(["fit", "--config", TINY, *QUIET, f"--ckpt_path={files['bad'] / 'evil.ckpt'}"])
    assert not (files["work"] / MARKER).exists()


def test_trusted_pickle_is_an_explicit_opt_in(files, monkeypatch, tmp_path):
    """With PL_PAC_TRS_TRUST_PICKLE=1 a legacy file loads (and would run its code): opt-in only."""
    from pl_pac_trs.pac.state import load_checkpoint

    marker = tmp_path / "ran.txt"
    torch.save({"x": Evil(str(marker))}, tmp_path / "legacy.pt")
    with pytest.raises(ValueError, match="refused"):
        load_checkpoint(tmp_path / "legacy.pt")
    assert not marker.exists()
    monkeypatch.setenv("PL_PAC_TRS_TRUST_PICKLE", "1")
    load_checkpoint(tmp_path / "legacy.pt")
    assert marker.exists()


def _run(args, cwd, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "PL_PAC_TRS_"))}
    env.update(PYTHONPATH=os.pathsep.join((str(ROOT), str(ASSETS))), WANDB_MODE="disabled")
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "pl_pac_trs", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nosuchcmd"], ["'nosuchcmd'", "pac"]),
        (["fit", "--config", TINY, *QUIET, "--ckpt_path={bad}/evil.ckpt"], ["evil.ckpt"]),
        (["pac", "friedman", "--epochs-scale", "inf"], ["--epochs-scale"]),
    ],
    ids=["command", "crafted-ckpt", "pac-scale"],
)
def test_bad_input_in_a_subprocess(args, expected, files):
    before = _snapshot(files["work"])
    out = _run(_fill(args, files), files["work"])
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, out.stderr[-2000:]
    assert 1 <= len(lines) <= 3, out.stderr
    for word in expected:
        assert word in out.stderr
    assert _snapshot(files["work"]) == before
    assert not (files["work"] / MARKER).exists()
