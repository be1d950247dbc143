"""Trajectory datamodule under 2-process CPU DDP: cache written once, identical data per rank."""

from pathlib import Path

import pytest
import torch
from ddp_script import run_ddp_script

SCRIPT = Path(__file__).with_name("ddp_cache.py")


@pytest.mark.ddp
@pytest.mark.slow
def test_ddp_cache_written_once_and_data_identical(tmp_path):
    run_ddp_script(SCRIPT, tmp_path)
    ranks = [torch.load(tmp_path / f"rank_{r}.pt") for r in (0, 1)]
    assert len(ranks[0]["writes"]) == 1 and ranks[1]["writes"] == []  # prepare_data on rank 0
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [Path(ranks[0]["writes"][0]).name]
    assert ranks[0]["train"] == ranks[1]["train"] and ranks[0]["test"] == ranks[1]["test"]
    # The full batch of 12 windows is split by the DistributedSampler: 6 disjoint per rank.
    seen = torch.cat([ranks[0]["seen"], ranks[1]["seen"]])
    assert ranks[0]["seen"].shape == (6, 2) and ranks[1]["seen"].shape == (6, 2)
    key = lambda rows: sorted(map(tuple, rows.tolist()))  # noqa: E731
    assert key(seen) == key(ranks[0]["all"])
