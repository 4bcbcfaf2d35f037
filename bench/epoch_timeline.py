"""Where one Li-grid run's epoch goes when the run has the GPU to itself: a timeline of Lightning's hooks.

python bench/epoch_timeline.py [--out DIR] [--epochs 100]
One run of the Li FC grid as sweep.py runs it (784-200-200-10 in a Fastfood subspace of d = 1000, Adam, mnist_mini on
the device, captured steps, validation every epoch, checkpoints, tensorboard logger, no progress bar), alone in this
process, under variants: as shipped, without validation, without checkpoints, without a logger, as shipped again.
A callback stamps each hook (epoch start, Lightning batch start and end, validation start, validation batch start
and end, validation end, epoch end); the median of each interval over the epochs, the run's wall time (set-up and
test included) and its val/acc go to epoch_timeline.json. A last run under cProfile writes profile_shipped.txt.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import compose_config  # noqa: E402

import idlab.run as run  # noqa: E402

RUN = ["data=mnist_mini", "model=fc", "adapt=subspace", "adapt.d=1000", "optim=adam", "trainer=gpu",
       "++callbacks.progress_bar=null", "+trainer.enable_progress_bar=false"]
VARIANTS = {"shipped": [], "no validation": ["trainer.limit_val_batches=0"],
            "no checkpoints": ["~callbacks.checkpoint", "trainer.enable_checkpointing=false"],
            "no logger": ["logger=none"], "shipped again": []}


class Timeline(pl.Callback):
    """Wall-clock stamps of the hooks, in order."""

    graph_steps = ()  # acts at no particular step: the graph path chunks as in a sweep

    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []

    def _mark(self, name: str) -> None:
        self.events.append((name, time.perf_counter()))

    def on_train_epoch_start(self, *args) -> None:  # noqa: ANN002 - Lightning hook signatures
        self._mark("epoch_start")

    def on_train_batch_start(self, *args) -> None:  # noqa: ANN002
        self._mark("batch_start")

    def on_train_batch_end(self, *args) -> None:  # noqa: ANN002
        self._mark("batch_end")

    def on_validation_start(self, *args) -> None:  # noqa: ANN002
        self._mark("val_start")

    def on_validation_batch_start(self, *args) -> None:  # noqa: ANN002
        self._mark("val_batch_start")

    def on_validation_batch_end(self, *args) -> None:  # noqa: ANN002
        self._mark("val_batch_end")

    def on_validation_end(self, *args) -> None:  # noqa: ANN002
        self._mark("val_end")

    def on_train_epoch_end(self, *args) -> None:  # noqa: ANN002
        self._mark("epoch_end")

    def summary(self) -> dict:
        """Median milliseconds of each interval between consecutive stamps, and of whole epochs."""
        starts = [i for i, (name, _) in enumerate(self.events) if name == "epoch_start"]
        spans: dict[str, list[float]] = {}
        for a, b in zip(starts, starts[1:]):
            events = self.events[a:b + 1]
            for (n1, t1), (n2, t2) in zip(events, events[1:]):
                spans.setdefault(f"{n1} -> {n2}", []).append(1000 * (t2 - t1))
            spans.setdefault("epoch", []).append(1000 * (events[-1][1] - events[0][1]))
        return {k: {"median_ms": statistics.median(v), "count": len(v)} for k, v in spans.items()}


def timed_run(extra: list[str], epochs: int, profile: bool = False) -> dict:
    """One run through idlab.run.train with the timeline callback first in the list."""
    cfg = compose_config([*RUN, f"trainer.max_epochs={epochs}", f"paths.data_dir={REPO / 'data'}", *extra],
                         Path(tempfile.mkdtemp()), fast=False)
    timeline, build = Timeline(), run.build_trainer

    def with_timeline(c):  # noqa: ANN001, ANN202
        trainer = build(c)
        trainer.callbacks.insert(0, timeline)
        return trainer

    run.build_trainer = with_timeline
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    try:
        if profiler:
            profiler.enable()
        metrics = run.train(cfg)
    finally:
        if profiler:
            profiler.disable()
        run.build_trainer = build
    result = {"extra": extra, "wall_s": time.perf_counter() - started, "val_acc": metrics.get("val/acc"),
              "intervals": timeline.summary()}
    if profiler:
        result["profile"] = profiler
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_epoch_timeline")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--extra", nargs="*", default=[],
                        help="more overrides for every run (trainer=cpu: a smoke test)")
    args = parser.parse_args()
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    out = {"device": device, "date": time.strftime("%Y-%m-%d"), "epochs": args.epochs,
           "run": RUN + args.extra, "variants": {}}
    timed_run(args.extra, 5)  # untimed: the process's first run compiles the Fastfood kernels
    for name, extra in VARIANTS.items():
        out["variants"][name] = timed_run([*args.extra, *extra], args.epochs)
        print(name, round(out["variants"][name]["wall_s"], 2), flush=True)
        (args.out / "epoch_timeline.json").write_text(json.dumps(out, indent=1))
    profiled = timed_run(args.extra, args.epochs, profile=True)
    text = io.StringIO()
    stats = pstats.Stats(profiled.pop("profile"), stream=text)
    stats.sort_stats("tottime").print_stats(60)
    stats.sort_stats("cumulative").print_stats(150)
    (args.out / "profile_shipped.txt").write_text(text.getvalue())


if __name__ == "__main__":
    main()
