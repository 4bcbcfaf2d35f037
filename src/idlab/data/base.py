"""LightningDataModule for datasets that fit in memory, optionally held on the GPU."""
from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from idlab.data.batches import IndexBatchSampler, batch_loader
from idlab.data.chunks import ChunkPlan, chunk_loader
from idlab.data.spec import DataSpec

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """Inputs and labels of one split."""

    x: Tensor
    y: Tensor


class TensorDataModule(pl.LightningDataModule):
    """Loads whole splits as tensors once; batches are sliced from them (on the GPU if `on_device`)."""

    spec: DataSpec
    augment: bool = False  # `transform` may use its generator only when True; without it, it acts per example

    def __init__(self, batch_size: int, eval_batch_size: int | None = None, on_device: bool = True,
                 seed: int = 0) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"data.batch_size={batch_size} must be a positive integer")
        if eval_batch_size is not None and eval_batch_size <= 0:
            raise ValueError(f"data.eval_batch_size={eval_batch_size} must be a positive integer or null")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or max(batch_size, 1024)
        self.on_device, self.seed = on_device, seed
        self.splits: dict[str, Split] | None = None
        self.train_chunks: ChunkPlan | None = None  # set by graph-captured training: serve Chunks of batches

    def check_available(self) -> None:
        """Raise, naming the value and the fix, if `setup` could not load the data. Reads and downloads
        nothing, so it is safe on every rank before any model is built (subclasses with files on disk)."""

    def load(self) -> dict[str, Split]:
        """Return CPU tensors for train/val/test (subclasses)."""
        raise NotImplementedError

    def transform(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        """Turn a stored batch into model input; `gen` is given for training batches only."""
        return x

    def setup(self, stage: str | None = None) -> None:
        """Load the splits once (on every rank; only `prepare_data` may download) and move them next to the
        model when `on_device`."""
        if self.splits is None:
            self.splits = self.load()
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if self.on_device and self.splits["train"].x.device != device:
            self.splits = {k: Split(s.x.to(device), s.y.to(device)) for k, s in self.splits.items()}

    def _loader(self, split: str, train: bool) -> DataLoader:
        assert self.splits is not None, "call setup() first"
        s = self.splits[split]
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = IndexBatchSampler(len(s.x), self.batch_size if train else self.eval_batch_size,
                                    shuffle=train, seed=self.seed, rank=rank, world_size=world)
        if train and self.train_chunks is not None:
            return chunk_loader(sampler, self.train_chunks, pin=s.x.is_cuda)
        return batch_loader(s.x, s.y, self.transform, sampler)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, seeded per epoch, augmented batches."""
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in order."""
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches in order."""
        return self._loader("test", train=False)

    def split_tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """Model-ready (x, y) of a whole split, for probes such as activation ID."""
        if self.splits is None:
            self.setup()
        s = self.splits[split]
        return self.transform(s.x, None), s.y


def seeded_split(n: int, sizes: dict[str, int], seed: int) -> dict[str, Tensor]:
    """Deterministic disjoint index sets of the given sizes; the key given size -1 takes the rest."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fixed = sum(v for v in sizes.values() if v >= 0)
    if fixed >= n:
        raise ValueError(f"split sizes {sizes} leave no examples out of {n}")
    out, start = {}, 0
    for name, size in sizes.items():
        size = n - fixed if size < 0 else size
        out[name] = perm[start:start + size]
        start += size
    return out
