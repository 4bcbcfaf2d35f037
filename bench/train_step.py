"""Framework overhead: median optimiser-step time of idlab's Lightning pipeline vs a plain PyTorch loop.

python bench/train_step.py [--steps 300] [--out docs/benchmarks_train_step.md]
Runs on the GPU when there is one. CIFAR is written as random images in torchvision's pickle format
(timing does not depend on pixel values); mnist_mini and modular are the real datasets.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import compose_config  # noqa: E402
from fake_datasets import write_cifar  # noqa: E402
from idlab.run import build_module, build_trainer, make  # noqa: E402

CASES = {
    "fc / mnist_mini (bs 128)": ["data=mnist_mini", "model=fc"],
    "resnet18 / cifar10 (bs 128)": ["+exp=cifar10"],
    "transformer / mod-97 (bs 512)": ["+exp=math_equations", "trainer.max_epochs=-1"],
}


class StepTimer(pl.Callback):
    """Wall time of every training batch after `warmup`, measured between synchronised points every `every` steps."""

    def __init__(self, warmup: int = 20, every: int = 10) -> None:
        self.warmup, self.every, self.times, self.t0 = warmup, every, [], None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step < self.warmup or step % self.every:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self.t0 is not None:
            self.times.append((now - self.t0) / self.every)
        self.t0 = now


def framework_step(overrides: list[str], steps: int, data_dir: str) -> tuple[float, torch.nn.Module, object]:
    """Median step time of idlab.run's objects (same trainer config as train.py, no val, no checkpoints)."""
    cfg = compose_config([*overrides, f"paths.data_dir={data_dir}", "trainer=default", f"trainer.max_steps={steps}",
                          "trainer.limit_val_batches=0", "~callbacks.checkpoint", "test=false"],
                         Path(tempfile.mkdtemp()), fast=False)
    pl.seed_everything(0)
    data = make(cfg.data)
    module = build_module(cfg, data)
    trainer = build_trainer(cfg)
    timer = StepTimer()
    trainer.callbacks.append(timer)
    trainer.fit(module, datamodule=data)
    return statistics.median(timer.times), module, data


def plain_step(module, data, steps: int) -> float:
    """Median step time of a bare loop over the same network, optimiser and batches."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = module.net.to(device).train()
    opt = module.optimizer_factory([p for p in net.parameters() if p.requires_grad])
    x_all, y_all = data.splits["train"].x.to(device), data.splits["train"].y.to(device)
    bs, times, t0 = data.batch_size, [], None
    gen = torch.Generator(device=device).manual_seed(0)
    for step in range(steps):
        idx = torch.randint(len(x_all), (bs,), device=device)
        x = data.transform(x_all[idx], gen)
        loss = F.cross_entropy(net(x), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= 20 and step % 10 == 0:
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            if t0 is not None:
                times.append((now - t0) / 10)
            t0 = now
    return statistics.median(times)


def main() -> None:
    """Print a markdown table: case, framework ms/step, plain ms/step, ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp()
    from torchvision.datasets import CIFAR10

    for attr, value in write_cifar(Path(data_dir), 10, n_per_batch=10_000).items():
        setattr(CIFAR10, attr, value)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"device: {device}; torch {torch.__version__}; steps {args.steps}\n")
    print("| case | idlab ms/step | plain loop ms/step | ratio |\n|---|---|---|---|")
    for name, overrides in CASES.items():
        fw, module, data = framework_step(overrides, args.steps, data_dir)
        plain = plain_step(module, data, args.steps)
        print(f"| {name} | {fw * 1e3:.2f} | {plain * 1e3:.2f} | {fw / plain:.2f} |", flush=True)


if __name__ == "__main__":
    main()
