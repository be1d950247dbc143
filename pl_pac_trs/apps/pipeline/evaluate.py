"""The metrics of a fitted stage: target validation/test, and the source task after transfer."""

from __future__ import annotations

from pathlib import Path

import torch

from pl_pac_trs.pac import LoadSourceWeights, matches_any, source_state_dict

__all__ = [
    "head_shape_differs",
    "head_state",
    "outputs_identical",
    "target_metrics",
    "test_metrics",
]


def test_metrics(trainer, model, datamodule) -> dict[str, float]:
    """The test metrics of ``model`` on ``datamodule``'s test split."""
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in (results[0] if results else {}).items()}


def target_metrics(trainer, model, datamodule) -> dict[str, float]:
    """The target task's validation (``val/...``: what to choose settings on, e.g. in a sweep)
    and test (``test/...``) metrics of the fitted stage."""
    results = trainer.validate(model, datamodule=datamodule, verbose=False)
    val = {k: float(v) for k, v in (results[0] if results else {}).items()}
    return {**val, **test_metrics(trainer, model, datamodule)}


def head_state(trainer, checkpoint: Path) -> dict[str, torch.Tensor]:
    """The entries of ``checkpoint`` that the stage's ``LoadSourceWeights`` skipped (the source
    head a baseline replaced), to put back for the source metrics; ``{}`` if none."""
    skip: tuple[str, ...] = ()
    for cb in trainer.callbacks:
        if isinstance(cb, LoadSourceWeights):
            skip = cb.skip
    if not skip:
        return {}
    return {k: v for k, v in source_state_dict(checkpoint).items() if matches_any(k, skip)}


def head_shape_differs(model, source_model) -> bool:
    """Whether an entry of ``model`` has another shape than in ``source_model``."""
    a, b = model.state_dict(), source_model.state_dict()
    return any(k in b and a[k].shape != b[k].shape for k in a)


def outputs_identical(source_model, model, datamodule) -> bool:
    """Whether ``model`` (inside ``source_view``) equals the allocated source model bit for bit:
    every state entry, and the outputs on the source test set when batches are ``(x, y)``."""
    own = model.state_dict()
    for name, value in source_model.state_dict().items():
        if name not in own or not torch.equal(own[name].cpu(), value.cpu()):
            return False
    was = (source_model.training, model.training)
    source_model.eval()
    model.eval()
    same = True
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            if not (isinstance(batch, (list, tuple)) and isinstance(batch[0], torch.Tensor)):
                break  # a structured batch: the state comparison above decides
            x = batch[0].to(model.device)
            same &= torch.equal(source_model.to(model.device)(x), model(x))
    source_model.train(was[0])
    model.train(was[1])
    return bool(same)
