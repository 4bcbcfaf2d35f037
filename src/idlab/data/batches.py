"""Whole-tensor datasets served in index batches: cheap, resumable and DDP-aware."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

Transform = Callable[[Tensor, "torch.Generator | None"], Tensor]


class IndexBatchSampler(Sampler[tuple[Tensor, int | None]]):
    """Yields (indices, augmentation seed) batches; the order is a pure function of (seed, epoch, rank).

    Under DDP every rank yields the same number of batches, so no rank waits in a collective that another
    never reaches. Shuffled (training) batches: the epoch's permutation is padded with its own first indices
    to a multiple of `world_size`, as torch's DistributedSampler does, so up to world_size - 1 examples are
    seen twice per epoch and every rank gets the same batch sizes. In-order (evaluation) batches repeat and
    drop nothing, so val/test metrics count every example once (Lightning weights each batch by its size
    when it syncs them): each rank's share, which differs by at most one example between ranks, is cut into
    the same number of batches of at most `batch_size` examples.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        largest = -(-n // world_size)  # examples of the largest rank share
        self.num_batches = -(-largest // batch_size)
        if not shuffle and n // world_size < self.num_batches:
            raise ValueError(f"an evaluation split of {n} examples cannot give each of {world_size} processes "
                             f"{self.num_batches} non-empty batches; use fewer devices or a larger "
                             "data.eval_batch_size")

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start (also after resuming)."""
        self.epoch = epoch

    def _indices(self) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.n)[self.rank::self.world_size]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        pad = -self.n % self.world_size  # repeat the first indices (all of them, again, if n < pad)
        padding = order.repeat(-(-pad // self.n))[:pad] if pad else order[:0]
        return torch.cat([order, padding])[self.rank::self.world_size]

    def _batches(self) -> tuple[Tensor, ...]:
        idx = self._indices()
        if self.shuffle or self.world_size == 1:
            return idx.split(self.batch_size)
        return idx.tensor_split(self.num_batches)

    def __iter__(self) -> Iterator[tuple[Tensor, int | None]]:
        g = torch.Generator().manual_seed(self.seed * 7_919 + self.epoch * 104_729 + self.rank)
        for batch in self._batches():
            aug_seed = int(torch.randint(2**62, (1,), generator=g)) if self.shuffle else None
            yield batch, aug_seed

    def __len__(self) -> int:
        return self.num_batches


class TensorBatches(Dataset):
    """Index a pair of tensors (on CPU or on the GPU) by a whole batch at once."""

    def __init__(self, x: Tensor, y: Tensor, transform: Transform) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key: tuple[Tensor, int | None]) -> tuple[Tensor, Tensor]:
        idx, aug_seed = key
        if self.x.is_cuda:  # pinned, so the copy is truly asynchronous: no per-batch stall of the GPU
            idx = idx.pin_memory().to(self.x.device, non_blocking=True)
        gen = None
        if aug_seed is not None:
            gen = torch.Generator(device=self.x.device).manual_seed(aug_seed)
        return self.transform(self.x[idx], gen), self.y[idx]


def batch_loader(x: Tensor, y: Tensor, transform: Transform, sampler: IndexBatchSampler) -> DataLoader:
    """A DataLoader whose every item is a ready batch (no collation, no workers).

    Its own generator: a DataLoader without one draws its base seed from the global RNG at every epoch, which
    would move another run's model initialisation when runs train side by side in one process.
    """
    return DataLoader(TensorBatches(x, y, transform), sampler=sampler, batch_size=None, num_workers=0,
                      generator=torch.Generator())
