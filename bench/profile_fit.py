"""Where a graph-path fit spends its host time: the FC Fastfood case of bench/train_step.py under variants.

python bench/profile_fit.py --out DIR [--steps 1280] [--rounds 2]

For the case "fc fastfood d=1000 / mnist_mini (bs 128)" (32 optimiser steps per epoch, graph.mode=on) it writes
profile_fit.json with, per variant, the per-step time (whole window and epoch median, as train_step.py reports
it): as benchmarked, without the progress bar, without the learning-rate monitor, without the logger, and
without all three. Then one fit under cProfile (profile_fit.txt: the top functions by own and cumulative time)
and one under torch.cuda.set_sync_debug_mode("warn"): every host-device synchronisation counted by the
Python line that caused it (a synchronisation each epoch serialises the host's and the GPU's work).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import CASES, framework_step  # noqa: E402

CASE = "fc fastfood d=1000 / mnist_mini (bs 128)"
VARIANTS = {
    "as benchmarked": [],
    "no progress bar": ["~callbacks.progress_bar", "+trainer.enable_progress_bar=false"],
    "no lr monitor": ["~callbacks.lr_monitor"],
    "no logger": ["logger=none"],
    "none of the three": ["~callbacks.progress_bar", "+trainer.enable_progress_bar=false", "~callbacks.lr_monitor",
                          "logger=none"],
}


def sync_sites(overrides: list[str], steps: int, warmup: int, data_dir: str) -> list[tuple[str, int]]:
    """Synchronising calls of one fit, counted by the innermost frame outside torch's own package that made them
    (Lightning's frames count: an installation may live under a folder named torch, as the device image's does)."""
    sites: Counter[str] = Counter()
    original = warnings.showwarning
    torch_dir = str(Path(torch.__file__).resolve().parent) + "/"

    def record(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if "synchroniz" not in str(message):
            return original(message, category, filename, lineno, file, line)
        frames = [f for f in traceback.extract_stack()[:-1]
                  if not str(Path(f.filename).resolve()).startswith(torch_dir) and "warnings.py" not in f.filename]
        where = frames[-1] if frames else None
        sites[f"{where.filename}:{where.lineno} {where.name}" if where else f"{filename}:{lineno}"] += 1
        return None

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = record
            framework_step(overrides, "on", steps, warmup, data_dir)
    finally:
        torch.cuda.set_sync_debug_mode(0)
        warnings.showwarning = original
    return sites.most_common(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_profile_fit"))
    parser.add_argument("--steps", type=int, default=1280)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = tempfile.mkdtemp()
    overrides, _, warmup = CASES[CASE]
    out = {"device": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d"), "case": CASE, "variants": {}}

    def save() -> None:
        (args.out / "profile_fit.json").write_text(json.dumps(out, indent=1))

    framework_step(overrides, "on", 200, warmup, data_dir)  # untimed: the process's first fit pays compilation
    for round_ in range(args.rounds):  # variants interleaved: machine drift hits them alike
        for name, extra in VARIANTS.items():
            row, _, _ = framework_step(overrides + extra, "on", args.steps, warmup, data_dir)
            out["variants"].setdefault(name, []).append({k: row[k] for k in ("ms", "epoch_median_ms")})
            print(round_, name, out["variants"][name][-1], flush=True)
            save()
    profile = cProfile.Profile()
    profile.enable()
    framework_step(overrides, "on", args.steps, warmup, data_dir)
    profile.disable()
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(80)
    (args.out / "profile_fit.txt").write_text(text.getvalue())
    out["sync_sites"] = sync_sites(overrides, 320, warmup, data_dir)
    save()
    print(json.dumps(out["sync_sites"], indent=1))


if __name__ == "__main__":
    main()
