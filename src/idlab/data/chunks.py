"""Several training batches per Lightning batch: the index batches of an epoch grouped into chunks.

A graph-captured training step is a few microseconds of GPU work, less than Lightning spends on one batch
(hooks, logging, progress). So the graph path hands Lightning one `Chunk` of consecutive optimiser steps at a
time; where a chunk ends is decided by the training side (`ChunkPlan`) so that every step a callback or a
logger acts on still starts or ends a Lightning batch. The batches and their order are exactly those of
`IndexBatchSampler`: chunking regroups them, it does not change them.
"""
from __future__ import annotations

from collections.abc import Iterator
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from idlab.data.batches import IndexBatchSampler


class Chunk:
    """Consecutive training batches run as one Lightning batch (a plain object: Lightning passes it untouched).

    `index` is (steps, batch_size) int64 (pinned when `pin`), row k holding batch k's example indices in its
    first `sizes[k]` entries; `seeds` are the batches' augmentation seeds; `start` is the global step of row 0.
    """

    __slots__ = ("start", "index", "sizes", "seeds")

    def __init__(self, start: int, index: Tensor, sizes: tuple[int, ...], seeds: tuple[int | None, ...]) -> None:
        self.start, self.index, self.sizes, self.seeds = start, index, sizes, seeds

    @property
    def steps(self) -> int:
        """Optimiser steps in this chunk."""
        return len(self.sizes)

    @property
    def examples(self) -> int:
        """Training examples in this chunk."""
        return sum(self.sizes)


class ChunkPlan:
    """Where chunks of an epoch end (the training side's decision); `split` must cover `count` steps exactly."""

    def position(self) -> tuple[int, int]:
        """(global step, batches of this epoch already done) when an epoch's iteration starts."""
        raise NotImplementedError

    def split(self, start: int, count: int) -> list[int]:
        """Chunk lengths for `count` consecutive steps starting at global step `start`."""
        raise NotImplementedError

    def limit(self, batches: int) -> int:
        """Steps of an epoch that train (Lightning's limit_train_batches applied to `batches`)."""
        return batches


class ChunkSampler(Sampler[Chunk]):
    """Groups an `IndexBatchSampler`'s batches into `Chunk`s; its length is the epoch's optimiser steps."""

    def __init__(self, batches: IndexBatchSampler, plan: ChunkPlan, pin: bool) -> None:
        self.batches, self.plan, self.pin = batches, plan, pin

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start (also after resuming)."""
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return self.plan.limit(len(self.batches))

    def __iter__(self) -> Iterator[Chunk]:
        keys = list(self.batches)[: len(self)]
        step, done = self.plan.position()
        keys = keys[: len(keys) - done]  # a mid-epoch resume trains the rest of the epoch, as the eager loop does
        first = 0
        for length in self.plan.split(step, len(keys)):
            part = keys[first: first + length]
            index = torch.zeros(length, self.batches.batch_size, dtype=torch.int64)
            for row, (idx, _) in zip(index, part):
                row[: len(idx)] = idx
            yield Chunk(step, index.pin_memory() if self.pin else index, tuple(len(i) for i, _ in part),
                        tuple(s for _, s in part))
            step, first = step + length, first + length


class _Identity(Dataset):
    """The sampler yields ready `Chunk`s; the dataset hands them on."""

    def __getitem__(self, chunk: Chunk) -> Chunk:
        return chunk

    def __len__(self) -> int:  # pragma: no cover - DataLoader asks only with automatic batching
        return 0


def chunk_loader(batches: IndexBatchSampler, plan: ChunkPlan, pin: bool) -> DataLoader:
    """A DataLoader of `Chunk`s (no collation, no workers)."""
    return DataLoader(_Identity(), sampler=ChunkSampler(batches, plan, pin), batch_size=None, num_workers=0,
                      generator=torch.Generator())  # not the global RNG (see batch_loader)
