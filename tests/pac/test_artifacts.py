"""WandbArtifacts: PAC-Net stages logged as W&B artifacts in offline runs, with their lineage."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import torch
import wandb
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger
from pac_tiny import TinyData, TinyNet
from wandb.proto import wandb_internal_pb2
from wandb_records import _chunks

from pl_pac_trs.pac import (
    FinalCheckpoint,
    GradientMask,
    LoadSourceWeights,
    MagnitudePruning,
    WandbArtifacts,
    load_masks,
)
from pl_pac_trs.pac.artifacts import artifact_name, declare_input, written_by_run


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Offline W&B with its staging area, cache and settings under ``tmp_path``."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))  # staged artifact files
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    yield tmp_path
    wandb.finish()


def _fit(tmp_path: Path, callbacks: list, name: str | None, model=None) -> Path | None:
    """A 3-epoch fit; with ``name``, logged to a new offline W&B run whose directory is returned."""
    logger = WandbLogger(project="p", save_dir=str(tmp_path), name=name) if name else False
    trainer = Trainer(
        max_epochs=3,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=tmp_path,
    )
    trainer.fit(model or TinyNet(), TinyData())
    if not name:
        return None
    run_path = Path(logger.experiment.dir).parent
    wandb.finish()  # flushes the offline run file
    return run_path


def _records(run_path: Path, timeout: float = 30.0) -> list:
    """The records of the offline run in ``run_path`` (its ``run-<id>.wandb`` file).

    ``wandb.finish()`` can return before wandb's service process has written the last records:
    the file is read again until it ends with the run's ``exit`` record.
    """
    (path,) = run_path.glob("run-*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        records = []
        for payload in _chunks(path.read_bytes()):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            records.append(record)
        complete = any(r.WhichOneof("record_type") == "exit" for r in records)
        if complete or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def _artifact_records(run_path: Path) -> list:
    """The artifact records of the offline run in ``run_path``."""
    return [r.artifact for r in _records(run_path) if r.WhichOneof("record_type") == "artifact"]


def _source_stage(tmp_path: Path) -> tuple[Path, Path, WandbArtifacts]:
    task = tmp_path / "task"
    callbacks = [
        MagnitudePruning(amount=0.5, epoch=1, dense_checkpoint=str(task / "source_dense.ckpt")),
        GradientMask("allocate"),
        FinalCheckpoint(task / "source.ckpt"),
        WandbArtifacts(),
    ]
    run_path = _fit(tmp_path, callbacks, "source")
    return task, run_path, callbacks[-1]


def test_source_stage_logs_checkpoint_masks_and_dense_model(offline):
    task, run_path, cb = _source_stage(offline)
    records = {a.name: a for a in _artifact_records(run_path)}
    assert set(records) == {"task-source", "task-source-masks", "task-source_dense"}
    assert [e["name"] for e in cb.logged] == [
        "task-source-masks",
        "task-source",
        "task-source_dense",
    ]

    for name, file in (("task-source", "source.ckpt"), ("task-source_dense", "source_dense.ckpt")):
        art = records[name]
        meta = json.loads(art.metadata)
        size = (task / file).stat().st_size
        assert art.type == "model" and not art.use_after_commit
        assert meta["stage"] == "source" and meta["file"] == file
        assert meta["size_bytes"] == size
        (entry,) = art.manifest.contents
        assert (entry.path, entry.size) == (file, size)
        # the staged copy that `wandb sync` uploads is the file, byte for byte
        assert Path(entry.local_path).read_bytes() == (task / file).read_bytes()
    assert json.loads(records["task-source"].metadata)["sparsity"] == 0.5
    assert json.loads(records["task-source"].metadata)["masks_artifact"] == "task-source-masks"
    assert "sparsity" not in json.loads(records["task-source_dense"].metadata)

    masks_art = records["task-source-masks"]
    meta = json.loads(masks_art.metadata)
    (entry,) = masks_art.manifest.contents
    assert masks_art.type == "pac-masks"
    assert entry.path == "source-masks.pt"
    assert meta["size_bytes"] == entry.size == Path(entry.local_path).stat().st_size
    assert (meta["sparsity"], meta["entries"], meta["pruned"]) == (0.5, 48, 24)
    staged, saved = load_masks(entry.local_path), load_masks(task / "source.ckpt")
    per_tensor = {k: (~m).sum().item() / m.numel() for k, m in saved.items()}
    assert meta["sparsity_per_tensor"] == per_tensor  # global pruning: unequal per tensor
    assert set(per_tensor) == {"body.0.weight", "head.weight"}
    assert staged.keys() == saved.keys()
    assert all(torch.equal(staged[k], saved[k]) for k in saved)


def test_calibrate_and_baseline_declare_their_source_offline(offline):
    task, source_run, _ = _source_stage(offline)
    logged = {a.name: a for a in _artifact_records(source_run)}

    calibrate = WandbArtifacts()
    cal_run = _fit(
        offline,
        [
            LoadSourceWeights(task / "source.ckpt", skip=["head"]),
            GradientMask("calibrate", lam=0.01, new_modules=["head"]),
            FinalCheckpoint(task / "calibrate.ckpt"),
            calibrate,
        ],
        "calibrate",
    )
    records = _artifact_records(cal_run)
    # offline, wandb's public use_artifact refuses: no input record, the input named in metadata
    assert not [a for a in records if a.use_after_commit]
    outputs = {a.name: a for a in records}
    assert set(outputs) == {"task-calibrate", "task-calibrate-masks"}
    meta = json.loads(outputs["task-calibrate"].metadata)
    assert meta["sources"] == ["task-source"] and "task-source" in logged
    assert meta["size_bytes"] == (task / "calibrate.ckpt").stat().st_size
    assert calibrate.logged[0] == {
        "name": "task-source",
        "type": "model",
        "file": str(task / "source.ckpt"),
        "used": True,
        "how": "offline: in metadata",
    }

    # a baseline without FinalCheckpoint: the model as the fit ends, and the dense source as input
    baseline = WandbArtifacts(stage="finetune", prefix="task")
    ft_run = _fit(offline, [LoadSourceWeights(task / "source_dense.ckpt"), baseline], "finetune")
    records = _artifact_records(ft_run)
    assert not [a for a in records if a.use_after_commit]
    (model,) = records
    assert json.loads(model.metadata)["sources"] == ["task-source_dense"]
    (entry,) = model.manifest.contents
    assert (model.name, entry.path) == ("task-finetune", "finetune.ckpt")
    assert json.loads(model.metadata)["size_bytes"] == entry.size
    state = torch.load(entry.local_path, weights_only=False)["state_dict"]
    assert state.keys() == TinyNet().state_dict().keys()


def test_stages_sharing_one_run_do_not_use_their_own_artifact(offline):
    """All stages in one W&B run (as under a sweep agent): the source checkpoint that run
    logged is not declared as its own input; it is named in the calibrate model's sources."""
    task = offline / "task"

    def trainer(callbacks):
        logger = WandbLogger(project="p", save_dir=str(offline), name="one")
        return Trainer(
            max_epochs=2, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=callbacks,
        )  # fmt: skip

    source = [MagnitudePruning(0.5, epoch=1), FinalCheckpoint(task / "source.ckpt")]
    first = trainer([*source, WandbArtifacts()])
    first.fit(TinyNet(), TinyData())
    calibrate = WandbArtifacts()
    callbacks = [LoadSourceWeights(task / "source.ckpt"), GradientMask("calibrate"), calibrate]
    with pytest.warns(UserWarning, match="reuse this run"):
        second = trainer([*callbacks, FinalCheckpoint(task / "calibrate.ckpt")])
        second.fit(TinyNet(), TinyData())
    assert second.logger.experiment.id == first.logger.experiment.id
    assert calibrate.logged[0]["how"] == "logged by this run"
    # the checkpoints name the run that wrote them (their "wandb_run" key): no process-wide record
    assert written_by_run(task / "source.ckpt", first.logger.experiment.id)
    assert not written_by_run(task / "source.ckpt", "another-run")
    run_path = Path(first.logger.experiment.dir).parent
    wandb.finish()
    records = _artifact_records(run_path)
    assert not [a for a in records if a.use_after_commit]
    (model,) = [a for a in records if a.name == "task-calibrate"]
    assert json.loads(model.metadata)["sources"] == ["task-source"]


def test_without_wandb_logger_nothing_happens_said_once_at_debug(tmp_path, caplog):
    cb = WandbArtifacts()
    callbacks = [FinalCheckpoint(tmp_path / "x.ckpt"), cb]
    with caplog.at_level(logging.DEBUG, logger="pl_pac_trs.pac.artifacts"):
        _fit(tmp_path, callbacks, None)
        _fit(tmp_path, callbacks, None)
    said = [r for r in caplog.records if r.name == "pl_pac_trs.pac.artifacts"]
    assert len(said) == 1 and said[0].levelno == logging.DEBUG
    assert "no WandbLogger" in said[0].getMessage()
    assert cb.logged == []
    assert (tmp_path / "x.ckpt").is_file()


def test_a_wandb_failure_is_a_warning_not_a_failed_fit(offline, monkeypatch):
    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(wandb.Artifact, "add_file", broken)
    cb = WandbArtifacts()
    with pytest.warns(UserWarning, match="could not log .*OSError: disk full"):
        _fit(offline, [FinalCheckpoint(offline / "t" / "s.ckpt"), cb], "s")
    assert cb.logged == []


def test_a_stale_checkpoint_is_not_logged(offline):
    """An explicit checkpoint_path this fit did not write (an older file) is skipped."""
    old = offline / "old" / "model.ckpt"
    old.parent.mkdir()
    old.write_bytes(b"from an earlier run")
    cb = WandbArtifacts(checkpoint_path=old)
    with pytest.warns(UserWarning, match="not written by this fit"):
        run_path = _fit(offline, [cb], "stale")
    assert cb.logged == []
    assert _artifact_records(run_path) == []


def test_online_inputs_use_the_public_use_artifact():
    class Run:
        offline = False
        used: list = []

        def use_artifact(self, artifact):
            self.used.append(artifact)

    run, artifact = Run(), object()
    assert declare_input(run, artifact) == "use_artifact"
    assert run.used == [artifact]

    class OfflineRun:
        offline = True

        def use_artifact(self, artifact):
            raise AssertionError("offline runs refuse use_artifact")

    assert declare_input(OfflineRun(), artifact) == "offline: in metadata"


def test_artifact_names():
    assert artifact_name("runs/pac/friedman/source.ckpt") == "friedman-source"
    assert artifact_name("runs/pac/friedman/source.ckpt", suffix="-masks") == (
        "friedman-source-masks"
    )
    assert artifact_name("a b/c+d.ckpt", prefix="my run") == "my-run-c-d"
    assert artifact_name("/x.ckpt", prefix="") == "x"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"checkpoint_path": ""}, "checkpoint_path must be None or a non-empty file path"),
        ({"checkpoint_path": 3}, "checkpoint_path must be None"),
        ({"stage": "a/b"}, "stage must be None or a non-empty name"),
        ({"stage": ""}, "stage must be None or a non-empty name"),
        ({"prefix": "x:y"}, "prefix must be None"),
        ({"masks": "yes"}, "masks must be true or false"),
        ({"lineage": 1}, "lineage must be true or false"),
        ({"aliases": ["ok", "a:b"]}, "aliases must be non-empty strings"),
    ],
)
def test_bad_arguments_are_refused_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WandbArtifacts(**kwargs)


def test_a_directory_is_not_a_checkpoint_path(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        WandbArtifacts(checkpoint_path=tmp_path)


@pytest.mark.slow
def test_pipeline_artifacts_lineage_and_summary_table(offline):
    """`pl-pac-trs pac --artifacts`: a W&B run per stage, each stage's artifacts, calibrate and
    fine-tuning using the source stage's artifacts (same content), and a summary run."""
    from pl_pac_trs.apps.cli import main as cli_main

    out = offline / "friedman"
    argv = ["pac", "friedman", "--out", str(out), "--artifacts", "--epochs-scale", "0.02"]
    argv += ["--baselines", "finetune", "--set", "data.init_args.n_source=300"]
    assert cli_main(argv) == 0
    runs: dict = {}
    for run_path in sorted((out / "wandb").glob("offline-run-*")):
        for record in _records(run_path):
            if record.WhichOneof("record_type") == "run":
                runs[record.run.display_name] = run_path
    assert set(runs) == {"source", "calibrate", "dense", "finetune", "summary"}

    source = {a.name: a for a in _artifact_records(runs["source"])}
    assert set(source) == {"friedman-source", "friedman-source-masks", "friedman-source_dense"}
    for file in ("source.ckpt", "source_dense.ckpt"):
        name = f"friedman-{Path(file).stem}"
        assert json.loads(source[name].metadata)["size_bytes"] == (out / file).stat().st_size
    masks_meta = json.loads(source["friedman-source-masks"].metadata)
    assert masks_meta["sparsity"] == pytest.approx(0.8, abs=1e-3)  # source.yaml: amount 0.8
    dense = {a.name: a for a in _artifact_records(runs["dense"])}
    assert "friedman-dense" in dense  # equal source budgets: the whole-budget dense model
    for stage, input_name, producer in (
        ("calibrate", "friedman-source", source),
        ("finetune", "friedman-dense", dense),
    ):
        records = {a.name: a for a in _artifact_records(runs[stage])}
        assert not [a for a in records.values() if a.use_after_commit]  # offline: no input record
        assert input_name in producer
        assert json.loads(records[f"friedman-{stage}"].metadata)["sources"] == [input_name]
    # the file calibrate read is the one the source stage logged
    (entry,) = source["friedman-source"].manifest.contents
    assert Path(entry.local_path).read_bytes() == (out / "source.ckpt").read_bytes()

    summary = json.loads((out / "summary.json").read_text())
    (table_file,) = (runs["summary"] / "files" / "media" / "table").rglob("*.table.json")
    table = json.loads(table_file.read_text())
    assert [row[0] for row in table["data"]] == list(summary["stages"])
    column = table["columns"].index("target/test/mse")
    calibrate_row = table["data"][list(summary["stages"]).index("PAC-Net (calibrate)")]
    expected = summary["stages"]["PAC-Net (calibrate)"]["target"]["test/mse"]
    assert calibrate_row[column] == pytest.approx(expected)
    (run,) = [r.run for r in _records(runs["summary"]) if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["task"] == "friedman"
    assert (run.job_type, run.run_group) == ("pac-summary", "pac-friedman")
