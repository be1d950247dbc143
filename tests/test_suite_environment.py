"""The suite's own fixtures (tests/conftest.py) keep one test's global state out of the next."""

import logging

from benchmarks.common import quiet


def test_a_benchmark_silences_lightning_within_one_test():
    quiet()  # what an in-process benchmark main() does
    assert logging.getLogger("lightning.pytorch").level == logging.ERROR


def test_the_next_test_hears_lightning_again():
    assert logging.getLogger("lightning.pytorch").getEffectiveLevel() <= logging.INFO
