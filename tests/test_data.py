"""Datasets through the real torchvision loaders on small real-format files; task definitions are right."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from idlab.data import CIFAR, MNIST, MNISTMini, ModularArithmetic
from idlab.data.spec import DataUnavailableError
from idlab.data.vision import read_idx, shuffled_labels


def test_mnist_reads_idx_files_and_carves_seeded_val(mnist_dir: Path) -> None:
    dm = MNIST(data_dir=str(mnist_dir), val_size=50)
    dm.setup()
    assert {k: len(s.x) for k, s in dm.splits.items()} == {"train": 250, "val": 50, "test": 100}
    assert dm.splits["train"].x.dtype == torch.uint8 and dm.splits["train"].x.shape[1:] == (1, 28, 28)
    again = MNIST(data_dir=str(mnist_dir), val_size=50)
    again.setup()
    assert torch.equal(again.splits["val"].y, dm.splits["val"].y)


def test_mnist_reads_a_read_only_folder_of_gz_files_in_place(tmp_path: Path) -> None:
    from fake_datasets import write_mnist

    plain_dir, gz_dir = write_mnist(tmp_path / "plain"), write_mnist(tmp_path / "gz", gz_only=True)
    raw = gz_dir / "MNIST" / "raw"
    before = sorted(p.name for p in raw.iterdir())
    assert before == sorted(f"{n}.gz" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    for folder in (raw, raw.parent, gz_dir):
        folder.chmod(0o555)  # as /work/shared/data: nothing may be unpacked into it
    try:
        dm = MNIST(data_dir=str(gz_dir), val_size=50, download=False)
        dm.prepare_data()
        dm.setup()
    finally:
        for folder in (gz_dir, raw.parent, raw):
            folder.chmod(0o755)
    assert sorted(p.name for p in raw.iterdir()) == before, "reading wrote nothing next to the .gz files"
    ref = MNIST(data_dir=str(plain_dir), val_size=50)  # the same digits, unpacked
    ref.setup()
    for split in ("train", "val", "test"):
        assert torch.equal(dm.splits[split].x, ref.splits[split].x) and torch.equal(dm.splits[split].y, ref.splits[split].y)
    test_labels = read_idx(plain_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte")
    assert dm.splits["test"].y.tolist() == test_labels.tolist() and dm.splits["test"].x.shape == (100, 1, 28, 28)


def test_a_missing_or_broken_idx_file_is_named_never_replaced(tmp_path: Path) -> None:
    from fake_datasets import write_mnist

    gz_dir = write_mnist(tmp_path / "gz", gz_only=True)
    raw = gz_dir / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataUnavailableError, match=r"t10k-labels-idx1-ubyte not found .*ubyte\.gz"):
        MNIST(data_dir=str(gz_dir)).prepare_data()
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02")  # 5 promised, 2 there
    with pytest.raises(RuntimeError, match="truncated"):
        read_idx(raw / "t10k-labels-idx1-ubyte")
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(DataUnavailableError, match="not a uint8 IDX file"):
        MNIST(data_dir=str(gz_dir)).prepare_data()


def test_mnist_download_goes_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls = []

    class Recorder:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            self.data, self.targets = torch.zeros(3, 28, 28, dtype=torch.uint8), torch.tensor([0, 1, 2])
    monkeypatch.setattr(torchvision.datasets, "MNIST", Recorder)
    MNIST(data_dir=str(tmp_path), download=True).prepare_data()
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]


def test_missing_data_names_path_flag_and_offline_option(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match=r"(?s)data_dir=.*empty.*download=true.*mnist_mini"):
        MNIST(data_dir=str(tmp_path / "empty"), download=False).prepare_data()


@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_reads_pickles(cifar_dir, num_classes: int) -> None:
    dm = CIFAR(num_classes=num_classes, data_dir=str(cifar_dir(num_classes)), val_size=20)
    dm.setup()
    x, y = dm.splits["train"].x, dm.splits["train"].y
    assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.uint8 and int(y.max()) < num_classes
    assert len(dm.splits["test"].x) == 60


def test_mnist_mini_is_real_offline_digits_split_disjointly() -> None:
    dm = MNISTMini(val_size=500, test_size=500)
    dm.setup()
    sizes = {k: len(s.x) for k, s in dm.splits.items()}
    assert sizes == {"train": 4000, "val": 500, "test": 500}
    assert set(dm.splits["train"].y.tolist()) == set(range(10))
    flat = {k: {bytes(img.numpy()) for img in s.x} for k, s in dm.splits.items()}
    assert not (flat["train"] & flat["test"]) and not (flat["train"] & flat["val"])


def test_pixel_permutation_is_one_fixed_permutation_for_all_splits() -> None:
    plain, shuffled = MNISTMini(), MNISTMini(permute_pixels=True, pixel_seed=3)
    plain.setup(), shuffled.setup()
    a, b = plain.splits["train"].x.flatten(1).float(), shuffled.splits["train"].x.flatten(1).float()
    assert not torch.equal(a, b)
    perm = torch.randperm(784, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[:, perm], b)
    assert torch.equal(plain.splits["test"].x.flatten(1)[:, perm], shuffled.splits["test"].x.flatten(1))


def test_shuffled_labels_keep_marginals_and_touch_only_train() -> None:
    y = torch.arange(1000) % 10
    z = shuffled_labels(y, 0.5, seed=0)
    assert torch.equal(torch.bincount(z), torch.bincount(y))
    assert 0.3 < (z != y).float().mean() < 0.5
    dm = MNISTMini(shuffle_labels=1.0)
    ref = MNISTMini()
    dm.setup(), ref.setup()
    assert (dm.splits["train"].y != ref.splits["train"].y).float().mean() > 0.8
    assert torch.equal(dm.splits["val"].y, ref.splits["val"].y)


def test_class_subset_keeps_exactly_those_digits_with_their_labels() -> None:
    full, low = MNISTMini(), MNISTMini(classes=[0, 1, 2, 3, 4])
    full.setup(), low.setup()
    for split in ("train", "val", "test"):
        keep = full.splits[split].y < 5
        assert torch.equal(low.splits[split].y, full.splits[split].y[keep])  # same order, labels unchanged
        assert torch.equal(low.splits[split].x, full.splits[split].x[keep])
    assert low.spec.num_classes == 10  # the head keeps every class, so checkpoints move between subsets


def test_class_subset_reads_torchvision_cifar(cifar_dir) -> None:
    full = CIFAR(num_classes=10, data_dir=str(cifar_dir(10)), val_size=20)
    dm = CIFAR(num_classes=10, data_dir=str(cifar_dir(10)), val_size=20, classes=[3, 7])
    full.setup(), dm.setup()
    for split, s in dm.splits.items():
        expected = full.splits[split].y[(full.splits[split].y == 3) | (full.splits[split].y == 7)]
        assert len(expected) > 0 and torch.equal(s.y, expected)


@pytest.mark.parametrize("classes,match", [([], "distinct class indices"), ([1, 1], "distinct class indices"),
                                           ([-1], "distinct class indices"), ([10], r"class ≥ 10.*0\.\.9")])
def test_bad_class_subset_is_named_before_reading(classes: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MNISTMini(classes=classes).prepare_data()


@pytest.mark.parametrize("op,fn", [("add", lambda a, b, p: (a + b) % p), ("sub", lambda a, b, p: (a - b) % p),
                                   ("mul", lambda a, b, p: (a * b) % p), ("div", lambda a, b, p: (a * pow(b, p - 2, p)) % p)])
def test_modular_equations_are_correct(op: str, fn) -> None:
    dm = ModularArithmetic(p=7, op=op, train_frac=0.5)
    x, y = dm.equations()
    assert len(x) == (42 if op == "div" else 49)
    for (a, o, b, eq), c in zip(x.tolist(), y.tolist()):
        assert c == fn(a, b, 7) and eq == 7 + 4 and o == 7 + ["add", "sub", "mul", "div"].index(op)
    if op == "div":
        assert (x[:, 2] != 0).all() and torch.equal((y * x[:, 2]) % 7, x[:, 0])


def test_modular_train_val_and_test_share_no_equation_and_cover_the_task() -> None:
    dm = ModularArithmetic(p=97, op="div", train_frac=0.3, val_frac=0.5)
    dm.setup()
    rows = {name: {tuple(r) for r in split.x.tolist()} for name, split in dm.splits.items()}
    assert len(rows["train"]) == round(0.3 * 97 * 96)
    assert len(rows["val"]) == round(0.5 * (97 * 96 - len(rows["train"])))
    assert len(rows["train"]) + len(rows["val"]) + len(rows["test"]) == 97 * 96
    assert not rows["val"] & rows["test"], "a number chosen on val must not be reported on the same equations"
    assert not rows["train"] & (rows["val"] | rows["test"])
    # The training set is the one earlier versions used (the held-out set was split, not redrawn).
    again = ModularArithmetic(p=97, op="div", train_frac=0.3, val_frac=0.2)
    again.setup()
    assert {tuple(r) for r in again.splits["train"].x.tolist()} == rows["train"]


@pytest.mark.parametrize("kwargs,match", [({"p": 96}, "prime"), ({"op": "pow"}, "operation"),
                                          ({"train_frac": 1.0}, "train_frac"), ({"val_frac": 0.0}, "val_frac"),
                                          ({"p": 3, "train_frac": 0.9}, "empty split")])
def test_modular_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModularArithmetic(**kwargs)


def test_batches_are_seeded_per_epoch_and_cover_the_split() -> None:
    dm = ModularArithmetic(p=11, batch_size=16)
    dm.setup()
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    first = torch.cat([x for x, _ in loader])
    loader.sampler.set_epoch(1)
    second = torch.cat([x for x, _ in loader])
    loader.sampler.set_epoch(0)
    assert torch.equal(torch.cat([x for x, _ in loader]), first)
    assert not torch.equal(first, second)
    assert sorted(map(tuple, first.tolist())) == sorted(map(tuple, dm.splits["train"].x.tolist()))


def test_cifar_augmentation_is_deterministic_given_seed_and_shape_preserving(cifar_dir) -> None:
    dm = CIFAR(data_dir=str(cifar_dir(10)), val_size=20, batch_size=8)
    dm.setup()
    x = dm.splits["train"].x[:8]
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    a, b = dm.transform(x, gen()), dm.transform(x, gen())
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b)
    assert not torch.equal(a, dm.transform(x, None))


def test_mnist_mini_cache_holds_the_same_digits(tmp_path: Path) -> None:
    fresh = MNISTMini(cache_dir=str(tmp_path))
    fresh.setup()
    assert (tmp_path / "mnist_mini.pt").is_file()
    cached = MNISTMini(cache_dir=str(tmp_path))
    cached.setup()
    for split in ("train", "val", "test"):
        assert torch.equal(fresh.splits[split].x, cached.splits[split].x)
        assert torch.equal(fresh.splits[split].y, cached.splits[split].y)
