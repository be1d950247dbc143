"""``pl-pac-trs trs-lambda``: choose the TRS weight for your own system on its validation split.

::

    pl-pac-trs trs-lambda --config my_system.yaml [--lambdas 0,1,10] [--time-weighted]
        [--seeds 1] [--out runs/trs_lambda] [LightningCLI overrides: --trainer.max_epochs=300]

Your config (a :class:`~pl_pac_trs.trs.TRSODEN` model, a trajectory datamodule with a validation
split, the trainer's budget) is fitted once per weight of ``--lambdas`` (0, the ODEN / HODEN
baseline, is always among them) and, with ``--time-weighted``, once more per weight above 0 with
the time-weighted TRS term (damped systems). Each fit is scored on the validation windows by
``val/ode``, the data loss without the TRS term (comparable across weights); with ``--seeds N``
each weight is fitted with N seeds (``seed_everything`` + 0 .. N-1) and the mean counts. Nothing
is tested: the test split stays for the model you then train with the chosen config.

Written to ``--out``: ``trs_lambda.md`` (the table, also printed), ``trs_lambda.json`` and
``chosen.yaml``, your config with the chosen ``trs_weight`` / ``time_weighted`` resolved by the
CLI (run it with ``pl-pac-trs fit --config chosen.yaml``), and each fit's CSV log under
``fits/``. No W&B: the fits log to CSV (the W&B sweep file is the online alternative).

Bad input (unknown option, a weight that is not a number >= 0, a config whose model is not a
``TRSODEN`` or whose data has no validation split) exits with code 2 before any fit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pl_pac_trs.apps.cli import PacTrsCLI
from pl_pac_trs.apps.config_commands import resolve_config_args

__all__ = ["main", "parse_weights", "select_weight"]

DEFAULT_WEIGHTS = "0,1,10"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pl-pac-trs trs-lambda",
        description="Fit a TRSODEN config once per TRS weight (0 included), compare val/ode, "
        "write the chosen config. Other options are passed to the config as LightningCLI "
        "overrides (e.g. --trainer.max_epochs=300).",
    )
    p.add_argument("-c", "--config", action="append", required=True, help="config file(s)")
    p.add_argument(
        "--lambdas",
        default=DEFAULT_WEIGHTS,
        help=f"TRS weights, comma-separated (0 is always added; default {DEFAULT_WEIGHTS})",
    )
    p.add_argument(
        "--time-weighted",
        action="store_true",
        help="also fit the time-weighted TRS term at every weight above 0 (damped systems)",
    )
    p.add_argument("--seeds", type=int, default=1, help="seeds per weight (default 1)")
    p.add_argument("--out", type=Path, default=Path("runs/trs_lambda"), help="output folder")
    return p


class _ArgError(ValueError):
    """Bad command-line input (reported with exit code 2)."""


def parse_weights(text: str) -> list[float]:
    """The weights of ``--lambdas``, 0 added, sorted and without repeats.

    Raises:
        ValueError: a weight that is not a finite number >= 0.

    Example:
        >>> parse_weights("10, 1")
        [0.0, 1.0, 10.0]
    """
    weights = {0.0}
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise _ArgError(f"--lambdas: {part!r} is not a number") from None
        if not (math.isfinite(value) and value >= 0):
            raise _ArgError(f"--lambdas: every weight must be a finite number >= 0, got {part}")
        weights.add(value)
    return sorted(weights)


def _conditions(weights: Sequence[float], time_weighted: bool) -> list[tuple[float, bool]]:
    out = [(w, False) for w in weights]
    if time_weighted:
        out += [(w, True) for w in weights if w > 0]
    return out


def _label(weight: float, time_weighted: bool) -> str:
    return f"lambda_{weight:g}" + ("_tw" if time_weighted else "")


def select_weight(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The row with the lowest mean ``val_ode`` (NaN counts as worst; ties: the smaller weight,
    plain before time-weighted)."""

    def key(row: dict[str, Any]) -> tuple[float, float, bool]:
        value = row["val_ode"]
        return (
            value if math.isfinite(value) else math.inf,
            row["trs_weight"],
            row["time_weighted"],
        )

    return min(rows, key=key)


def _fit_args(cond: tuple[float, bool], seed: int | None, out: Path) -> list[str]:
    """Our overrides of one fit: the weight, CSV logs under ``out/fits``, no checkpoints or
    progress bar, and the seed (``None``: the config's, for the check before the fits)."""
    weight, tw = cond
    label = _label(weight, tw)
    args = [
        f"--model.init_args.trs_weight={weight}",
        f"--model.init_args.time_weighted={str(tw).lower()}",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={out / 'fits'}",
        f"--trainer.logger.init_args.name={label}",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={out / 'fits' / label}",
    ]
    if seed is not None:
        args.append(f"--seed_everything={seed}")
        args.append(f"--trainer.logger.init_args.version=seed{seed}")
    return args


def _build(configs: list[str], overrides: list[str], extra: list[str]) -> PacTrsCLI:
    args = [a for c in configs for a in ("--config", c)]
    return PacTrsCLI(args=[*args, *overrides, *extra], run=False)


def _config_model(configs: Sequence[str]) -> str | None:
    """The model ``class_path`` the config files name (the last one that names one)."""
    import yaml

    name = None
    for config in configs:
        try:
            loaded = yaml.safe_load(Path(config).read_text())
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            return None  # the CLI names the bad file
        model = loaded.get("model") if isinstance(loaded, dict) else None
        if isinstance(model, dict) and isinstance(model.get("class_path"), str):
            name = model["class_path"]
    return name


def _check_model_class(configs: Sequence[str]) -> None:
    """Refuse, before parsing, a config whose model is importable and not a TRSODEN (its
    parser would reject the ``trs_weight`` override with a less helpful message)."""
    import importlib

    from pl_pac_trs.trs import TRSODEN

    name = _config_model(configs)
    if not name or "." not in name:
        return
    module, _, attr = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return  # the CLI names what cannot be imported
    if not (isinstance(cls, type) and issubclass(cls, TRSODEN)):
        raise _ArgError(f"trs-lambda: the config's model is {name}, not pl_pac_trs.trs.TRSODEN")


def _check(cli: PacTrsCLI) -> None:
    """A TRSODEN model and data with validation windows, or a ValueError naming what is not."""
    from pl_pac_trs.trs import TRSODEN

    if not isinstance(cli.model, TRSODEN):
        name = type(cli.model).__name__
        raise _ArgError(f"trs-lambda: the config's model is {name}, not pl_pac_trs.trs.TRSODEN")
    dm = cli.datamodule
    if dm is None:
        raise _ArgError("trs-lambda: the config has no data module (data: class_path ...)")
    dm.setup("fit")
    if not len(dm.val_dataloader() or []):
        raise _ArgError(
            f"trs-lambda: {type(dm).__name__} has no validation split to choose on (give it "
            "validation data, e.g. num_val > 0 or val_fraction > 0)"
        )


def _fit(cli: PacTrsCLI) -> tuple[float, float | None, float]:
    """Fit, then score the final weights on the validation windows."""
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - t0
    result = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    trs = result.get("val/trs")
    return float(result["val/ode"]), None if trs is None else float(trs), seconds


def _seed(cli: PacTrsCLI) -> int | None:
    value = cli.config.get("seed_everything")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _markdown(rows: list[dict[str, Any]], chosen: dict[str, Any], meta: dict[str, Any]) -> str:
    seeds = meta["seeds"]
    lines = [
        f"# TRS weight on validation: {', '.join(meta['configs'])}",
        "",
        f"val/ode (x1e2, the validation data loss without the TRS term), "
        f"{'mean over ' + str(len(seeds)) + ' seeds' if len(seeds) > 1 else 'one seed'}; "
        "lower is better.",
        "",
        "| trs_weight | time_weighted | val/ode x1e2 | val/trs x1e2 | fit seconds | chosen |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        trs = row["val_trs"]
        lines.append(
            f"| {row['trs_weight']:g} | {'yes' if row['time_weighted'] else 'no'} | "
            f"{100 * row['val_ode']:.4g} | {'n/a' if trs is None else f'{100 * trs:.4g}'} | "
            f"{row['seconds']:.1f} | {'**yes**' if row is chosen else ''} |"
        )
    tw = " time_weighted=true" if chosen["time_weighted"] else ""
    lines += ["", f"Chosen: trs_weight={chosen['trs_weight']:g}{tw} -> {meta['chosen_config']}"]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _quiet_lightning():
    """Lightning's per-fit info lines (seed, accelerators, 'max_epochs reached') off."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def main(argv: Sequence[str]) -> int:
    """Entry point of ``pl-pac-trs trs-lambda``; returns the exit code (bad input raises
    ``ValueError``, which the CLI reports with exit code 2)."""
    with _quiet_lightning():
        return _main(argv)


def _main(argv: Sequence[str]) -> int:
    parser = _parser()
    try:
        args, overrides = parser.parse_known_args(resolve_config_args(list(argv)))
    except SystemExit as exc:  # argparse's own errors (missing --config): exit code 2
        return int(exc.code or 0)
    unknown = [a for a in overrides if a.startswith("-") and not a.startswith("--")]
    if unknown:
        raise _ArgError(f"trs-lambda: unknown option {unknown[0]!r}")
    if args.seeds < 1:
        raise _ArgError(f"trs-lambda: --seeds must be >= 1, got {args.seeds}")
    for config in args.config:
        if not Path(config).is_file():
            raise FileNotFoundError(f"trs-lambda: config file {config!r} not found")
    os.environ.setdefault("WANDB_MODE", "disabled")
    conditions = _conditions(parse_weights(args.lambdas), args.time_weighted)
    out: Path = args.out
    _check_model_class(args.config)
    first = _build(args.config, overrides, _fit_args(conditions[0], None, out))
    _check(first)  # before any fit (the fits themselves are built afresh, with their seed)
    # the config's seed (LightningCLI draws one for seed_everything: true), the same for every
    # weight, so the weights are compared from the same initialisation
    base_seed = _seed(first) or 0
    seeds = [base_seed + i for i in range(args.seeds)]
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    total = len(conditions) * len(seeds)
    done = 0
    for cond in conditions:
        values, trs_values, seconds = [], [], 0.0
        for seed in seeds:
            done += 1
            print(
                f"[{done}/{total}] fitting trs_weight={cond[0]:g}"
                f"{' time-weighted' if cond[1] else ''}"
                f"{'' if len(seeds) == 1 else f' seed {seed}'}",
                flush=True,
            )
            cli = _build(args.config, overrides, _fit_args(cond, seed, out))
            val, trs, secs = _fit(cli)
            values.append(val)
            seconds += secs
            if trs is not None:
                trs_values.append(trs)
        finite = all(math.isfinite(v) for v in values)
        rows.append(
            {
                "trs_weight": cond[0],
                "time_weighted": cond[1],
                "val_ode": sum(values) / len(values) if finite else math.nan,
                "val_ode_seeds": values,
                "val_trs": sum(trs_values) / len(trs_values) if trs_values else None,
                "seconds": seconds,
            }
        )
    chosen = select_weight(rows)
    chosen_path = out / "chosen.yaml"
    meta = {
        "configs": args.config,
        "overrides": overrides,
        "seeds": seeds,
        "chosen_config": str(chosen_path),
    }
    extra = [
        f"--model.init_args.trs_weight={chosen['trs_weight']}",
        f"--model.init_args.time_weighted={str(chosen['time_weighted']).lower()}",
    ]
    config_args = [a for c in args.config for a in ("--config", c)]
    resolved = first.parser.parse_args([*config_args, *overrides, *extra])
    header = (
        f"# Chosen by pl-pac-trs trs-lambda on val/ode: trs_weight={chosen['trs_weight']:g}, "
        f"time_weighted={chosen['time_weighted']} (table: {out / 'trs_lambda.md'})\n"
    )
    _write(chosen_path, header + first.parser.dump(resolved, skip_none=False))
    markdown = _markdown(rows, chosen, meta)
    _write(out / "trs_lambda.md", markdown)
    payload = {**meta, "rows": rows, "chosen": chosen}
    _write(out / "trs_lambda.json", json.dumps(payload, indent=2) + "\n")
    print(markdown, end="", flush=True)
    return 0
