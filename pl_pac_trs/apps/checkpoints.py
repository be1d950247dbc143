"""``--ckpt_path`` checked before anything runs: read as data, of the model class, fitting it."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from pl_pac_trs.serialization import load_torch_file

__all__ = ["check_fits", "checkpoint_shapes"]


def checkpoint_shapes(ckpt_path: str, config: Any) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a ``--ckpt_path`` checkpoint, after checking that it is one.

    The file is loaded as data (clear errors for missing, empty, corrupt and unsafe files; a
    pickled object only with ``weights_only: false`` in ``config``), must be a Lightning
    checkpoint, and must be of the configured model class (Lightning would otherwise swap the
    model class silently).

    Args:
        ckpt_path: The file.
        config: The subcommand's parsed config (``model``, ``weights_only``).

    Raises:
        ValueError: Not a Lightning checkpoint, or one of another model class.
    """
    trusted = config.get("weights_only") is False
    ckpt = load_torch_file(ckpt_path, what="--ckpt_path", trust_pickle=trusted)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(
            f"--ckpt_path {ckpt_path!r} is not a Lightning checkpoint (no 'state_dict'); "
            "expected a file written by ModelCheckpoint or Trainer.save_checkpoint"
        )
    saved = (ckpt.get("hyper_parameters") or {}).get("_class_path")
    model = config.get("model")
    configured = model.get("class_path") if hasattr(model, "get") else None
    if saved and configured and saved != configured:
        raise ValueError(
            f"--ckpt_path {ckpt_path!r} holds a {saved} model, but the config's model is "
            f"{configured}; pass a checkpoint of {configured}, or the config of {saved}"
        )
    return {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, Tensor)}


def check_fits(model: nn.Module, shapes: dict[str, tuple[int, ...]], ckpt_path: str) -> None:
    """Names the first entry of ``model`` that the checkpoint's ``shapes`` do not fit.

    Raises:
        ValueError: A shape differs, or (with ``model.strict_loading``) an entry is missing on
            either side.
    """
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if not own:  # built lazily (configure_model): Lightning checks when it loads
        return
    name = type(model).__name__
    for key, shape in own.items():
        saved = shapes.get(key)
        if saved is not None and saved != shape:
            raise ValueError(
                f"--ckpt_path {ckpt_path!r} does not fit the configured {name}: "
                f"{key!r} has shape {saved} in the checkpoint but {shape} in the model"
            )
    if getattr(model, "strict_loading", True):
        missing = [k for k in own if k not in shapes]
        extra = [k for k in shapes if k not in own]
        if missing or extra:
            what = f"lacks {missing[0]!r}" if missing else f"has {extra[0]!r}, not in the model"
            raise ValueError(
                f"--ckpt_path {ckpt_path!r} does not fit the configured {name}: "
                f"the checkpoint {what}"
            )
