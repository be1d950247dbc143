"""``--ckpt_path`` checked before anything runs: read as data, of the model class, fitting it."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from pl_pac_trs.serialization import load_torch_file

__all__ = ["check_fits", "checkpoint_shapes"]

_PLAIN = (bool, int, float, str)


def checkpoint_shapes(
    ckpt_path: str, config: Any, training: bool = False
) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a ``--ckpt_path`` checkpoint, after checking that it is one.

    The file is loaded as data (clear errors for missing, empty, corrupt and unsafe files; a
    pickled object only with ``weights_only: false`` in ``config``), must be a Lightning
    checkpoint, and must be of the configured model class (Lightning would otherwise swap the
    model class silently). When ``training``, the config's model arguments must also agree
    with the checkpoint's hyper-parameters (:func:`check_hyperparameters`).

    Args:
        ckpt_path: The file.
        config: The subcommand's parsed config (``model``, ``weights_only``).
        training: The checkpoint is to be trained on (``fit``).

    Raises:
        ValueError: Not a Lightning checkpoint, one of another model class, or (``training``)
            one whose hyper-parameters differ from the configured model's.
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
    if training:
        check_hyperparameters(ckpt.get("hyper_parameters") or {}, model, ckpt_path)
    return {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, Tensor)}


def check_hyperparameters(saved: dict[str, Any], model: Any, ckpt_path: str) -> None:
    """Names the first model argument that the config sets otherwise than the checkpoint.

    LightningCLI rebuilds the model from a ``--ckpt_path`` checkpoint's hyper-parameters,
    replacing the config's values without a word: a calibrate config for 3 classes given a
    5-class checkpoint would train a 5-class model on 3-class data. Before training, a plain
    argument (number, string, flag, or a list of them) that both hold and that differs is an
    error; nested specs (optimizers, fields) are left to the shape check.

    Raises:
        ValueError: An argument differs.
    """
    init = model.get("init_args") if hasattr(model, "get") else None
    if not saved or init is None or not hasattr(init, "items"):
        return
    for key, value in init.items():
        if key not in saved or not _plain(value) or not _plain(saved[key]):
            continue
        if _normalised(value) != _normalised(saved[key]):
            raise ValueError(
                f"--ckpt_path {ckpt_path!r} was trained with {key}={saved[key]!r}, but the "
                f"config sets {key}={value!r}; pass a checkpoint of this model, or "
                f"--model.{key}={saved[key]!r} to continue that one"
            )


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, _PLAIN) for v in value)
    return isinstance(value, _PLAIN)


def _normalised(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


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
