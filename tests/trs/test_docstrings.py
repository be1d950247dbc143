"""The examples in the docstrings of pl_pac_trs.trs and pl_pac_trs.metrics run and hold."""

import doctest
import importlib
import pkgutil

import pytest

import pl_pac_trs.metrics
import pl_pac_trs.trs

MODULES = [
    f"{package.__name__}.{info.name}"
    for package in (pl_pac_trs.trs, pl_pac_trs.metrics)
    for info in pkgutil.iter_modules(package.__path__)
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
