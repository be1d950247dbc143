"""The docstring examples of the data modules run and print what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "datamodule",
    "digits",
    "friedman",
    "generated",
    "integrate",
    "sampling",
    "splitting",
    "systems",
    "transfer",
    "validation",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    module = importlib.import_module(f"pl_pac_trs.data.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
