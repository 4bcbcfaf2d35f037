"""Graph-captured training steps against Lightning's eager step on the GPU: same seed, same metrics?

python bench/graph_check.py [--out DIR] [--only SUBSTRING ...]
Trains every case three ways through idlab.run.train — graph.mode=off (eager), on (captured and replayed) and,
for some cases, emulate (the graph path without capture) — and compares the final weights (last.ckpt) and
metrics. Graph vs emulate runs the same kernels in the same order, so it should agree to the bit (the sparse
projection's atomics aside); graph vs eager differs by the fused optimiser's rounding. Also checks that a
captured run resumes exactly and that capture really happened (graphs per batch size). Writes graph_check.json
and graph_check.md to --out; prints the table.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import compose_config  # noqa: E402
from fake_datasets import write_cifar  # noqa: E402
from idlab.run import train  # noqa: E402

MNIST = ["data=mnist_mini", "trainer.max_epochs=3"]  # 96 steps: the last partial batch (32) is captured too
CIFAR = ["+exp=cifar10", "trainer.max_epochs=-1", "trainer.max_steps=40"]
MOD97 = ["+exp=math_equations", "trainer.max_epochs=-1", "trainer.max_steps=150"]
CASES = {
    "fc full": [*MNIST, "model=fc"],
    "fc fastfood d=1000": [*MNIST, "model=fc", "adapt=subspace", "adapt.d=1000"],
    "fc sparse d=1000": [*MNIST, "model=fc", "adapt=subspace", "adapt.projection=sparse", "adapt.d=1000"],
    "fc dense d=500": [*MNIST, "model=fc", "adapt=subspace", "adapt.projection=dense", "adapt.d=500"],
    "fc lora r=4": [*MNIST, "model=fc", "adapt=lora", "adapt.r=4"],
    "fc fastfood, sgd + clip": [*MNIST, "model=fc", "adapt=subspace", "optim=sgd", "optim.optimizer.lr=0.05",
                                "trainer.gradient_clip_val=1.0"],
    "lenet full": [*MNIST, "model=lenet"],
    "lenet fastfood d=300": [*MNIST, "model=lenet", "adapt=subspace", "adapt.d=300"],
    "resnet18 full (sgd, cosine, augment)": [*CIFAR],
    "resnet18 fastfood d=1000": [*CIFAR, "adapt=subspace", "adapt.d=1000"],
    "resnet20 lora r=2": [*CIFAR, "model.variant=resnet20", "adapt=lora", "adapt.r=2"],
    "transformer full (adamw, warmup)": [*MOD97],
    "transformer fastfood d=1000": [*MOD97, "adapt=subspace", "adapt.d=1000"],
    "transformer lora r=4": [*MOD97, "adapt=lora", "adapt.r=4"],
}
EMULATE = ("fc fastfood d=1000", "resnet18 full (sgd, cosine, augment)")
TRAINER, GRAPH_MODE = "gpu", "on"
COMMON = ["trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "~callbacks.progress_bar",
          "+trainer.enable_progress_bar=false", "logger=csv"]


class GraphProbe(pl.Callback):
    """Records what the graph path did (captured batch sizes, whether it fell back)."""

    def __init__(self) -> None:
        self.info: dict = {}

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        runner = getattr(pl_module, "graph", None)
        self.info = {"graph_path": runner is not None,
                     "captured_sizes": sorted(runner.graphs) if runner is not None else [],
                     "capture_on": bool(runner.capture) if runner is not None else False}


def fit(overrides: list[str], mode: str, root: Path, name: str) -> dict:
    """One run; returns metrics, the last checkpoint's state dict, wall time and the graph probe."""
    out = root / name
    if mode == "on":
        mode = GRAPH_MODE
    cfg = compose_config([f"trainer={TRAINER}", *COMMON, *overrides, f"graph.mode={mode}",
                          f"paths.data_dir={root / 'data'}"], out, fast=False)
    probe = GraphProbe()
    from idlab import run

    original = run.build_trainer

    def with_probe(c):
        trainer = original(c)
        trainer.callbacks.append(probe)
        return trainer
    run.build_trainer = with_probe
    try:
        t0 = time.perf_counter()
        metrics = train(cfg)
        wall = time.perf_counter() - t0
    finally:
        run.build_trainer = original
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    return {"metrics": metrics, "state": state, "wall_s": wall, **probe.info}


def compare(a: dict, b: dict) -> dict:
    """Largest weight difference relative to the largest weight, and metric differences."""
    worst, scale, bitwise = 0.0, 0.0, True
    for key, va in a["state"].items():
        vb = b["state"][key]
        if not va.is_floating_point():
            continue
        bitwise &= torch.equal(va, vb)
        worst = max(worst, float((va.double() - vb.double()).abs().max()))
        scale = max(scale, float(va.double().abs().max()))
    out = {"weights_rel": worst / max(scale, 1e-30), "bitwise": bitwise}
    for key in ("train/loss", "val/loss", "val/acc", "test/acc", "global_step"):
        out[key] = (a["metrics"].get(key), b["metrics"].get(key))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_graph_check"))
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--trainer", default="gpu",
                        help="trainer config (cpu with --graph-mode emulate: a CPU smoke test)")
    parser.add_argument("--graph-mode", default="on")
    parser.add_argument("--extra", nargs="*", default=[],
                        help="overrides for every case, e.g. trainer.deterministic=true")
    args = parser.parse_args()
    global TRAINER, GRAPH_MODE
    TRAINER, GRAPH_MODE = args.trainer, args.graph_mode
    COMMON.extend(args.extra)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("idlab.training.graphed").setLevel(logging.INFO)
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp())
    from torchvision.datasets import CIFAR10

    for attr, value in write_cifar(root / "data", 10, n_per_batch=2000).items():
        setattr(CIFAR10, attr, value)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    results, lines = {}, [f"device: {device}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}", "",
                          "| case | captured sizes | graph vs eager: max Δw/max w | val/acc eager → graph | "
                          "test/acc eager → graph | graph vs emulate | wall eager / graph s |",
                          "|---|---|---|---|---|---|---|"]
    for name, overrides in CASES.items():
        if args.only and not any(s in name for s in args.only):
            continue
        try:
            eager = fit(overrides, "off", root, f"{name}/eager")
            graph = fit(overrides, "on", root, f"{name}/graph")
            row = {"graph_vs_eager": compare(eager, graph), "captured_sizes": graph["captured_sizes"],
                   "capture_on": graph["capture_on"], "wall": [eager["wall_s"], graph["wall_s"]]}
            if name in EMULATE:
                emulate = fit(overrides, "emulate", root, f"{name}/emulate")
                row["graph_vs_emulate"] = compare(emulate, graph)
            results[name] = row
            ge = row["graph_vs_eager"]
            em = row.get("graph_vs_emulate")
            em_text = "—" if em is None else ("bitwise" if em["bitwise"] else f"{em['weights_rel']:.1e}")
            lines.append(f"| {name} | {row['captured_sizes']} | {ge['weights_rel']:.1e} | "
                         f"{ge['val/acc'][0]:.4f} → {ge['val/acc'][1]:.4f} | {ge['test/acc'][0]:.4f} → "
                         f"{ge['test/acc'][1]:.4f} | {em_text} | {row['wall'][0]:.1f} / {row['wall'][1]:.1f} |")
        except Exception as err:  # noqa: BLE001 - report and go on with the other cases
            results[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
            lines.append(f"| {name} | ERROR {type(err).__name__}: {str(err)[:160]} | | | | | |")
        print(lines[-1], flush=True)
    if not args.only or any("resume" in s for s in args.only):
        results["resume"] = resume_check(root)
        lines.append(f"\nresume (fc fastfood, graph 2 epochs + 1 resumed vs 3 uninterrupted; eager checkpoint "
                     f"resumed in graph mode): {json.dumps(results['resume'])}")
    (args.out / "graph_check.md").write_text("\n".join(lines) + "\n")
    (args.out / "graph_check.json").write_text(json.dumps(results, indent=2, default=str))
    print("\n".join(lines))


def resume_check(root: Path) -> dict:
    """A captured run killed after 2 epochs and resumed (in graph mode, and from an eager checkpoint) equals 3."""
    try:
        base = ["data=mnist_mini", "model=fc", "adapt=subspace", "test=false"]
        full = fit([*base, "trainer.max_epochs=3"], "on", root, "resume/full")
        fit([*base, "trainer.max_epochs=2"], "on", root, "resume/killed")
        last = root / "resume" / "killed" / "checkpoints" / "last.ckpt"
        again = fit([*base, "trainer.max_epochs=3", f"ckpt_path={last}"], "on", root, "resume/resumed")
        fit([*base, "trainer.max_epochs=2"], "off", root, "resume/eager_killed")
        last = root / "resume" / "eager_killed" / "checkpoints" / "last.ckpt"
        cross = fit([*base, "trainer.max_epochs=3", f"ckpt_path={last}"], "on", root, "resume/cross")
        return {"graph_resumed": compare(full, again), "eager_ckpt_resumed_in_graph": compare(full, cross)}
    except Exception as err:  # noqa: BLE001
        return {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}


if __name__ == "__main__":
    main()
