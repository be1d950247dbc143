"""Argument checks: the value comes back converted, or the error names the argument."""

import math

import numpy as np
import pytest

from pl_pac_trs.data.validation import (
    check_count,
    check_disjoint_seeds,
    check_finite,
    check_fraction,
    check_nonnegative,
    check_positive,
)


def test_values_come_back_converted():
    assert check_count("n", np.int64(3)) == 3 and type(check_count("n", np.int64(3))) is int
    assert check_count("workers", 0, minimum=0) == 0
    assert check_fraction("f", 0.25) == 0.25
    assert check_fraction("f", 0, allow_zero=True) == 0.0
    assert check_finite("alpha", -2) == -2.0
    assert check_nonnegative("noise", 0) == 0.0
    assert check_positive("span", np.float32(0.5)) == 0.5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_count("num_train", 0), r"num_train must be an integer >= 1, got 0"),
        (lambda: check_count("num_train", True), r"num_train must be an integer >= 1, got True"),
        (lambda: check_count("num_train", 2.0), r"num_train must be an integer >= 1, got 2\.0"),
        (lambda: check_fraction("train_fraction", 1.0), r"train_fraction must lie in \(0, 1\)"),
        (lambda: check_fraction("train_fraction", 0), r"train_fraction must lie in \(0, 1\)"),
        (lambda: check_fraction("v", -0.1, allow_zero=True), r"v must lie in \[0, 1\)"),
        (lambda: check_finite("beta", math.inf), r"beta must be finite, got inf"),
        (lambda: check_nonnegative("noise_std", -1e-9), r"noise_std must be a finite number >= 0"),
        (lambda: check_nonnegative("noise_std", math.nan), r"noise_std must be a finite number"),
        (lambda: check_positive("train_span", 0.0), r"train_span must be a finite number > 0"),
    ],
)
def test_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_seed_ranges():
    check_disjoint_seeds(("train_seed", 0, 50), ("val_seed", 50, 10), ("test_seed", 999, 50))
    check_disjoint_seeds(("train_seed", 0, 50), ("val_seed", 10, 0))  # an empty split
    with pytest.raises(ValueError, match="val_seed=49 with 10 trajectories and test_seed=55"):
        check_disjoint_seeds(("train_seed", 0, 40), ("val_seed", 49, 10), ("test_seed", 55, 5))
