"""Whole-tensor datasets served in index batches: cheap, resumable and DDP-aware."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

Transform = Callable[[Tensor, "torch.Generator | None"], Tensor]


class IndexBatchSampler(Sampler[tuple[Tensor, int | None]]):
    """Yields (indices, augmentation seed) batches; the order is a pure function of (seed, epoch, rank)."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start (also after resuming)."""
        self.epoch = epoch

    def _indices(self) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.n)[self.rank::self.world_size]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g)[self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[Tensor, int | None]]:
        idx = self._indices()
        g = torch.Generator().manual_seed(self.seed * 7_919 + self.epoch * 104_729 + self.rank)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            aug_seed = int(torch.randint(2**62, (1,), generator=g)) if self.shuffle else None
            yield idx[start:start + self.batch_size], aug_seed

    def __len__(self) -> int:
        per_rank = len(range(self.rank, self.n, self.world_size))
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)


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
