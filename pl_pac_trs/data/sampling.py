"""Shuffling that a resumed fit repeats exactly: the permutation of epoch ``e`` depends only on
the run's seed and ``e``.

A plain ``DataLoader(shuffle=True)`` draws its permutations from the global torch RNG, whose state
a checkpoint does not hold: a fit resumed with ``--ckpt_path=last`` would see other batches than
the uninterrupted fit. Lightning calls ``set_epoch`` on a sampler that has one at the start of
every epoch (and, under DDP, wraps it in a ``DistributedSamplerWrapper`` that deals its
permutation out to the ranks, so every rank must draw the same one).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sized

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["EpochSeededSampler"]

_MIX = 1_000_003  # seeds of (seed, epoch) pairs never collide for epochs below this


class EpochSeededSampler(Sampler[int]):
    """A random permutation per epoch, seeded by ``(seed, epoch)``.

    Args:
        data: The dataset (only its length is used).
        seed: Base seed; default: ``torch.initial_seed()`` when the sampler is made, i.e. the
            ``seed_everything`` seed of the run. Under DDP the default is the seed that
            ``seed_everything`` gave every rank, or 0 in a run that was not seeded (like
            ``DistributedSampler``), so that all ranks draw the same permutation.

    Example:
        >>> sampler = EpochSeededSampler(range(5), seed=0)
        >>> sampler.set_epoch(3)
        >>> first = list(sampler)
        >>> sampler.set_epoch(3)
        >>> list(sampler) == first and sorted(first) == [0, 1, 2, 3, 4]
        True
    """

    def __init__(self, data: Sized, seed: int | None = None) -> None:
        self.n = len(data)
        self.seed = int(_default_seed() if seed is None else seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the permutation of ``epoch``."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed((self.seed * _MIX + self.epoch) % 2**63)
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


def _default_seed() -> int:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        # the ranks' initial seeds differ unless seed_everything gave them one
        return int(os.environ.get("PL_GLOBAL_SEED", 0))
    return torch.initial_seed()
