"""Strict reading of numeric text tables (whitespace- or comma-separated) with clear errors.

Every error names the file and the 1-based line number: a row with the wrong number of columns
(found vs expected), a value that is not a number, or a value that is NaN or infinite.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

__all__ = ["read_numeric_rows", "read_numeric_table"]


def read_numeric_table(
    path: str | os.PathLike,
    delimiter: str | None = None,
    header: bool = False,
    expected_columns: int | None = None,
) -> tuple[list[str] | None, np.ndarray]:
    """Read a numeric table into a float64 array of shape ``(rows, columns)``.

    The same as :func:`read_numeric_rows` without the line numbers.
    """
    names, values, _ = read_numeric_rows(path, delimiter, header, expected_columns)
    return names, values


def read_numeric_rows(
    path: str | os.PathLike,
    delimiter: str | None = None,
    header: bool = False,
    expected_columns: int | None = None,
) -> tuple[list[str] | None, np.ndarray, list[int]]:
    """Read a numeric table, and the 1-based file line number of every row.

    Args:
        path: the text file.
        delimiter: ``None`` for whitespace-separated columns, else e.g. ``","`` (csv quoting rules).
        header: whether the first non-empty line holds column names.
        expected_columns: required number of columns; ``None``: the header's (or first row's).

    Returns:
        ``(column_names or None, values, line_numbers)``.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: on an empty table, a wrong column count, a non-numeric, NaN or inf value.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    with open(path, newline="") as f:
        if delimiter is None:
            lines = [(i + 1, line.split()) for i, line in enumerate(f)]
        else:
            lines = [(i + 1, row) for i, row in enumerate(csv.reader(f, delimiter=delimiter))]
    lines = [(n, [c.strip() for c in row]) for n, row in lines]
    lines = [(n, row) for n, row in lines if any(row)]
    names = None
    if header:
        if not lines:
            raise ValueError(f"{path}: empty file, expected a header line")
        names = lines[0][1]
        lines = lines[1:]
        if expected_columns is None:
            expected_columns = len(names)
    if not lines:
        raise ValueError(f"{path}: no data rows")
    if expected_columns is None:
        expected_columns = len(lines[0][1])
    if names is not None and len(names) != expected_columns:
        raise ValueError(f"{path}: header has {len(names)} columns, expected {expected_columns}")
    values = np.empty((len(lines), expected_columns))
    for r, (line_no, row) in enumerate(lines):
        if len(row) != expected_columns:
            raise ValueError(
                f"{path}, line {line_no}: found {len(row)} columns, expected {expected_columns}"
            )
        for c, cell in enumerate(row):
            try:
                v = float(cell)
            except ValueError:
                raise ValueError(
                    f"{path}, line {line_no}, column {c + 1}: {cell!r} is not a number"
                ) from None
            if not math.isfinite(v):
                raise ValueError(
                    f"{path}, line {line_no}, column {c + 1}: value {cell!r} is NaN or infinite"
                )
            values[r, c] = v
    return names, values, [n for n, _ in lines]
