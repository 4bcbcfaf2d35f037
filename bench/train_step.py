"""Framework overhead: idlab's optimiser step (eager and graph-captured) against plain PyTorch loops.

python bench/train_step.py [--steps-scale 1.0] [--out DIR] [--only SUBSTRING ...]
For each case it times, in one process on the same network, optimiser and data:
- idlab eager: `idlab.run.build_module` + `build_trainer` (Lightning, the default callbacks without checkpoints,
  the tensorboard logger, data on the GPU), graph.mode=off;
- idlab graph: the same with graph.mode=on (steps captured in CUDA graphs, several per Lightning batch);
- plain eager: a bare loop (random batch indices on the device, transform, loss, zero_grad, backward, step);
- plain graph: the same step captured once in a CUDA graph and replayed (fused optimiser, tensor learning rate,
  batch gathered inside the graph; augmentation eager into a static buffer).
Each time is the wall time of a window of optimiser steps after warm-up, between two synchronisations, divided
by its steps: the per-step cost amortised over whole epochs (epoch ends, logging, progress bar included for
idlab; no validation, no checkpoints). CIFAR is random images in torchvision's format (no CIFAR on the device);
MNIST is the official files in data/MNIST/raw (430 steps per epoch, against mnist_mini's 32).
"""
from __future__ import annotations

import argparse
import inspect
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import compose_config  # noqa: E402
from fake_datasets import write_cifar  # noqa: E402
from idlab.run import build_module, build_trainer, make  # noqa: E402

# case: (overrides, optimiser steps timed, warm-up steps)
CASES = {
    "fc / mnist_mini (bs 128)": (["data=mnist_mini", "model=fc"], 1280, 96),
    "fc fastfood d=1000 / mnist_mini (bs 128)": (["data=mnist_mini", "model=fc", "adapt=subspace", "adapt.d=1000"],
                                                 1280, 96),
    "fc fastfood d=1000 / mnist (bs 128)": (["data=mnist", f"data.data_dir={REPO / 'data'}", "model=fc",
                                            "adapt=subspace", "adapt.d=1000"], 2560, 96),
    "resnet18 / cifar10 (bs 128)": (["+exp=cifar10"], 250, 30),
    "transformer / mod-97 (bs 512)": (["+exp=math_equations"], 1200, 60),
}


class WindowTimer(pl.Callback):
    """Synchronised wall time from the first batch end at or after `warmup` steps to the end of training."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.s0, self.t1, self.s1 = warmup, None, None, None, None
        self.graph_steps = (warmup,)  # the graph path starts a Lightning batch there (training/graphed.py)
        self.epochs: list[tuple[float, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if self.t0 is None and trainer.global_step >= self.warmup:
            torch.cuda.synchronize()
            self.t0, self.s0 = time.perf_counter(), trainer.global_step

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001 - unsynchronised steady-state marks
        self.epochs.append((time.perf_counter(), trainer.global_step))

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        torch.cuda.synchronize()
        self.t1, self.s1 = time.perf_counter(), trainer.global_step

    def per_step(self) -> float:
        return (self.t1 - self.t0) / (self.s1 - self.s0)

    def epoch_median(self) -> float | None:
        """Median per-step time of whole epochs after the window started (steady state, no sync)."""
        marks = [(t, s) for t, s in self.epochs if self.s0 is not None and s > self.s0]
        spans = [(t1 - t0) / (s1 - s0) for (t0, s0), (t1, s1) in zip(marks, marks[1:]) if s1 > s0]
        return statistics.median(spans) if spans else None


def framework_step(overrides: list[str], mode: str, steps: int, warmup: int,
                   data_dir: str) -> tuple[dict, object, object]:
    """idlab's objects (same trainer config as train.py, no validation, no checkpoints) for warmup + steps."""
    cfg = compose_config([*overrides, f"paths.data_dir={data_dir}", "trainer=gpu", "trainer.max_epochs=-1",
                          f"trainer.max_steps={warmup + steps}", "trainer.limit_val_batches=0",
                          "~callbacks.checkpoint", "trainer.enable_checkpointing=false", "test=false",
                          f"graph.mode={mode}"],  # without the second, Lightning adds its own, saving every epoch
                         Path(tempfile.mkdtemp()), fast=False)
    pl.seed_everything(0)
    data = make(cfg.data)
    module = build_module(cfg, data)
    trainer = build_trainer(cfg)
    timer = WindowTimer(warmup)
    trainer.callbacks.append(timer)
    said = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("idlab.training.graphed").addHandler(handler)
    logging.getLogger("idlab.training.graphed").setLevel(logging.INFO)
    try:
        trainer.fit(module, datamodule=data)
    finally:
        logging.getLogger("idlab.training.graphed").removeHandler(handler)
    return {"ms": timer.per_step() * 1e3, "epoch_median_ms": (timer.epoch_median() or float("nan")) * 1e3,
            "graph_log": said}, module, data


def batch_source(data, device: torch.device):  # noqa: ANN001, ANN201
    """Training tensors on the device and a per-step batch function (random indices drawn on the device)."""
    x_all, y_all = data.splits["train"].x.to(device), data.splits["train"].y.to(device)
    bs, gen = data.batch_size, torch.Generator(device=device).manual_seed(0)

    def batch(augment: bool):  # noqa: ANN202
        idx = torch.randint(len(x_all), (bs,), device=device)
        return data.transform(x_all[idx], gen if augment else None), y_all[idx]
    return batch


def plain_eager(module, data, steps: int, warmup: int) -> float:  # noqa: ANN001
    """Bare loop: the net and optimiser factory of the idlab run, foreach optimiser as torch defaults."""
    device = torch.device("cuda")
    net = module.net.to(device).train()
    opt = module.optimizer_factory([p for p in net.parameters() if p.requires_grad])
    batch = batch_source(data, device)
    for step in range(warmup + steps):
        if step == warmup:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        x, y = batch(data.augment)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def plain_graph(module, data, steps: int, warmup: int) -> float:  # noqa: ANN001
    """The same step captured once in a CUDA graph and replayed (fused optimiser with a tensor learning rate)."""
    device = torch.device("cuda")
    net = module.net.to(device).train()
    params = [p for p in net.parameters() if p.requires_grad]
    factory = module.optimizer_factory
    kwargs = {"fused": True, "lr": torch.tensor(float(factory.keywords.get("lr", 1e-3)), device=device)}
    if "capturable" in inspect.signature(factory.func).parameters:
        kwargs["capturable"] = True  # Adam's step refuses capture without it (fused ignores it)
    opt = factory(params, **kwargs)
    batch = batch_source(data, device)
    static = {}

    def step() -> None:
        if data.augment:
            x, y = static["x"], static["y"]
        else:
            x, y = batch(False)
        for p in params:
            p.grad = None
        F.cross_entropy(net(x), y).backward()
        opt.step()

    def feed() -> None:
        if data.augment:
            x, y = batch(True)
            static.setdefault("x", torch.empty_like(x)).copy_(x)
            static.setdefault("y", torch.empty_like(y)).copy_(y)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            feed()
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    for p in params:
        p.grad = None
    with torch.cuda.graph(graph, stream=side):
        step()
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        feed()
        graph.replay()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every case's timed steps")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_train_step"))
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--eager-steps", type=int, default=400, help="at most this many timed eager steps")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = tempfile.mkdtemp()
    from torchvision.datasets import CIFAR10

    for attr, value in write_cifar(Path(data_dir), 10, n_per_batch=10_000).items():
        setattr(CIFAR10, attr, value)
    device = torch.cuda.get_device_name()
    lines = [f"device: {device}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}", "",
             "| case | idlab eager ms | idlab graph ms (epoch median) | plain eager ms | plain graph ms | "
             "idlab graph / plain eager | idlab graph / plain graph | idlab eager / plain eager |",
             "|---|---|---|---|---|---|---|---|"]
    results = {}
    for name, (overrides, steps, warmup) in CASES.items():
        if args.only and not any(s in name for s in args.only):
            continue
        steps = max(10, int(steps * args.steps_scale))
        row = {}
        try:
            row["idlab_eager"], module, data = framework_step(overrides, "off", min(steps, args.eager_steps), warmup,
                                                               data_dir)
            row["idlab_graph"], module, data = framework_step(overrides, "on", steps, warmup, data_dir)
            row["plain_eager_ms"] = plain_eager(module, data, min(steps, args.eager_steps), 20) * 1e3
            row["plain_graph_ms"] = plain_graph(module, data, steps, 20) * 1e3
        except Exception as err:  # noqa: BLE001 - report and go on with the other cases
            import traceback

            results[name] = {**row, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
            lines.append(f"| {name} | ERROR {type(err).__name__}: {str(err)[:200]} | | | | | | |")
            print(lines[-1], results[name]["traceback"], flush=True)
            continue
        results[name] = row
        g, e = row["idlab_graph"]["ms"], row["idlab_eager"]["ms"]
        lines.append(f"| {name} | {e:.3f} | {g:.3f} ({row['idlab_graph']['epoch_median_ms']:.3f}) | "
                     f"{row['plain_eager_ms']:.3f} | {row['plain_graph_ms']:.3f} | {g / row['plain_eager_ms']:.2f} | "
                     f"{g / row['plain_graph_ms']:.2f} | {e / row['plain_eager_ms']:.2f} |")
        print(lines[-1], flush=True)
        del module, data
        torch.cuda.empty_cache()
    (args.out / "train_step.md").write_text("\n".join(lines) + "\n")
    (args.out / "train_step.json").write_text(json.dumps(results, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
