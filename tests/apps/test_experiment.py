"""Running configs from Python (used by the demo and the reproduction benchmarks)."""

from pathlib import Path

from pl_pac_trs.apps.experiment import run_config

ASSETS = Path(__file__).parent / "cli_assets"


def test_run_config_fits_with_overrides_and_reports_metrics(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ASSETS))
    monkeypatch.chdir(tmp_path)
    run = run_config(
        [ASSETS / "tiny.yaml"],
        [
            "--trainer.logger=false",
            "--trainer.max_epochs=3",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        test=False,
    )
    assert set(run.fit_metrics) == {"train/loss", "val/loss"}
    assert run.best_checkpoint is not None and "epoch=2" in run.best_checkpoint
    assert run.run_dir == tmp_path
    assert run.wandb_note is None
