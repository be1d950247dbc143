"""The ``benchmarks`` package lives at the repository root, outside the installed package."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture
def restore_threads(monkeypatch):
    """A benchmark run in-process sets torch's thread count and W&B off: both given back."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
