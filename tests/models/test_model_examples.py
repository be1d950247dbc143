"""The docstring examples of the task modules run and print what they show."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["base", "classification", "regression", "resnet"])
def test_examples(name):
    module = importlib.import_module(f"pl_pac_trs.models.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
