"""Suite-wide settings: the environment the suite needs, hypothesis's CI profile, and what a test
needs from the machine (a C++ compiler, a GPU, the real-oscillator record), skipped with the reason
when it is absent.

The environment is the suite's own, whatever the shell exported: W&B offline and silent with no
other ``WANDB_*`` setting (``WANDB_MODE=disabled``, a ``WANDB_RUN_ID`` or an API key exported on a
cluster would change what the W&B tests see, or reach a server), and none of the package's
``PL_PAC_TRS_DEBUG`` / ``PL_PAC_TRS_TRUST_PICKLE`` switches. Tests that need another environment
set it with ``monkeypatch`` (or pass ``env=`` to their subprocess).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import matplotlib
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]

#: The variables the suite sets for every test; any other ``WANDB_*`` variable is removed.
SUITE_ENV = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
#: The package's switches that change how errors and pickles are handled: never inherited.
CLEARED = ("PL_PAC_TRS_DEBUG", "PL_PAC_TRS_TRUST_PICKLE")


def _suite_environment(environ) -> None:
    for key in [k for k in environ if k.startswith("WANDB_") or k in CLEARED]:
        del environ[key]
    environ.update(SUITE_ENV)


# At import, before any test module imports wandb (it reads the environment once, when its
# settings are first loaded); and again for every test, in case one changed it.
_suite_environment(os.environ)


@pytest.fixture(autouse=True)
def suite_environment(monkeypatch):
    """Every test starts from the suite's environment (``monkeypatch`` undoes changes)."""
    for key in [k for k in os.environ if k.startswith("WANDB_") or k in CLEARED]:
        monkeypatch.delenv(key)
    for key, value in SUITE_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(autouse=True)
def log_levels():
    """The levels of Lightning's and the package's loggers are given back after each test: a
    benchmark's ``main`` run in-process silences them (``benchmarks.common.quiet``), and a later
    test reading log lines with ``caplog`` would otherwise see none."""
    ours = ("lightning", "pl_pac_trs")
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith(ours)]
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name in [n for n in list(logging.root.manager.loggerDict) if n.startswith(ours)]:
        logging.getLogger(name).setLevel(levels.get(name, logging.NOTSET))


# Hypothesis's caches go to the temporary directory, not to ``.hypothesis`` in the working
# directory (the source tree); HYPOTHESIS_STORAGE_DIRECTORY still chooses another place.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "pl-pac-trs-hypothesis")

# "ci" (default): the same examples every run, so CI is reproducible; "dev": fresh examples.
# No example database: it would be written into the working directory (the source tree).
settings.register_profile(
    "ci",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
    derandomize=True,
)
settings.register_profile(
    "dev",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# --- what a test needs from the machine -----------------------------------------------------

#: The Schmidt & Lipson double-oscillator record (exp V). ``PL_PAC_TRS_RECORD`` names the file;
#: otherwise it is looked for in ``shared/data/`` beside the checkout.
RECORD_NAME = "real_double_linear_h_1.txt"
RECORD_ENV = "PL_PAC_TRS_RECORD"


def find_record() -> Path | None:
    """The real-oscillator record, or ``None`` where this machine has none."""
    named = os.environ.get(RECORD_ENV)
    candidates = [Path(named)] if named else [ROOT.parent / "shared" / "data" / RECORD_NAME]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    return None


RECORD_MISSING = (
    f"needs the real-oscillator record {RECORD_NAME}: set {RECORD_ENV}=/path/to/{RECORD_NAME} "
    f"or put it in {ROOT.parent / 'shared' / 'data'}"
)


@pytest.fixture
def record_path() -> Path:
    """The real-oscillator record (the test skips, saying how to provide it, without one)."""
    path = find_record()
    if path is None:
        pytest.skip(RECORD_MISSING)
    return path


def has_cxx_compiler() -> bool:
    """Whether a C++ compiler is on the PATH (``torch.compile``'s CPU backend builds C++)."""
    names = [os.environ.get("CXX", ""), "c++", "g++", "clang++"]
    return any(name and shutil.which(name) for name in names)


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_runtest_setup(item) -> None:
    if item.get_closest_marker("needs_compiler") and not has_cxx_compiler():
        pytest.skip("needs a C++ compiler for torch.compile (none of $CXX, c++, g++, clang++)")
