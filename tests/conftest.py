"""Shared fixtures: compose real configs for fast CPU runs in a temporary run folder."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict
from pytorch_lightning.callbacks import Callback

from fake_datasets import write_cifar, write_mnist

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
FAST = ["trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2", "trainer.num_sanity_val_steps=0", "++callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false", "data.on_device=false"]


def compose_config(overrides: list[str], output_dir: Path, fast: bool = True) -> DictConfig:
    """Compose configs/train.yaml with `overrides` (after the fast CPU defaults), writing into `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=(FAST if fast else []) + list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def model_checkpoint(overrides: list[str], path: Path) -> Path:
    """Save the composed config's freshly built model as a Lightning-style checkpoint (state_dict keys net.*)."""
    import torch
    from hydra.utils import instantiate

    cfg = compose_config(overrides, path.parent / f".{path.stem}_compose", fast=False)
    net = instantiate(cfg.model, spec=instantiate(cfg.data).spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path)
    return path


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """make_cfg(*overrides, run="run") → config of a fast CPU run in tmp_path/run."""
    def make(*overrides: str, run: str = "run", fast: bool = True) -> DictConfig:
        return compose_config(list(overrides), tmp_path / run, fast)
    return make


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_dir holding a small MNIST in torchvision's raw IDX layout."""
    return write_mnist(tmp_path_factory.mktemp("mnist_data"))


@pytest.fixture
def cifar_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Callable[[int], Path]:
    """cifar_dir(num_classes) → a data_dir holding small CIFAR pickles; torchvision's md5 table points at them."""
    from torchvision.datasets import CIFAR10, CIFAR100

    def make(num_classes: int = 10) -> Path:
        root = tmp_path_factory.mktemp(f"cifar{num_classes}_data")
        for attr, value in write_cifar(root, num_classes).items():
            monkeypatch.setattr(CIFAR10 if num_classes == 10 else CIFAR100, attr, value)
        return root
    return make


@pytest.fixture
def one_thread():
    """Single-threaded torch for tests of small tensors (the CI machine has 2 cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ExplodingGradients(Callback):
    """A callback (configs: +callbacks.x._target_=conftest.ExplodingGradients) that multiplies every gradient by
    `factor` from optimiser step `step` on: a run that trains normally, then diverges."""

    def __init__(self, step: int, factor: float = 1e38) -> None:
        self.step, self.factor = step, factor

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step >= self.step:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.mul_(self.factor)


def checkpoint_losses(cfg: DictConfig) -> dict[str, float]:
    """Every .ckpt under the run folder → its cross-entropy on the first training batch (NaN/inf: diverged)."""
    import torch
    import torch.nn.functional as F

    from idlab.run import build_module, make

    data = make(cfg.data)
    data.prepare_data()
    data.setup("fit")
    x, y = next(iter(data.train_dataloader()))
    out = {}
    for path in sorted(Path(cfg.paths.output_dir).rglob("*.ckpt")):
        module = build_module(cfg, data)
        module.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
        module.eval()
        with torch.no_grad():
            out[str(path)] = float(F.cross_entropy(module(x), y))
    return out
