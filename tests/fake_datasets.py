"""Tiny datasets written in the real on-disk formats that torchvision's loaders read."""
from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, gz_only: bool = False) -> None:
    """Write a uint8 array as an IDX file (MNIST's format) plus its .gz twin, or only the .gz as distributed."""
    magic = {1: 2049, 3: 2051}[array.ndim]
    blob = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    if not gz_only:
        path.write_bytes(blob)
    path.with_name(path.name + ".gz").write_bytes(gzip.compress(blob))


def write_mnist(root: Path, n_train: int = 300, n_test: int = 100, seed: int = 0, gz_only: bool = False) -> Path:
    """data_dir/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] with class-dependent digits
    (gz_only: just the four .gz files, as the official download and the shared data folder hold them)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):  # a bright bar whose position encodes the label: learnable
            images[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 250
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz_only)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz_only)
    return root


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar(root: Path, num_classes: int = 10, n_per_batch: int = 60, seed: int = 0) -> dict:
    """data_dir/cifar-{10,100}-*-py pickles; returns the class attributes (file lists with md5s) to patch."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-10-batches-py" if num_classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    label_key = "labels" if num_classes == 10 else "fine_labels"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if num_classes == 10 else ["train", "test"]
    for name in names:
        labels = rng.integers(0, num_classes, n_per_batch)
        data = rng.integers(0, 256, (n_per_batch, 3 * 32 * 32)).astype(np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, label_key: labels.tolist(), "batch_label": name}, f)
    meta_name, meta_key = ("batches.meta", "label_names") if num_classes == 10 else ("meta", "fine_label_names")
    with open(folder / meta_name, "wb") as f:
        pickle.dump({meta_key: [f"class{i}" for i in range(num_classes)]}, f)
    files = {n: [n, _md5(folder / n)] for n in names}
    return {"train_list": [files[n] for n in names[:-1]], "test_list": [files[names[-1]]],
            "meta": {"filename": meta_name, "key": meta_key, "md5": _md5(folder / meta_name)}}
