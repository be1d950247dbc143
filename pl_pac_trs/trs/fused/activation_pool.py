"""Storage reused from step to step for what a fused rollout keeps for its backward pass.

A fused rollout node (:class:`~pl_pac_trs.trs.fused.tanh_mlp.LeapfrogTanhMLPFunction`,
:class:`~pl_pac_trs.trs.fused.tanh_mlp_rk4.RK4TanhMLPFunction`) keeps the hidden activations of
every field evaluation until its backward pass (at exp I thirty tensors of 150 x 1000 floats).
Allocated afresh every step, they come from glibc's heap and are all freed at the end of the
step; when they lie at the top of the heap, glibc hands them back to the system and the next
step faults every page in again. Whether a process does so depends on where its other heap
blocks happen to lie, so some processes trained much slower than others from start to end
(without the pool 1-4 of 10 processes ran 35-70 % slower at exp I; docs/trs.md, "Performance").

Here a rollout takes one block per hidden layer, ``(evaluations, rows, width)``, from an
:class:`ActivationPool` and the block goes back to the pool when the autograd node that saved
it is freed (its graph released, after the backward pass or when the output is dropped), never
earlier: a graph kept with ``retain_graph=True`` keeps its block. A training loop then cycles
through two blocks and faults no pages. The one-evaluation nodes (the fused field
:class:`~pl_pac_trs.trs.fused.tanh_mlp.TanhMLPFunction`, HODEN's closed-form derivative) allocate
as before: pooled, an exp I HODEN step measured 5.7 % slower. Only CPU tensors are pooled
(CUDA's caching allocator already reuses its memory).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "POOL",
    "ActivationPool",
    "RolloutActivations",
    "activation_store",
]

_Key = tuple[tuple[int, ...], torch.dtype, torch.device]


class ActivationPool:
    """Idle activation blocks by shape, dtype and device, like a caching allocator: a block
    given back waits for the next :meth:`take` of its shape. Idle blocks are kept while they and
    the blocks in use together stay within the most ever in use at once (what training needed
    anyway); beyond that the shapes returned longest ago are dropped first. Thread-safe.

    Example:
        >>> pool = ActivationPool()
        >>> block = pool.take((30, 4, 8), torch.float32, torch.device("cpu"))
        >>> pool.give_back(block)
        >>> pool.take((30, 4, 8), torch.float32, torch.device("cpu")) is block
        True
    """

    def __init__(self) -> None:
        self.allocated = 0  #: blocks allocated so far (the others were reused)
        self.in_use = 0  #: bytes of the blocks taken and not given back
        self.high_water = 0  #: the most bytes ever in use at once
        self._idle: dict[_Key, list[Tensor]] = {}  # shapes in the order last given back
        self._idle_bytes = 0
        self._lock = threading.Lock()

    @property
    def idle(self) -> int:
        """Bytes of the idle blocks."""
        return self._idle_bytes

    def take(self, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> Tensor:
        """An idle block of this shape, dtype and device (the last returned), or a new
        (uninitialised) one."""
        key = (tuple(shape), dtype, device)
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                block = idle.pop()
                self._idle_bytes -= _nbytes(block)
            else:
                self.allocated += 1
                block = torch.empty(key[0], dtype=dtype, device=device)
            self.in_use += _nbytes(block)
            self.high_water = max(self.high_water, self.in_use)
        return block

    def give_back(self, block: Tensor) -> None:
        """Make ``block`` available to the next :meth:`take` of its shape."""
        key = (tuple(block.shape), block.dtype, block.device)
        size = _nbytes(block)
        with self._lock:
            self.in_use -= size
            blocks = self._idle.pop(key, [])
            blocks.append(block)
            self._idle[key] = blocks  # now the shape last given back
            self._idle_bytes += size
            while self._idle_bytes + self.in_use > self.high_water:
                oldest = next(iter(self._idle))
                self._idle_bytes -= _nbytes(self._idle[oldest].pop(0))
                if not self._idle[oldest]:
                    del self._idle[oldest]

    def clear(self) -> None:
        """Drop every idle block and forget the high-water mark (blocks in use stay counted)."""
        with self._lock:
            self._idle.clear()
            self._idle_bytes = 0
            self.high_water = self.in_use


def _nbytes(block: Tensor) -> int:
    return block.numel() * block.element_size()


class _Lease:
    """Gives the blocks back to their pool when it is freed (with the node that holds it)."""

    __slots__ = ("blocks", "pool")

    def __init__(self, pool: ActivationPool, blocks: list[Tensor]) -> None:
        self.pool, self.blocks = pool, blocks

    def __del__(self) -> None:
        for block in self.blocks:
            self.pool.give_back(block)


class RolloutActivations:
    """The activation blocks of one rollout: :meth:`slot` is the next evaluation's output
    tensor ``(rows, width)`` of a hidden layer, :meth:`lease_to` ties the blocks' return to the
    pool to the lifetime of an autograd node's ``ctx``."""

    def __init__(
        self,
        pool: ActivationPool,
        evaluations: int,
        rows: int,
        widths: Sequence[int],
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self._pool = pool
        self._blocks = [pool.take((evaluations, rows, w), dtype, device) for w in widths]
        self._next = [0] * len(self._blocks)

    def slot(self, layer: int) -> Tensor:
        """The next evaluation's output of hidden layer ``layer``."""
        index = self._next[layer]
        self._next[layer] = index + 1
        return self._blocks[layer][index]

    def lease_to(self, ctx: object) -> None:
        """Return the blocks to the pool when ``ctx`` (a node's context) is freed."""
        ctx.activation_lease = _Lease(self._pool, self._blocks)  # type: ignore[attr-defined]


#: The pool the fused nodes take their blocks from.
POOL = ActivationPool()


def activation_store(
    evaluations: int, x: Tensor, widths: Sequence[int], params: Sequence[Tensor]
) -> RolloutActivations | None:
    """Blocks from :data:`POOL` for ``evaluations`` evaluations whose saved activations have
    the given ``widths``, on a batch like ``x``; ``None`` (allocate as usual) off the CPU, under
    autocast (the activations' dtype is then the autocast one) and for parameters of another
    dtype than ``x``."""
    if x.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
        return None
    if any(p.dtype != x.dtype for p in params):
        return None
    return RolloutActivations(POOL, evaluations, x.shape[0], widths, x.dtype, x.device)
