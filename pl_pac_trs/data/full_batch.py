"""The whole set as one batch per epoch, handed out without a ``DataLoader``.

With ``batch_size=None`` (the reference experiments of TRS-ODEN) an epoch is one batch of every
window. A ``DataLoader`` still builds an iterator, draws a permutation and gathers the rows anew
each epoch, a sizeable share of Lightning's per-epoch cost at full batch (measured in
``docs/trs.md``, "Performance"). A permutation of the one batch only reorders its rows, which a
mean over the batch does not see, so :class:`FullBatchLoader` hands out the stacked set itself
in its stored order. Each epoch gets fresh copies of the tensors: a hook that edits its batch in
place cannot change the data of later epochs.

The trajectory datamodules use it for a full batch in a single process without worker
processes; under DDP they keep the ``DataLoader`` (Lightning deals its rows out to the ranks
through a distributed sampler).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["FullBatchLoader"]


class FullBatchLoader:
    """An iterable of exactly one batch, ``collate_fn`` of every item of ``dataset`` in order.

    Args:
        dataset: a map-style dataset (with ``__getitems__`` for a batched fetch, or items).
        collate_fn: turns the list of items (or what ``__getitems__`` returns) into the batch.

    Example:
        >>> import torch
        >>> from pl_pac_trs.data.windows import BatchDictDataset, collate_batch
        >>> loader = FullBatchLoader(BatchDictDataset({"x": torch.arange(6.0)}), collate_batch)
        >>> len(loader), [b["x"].tolist() for b in loader]
        (1, [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    """

    def __init__(self, dataset: Dataset, collate_fn: Callable[[object], dict[str, Tensor]]) -> None:
        self.dataset = dataset
        n = len(dataset)  # type: ignore[arg-type]
        indices = list(range(n))
        getitems = getattr(dataset, "__getitems__", None)
        items = getitems(indices) if getitems is not None else [dataset[i] for i in indices]
        self._batch = collate_fn(items) if n else None

    def __len__(self) -> int:
        return 0 if self._batch is None else 1

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        if self._batch is not None:
            yield {key: value.clone() for key, value in self._batch.items()}
