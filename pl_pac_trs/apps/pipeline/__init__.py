"""The whole PAC-Net pipeline in one command: ``pl-pac-trs pac TASK``.

Runs the stage configs of ``configs/pac/TASK/`` (in the working directory if there is one, else
the shipped configs, :mod:`pl_pac_trs.configs`) in order -- ``source`` (dense training, pruning,
allocate in one fit), ``calibrate`` and the chosen baselines -- with every checkpoint path
pointed into the output directory, then tests each stage on the target task and on the source
task (PAC-Net's source metrics are taken inside :func:`~pl_pac_trs.pac.source_view`, with the
calibrated weights zeroed) and writes ``summary.json`` and ``summary.md`` there.

Modules: :mod:`.stage` (one stage config fitted with the pipeline's overrides as data),
:mod:`.records` (``pipeline_state.json``, to resume), :mod:`.evaluate` (target and source
metrics), :mod:`.summary` (markdown and W&B tables), :mod:`.run` (:func:`run_pipeline`),
:mod:`.seeds` (several seeds, mean ± std), :mod:`.command` (``pl-pac-trs pac`` and the demo).
"""

from pl_pac_trs.apps.pipeline.command import demo, main
from pl_pac_trs.apps.pipeline.run import BASELINES, PAPER_SETTINGS, run_pipeline
from pl_pac_trs.apps.pipeline.seeds import run_seeds
from pl_pac_trs.apps.pipeline.stage import StageOverrides, fit_stage
from pl_pac_trs.apps.pipeline.summary import log_summary_wandb, summary_markdown

__all__ = [
    "BASELINES",
    "PAPER_SETTINGS",
    "StageOverrides",
    "demo",
    "fit_stage",
    "log_summary_wandb",
    "main",
    "run_pipeline",
    "run_seeds",
    "summary_markdown",
]
