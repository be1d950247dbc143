"""The metrics of a fitted stage: target validation/test, and the source task after transfer."""

from __future__ import annotations

from pathlib import Path

import torch

from pl_pac_trs.pac import LoadSourceWeights, checkpoint_state_dict, matches_any

__all__ = [
    "SPLITS",
    "head_shape_differs",
    "head_state",
    "outputs_identical",
    "source_metrics",
    "target_metrics",
]

SPLITS = ("test", "val")
"""What a pipeline evaluates: ``"test"`` (validation and test metrics) or ``"val"`` (validation
only: the test split is never touched, for choosing settings)."""


def _evaluate(trainer, model, datamodule, split: str) -> dict[str, float]:
    run = trainer.test if split == "test" else trainer.validate
    results = run(model, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in (results[0] if results else {}).items()}


def source_metrics(trainer, model, datamodule, split: str = "test") -> dict[str, float]:
    """``model``'s metrics on the source task: its ``split`` (``"test"`` or ``"val"``)."""
    return _evaluate(trainer, model, datamodule, split)


def target_metrics(trainer, model, datamodule, split: str = "test") -> dict[str, float]:
    """The target task's validation metrics (``val/...``: what to choose settings on) and, when
    ``split`` is ``"test"``, its test metrics (``test/...``)."""
    val = _evaluate(trainer, model, datamodule, "val")
    return {**val, **(_evaluate(trainer, model, datamodule, "test") if split == "test" else {})}


def head_state(trainer, checkpoint: Path) -> dict[str, torch.Tensor]:
    """The entries of ``checkpoint`` that the stage's ``LoadSourceWeights`` skipped (the source
    head a baseline replaced), to put back for the source metrics; ``{}`` if none."""
    skip: tuple[str, ...] = ()
    for cb in trainer.callbacks:
        if isinstance(cb, LoadSourceWeights):
            skip = cb.skip
    if not skip:
        return {}
    return {k: v for k, v in checkpoint_state_dict(checkpoint).items() if matches_any(k, skip)}


def head_shape_differs(model, source_model) -> bool:
    """Whether an entry of ``model`` has another shape than in ``source_model``."""
    a, b = model.state_dict(), source_model.state_dict()
    return any(k in b and a[k].shape != b[k].shape for k in a)


def outputs_identical(source_model, model, datamodule, split: str = "test", state=None) -> bool:
    """Whether ``model`` (inside ``source_view``) equals the allocated source model bit for bit:
    every state entry (of ``state``, default ``model.state_dict()``), and the outputs on the
    source ``split`` when batches are ``(x, y)``."""
    own = model.state_dict() if state is None else state
    for name, value in source_model.state_dict().items():
        if name not in own or not torch.equal(own[name].cpu(), value.cpu()):
            return False
    was = (source_model.training, model.training)
    source_model.eval()
    model.eval()
    same = True
    with torch.no_grad():
        loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
        for batch in loader:
            if not (isinstance(batch, (list, tuple)) and isinstance(batch[0], torch.Tensor)):
                break  # a structured batch: the state comparison above decides
            x = batch[0].to(model.device)
            same &= torch.equal(source_model.to(model.device)(x), model(x))
    source_model.train(was[0])
    model.train(was[1])
    return bool(same)
