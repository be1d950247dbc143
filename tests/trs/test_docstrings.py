"""The examples in the docstrings of pl_pac_trs.trs and pl_pac_trs.metrics run and hold."""

import doctest
import importlib

import pytest

#: The modules whose docstrings show examples (each must run at least one).
MODULES = [
    "pl_pac_trs.metrics.functional",
    "pl_pac_trs.metrics.rollout",
    "pl_pac_trs.metrics.trajectory",
    "pl_pac_trs.trs.data_contract",
    "pl_pac_trs.trs.fields",
    "pl_pac_trs.trs.fused.activation_pool",
    "pl_pac_trs.trs.fused.tanh_grad",
    "pl_pac_trs.trs.fused.tanh_mlp",
    "pl_pac_trs.trs.integrators",
    "pl_pac_trs.trs.loss",
    "pl_pac_trs.trs.model_checks",
    "pl_pac_trs.trs.module",
    "pl_pac_trs.trs.prediction_writer",
    "pl_pac_trs.trs.reversal",
    "pl_pac_trs.trs.specs",
    "pl_pac_trs.trs.visualization",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} shows no example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
