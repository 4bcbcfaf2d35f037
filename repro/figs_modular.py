"""Figures of results 4 (grokking with activation ID) and 5 (fine-tuning ID vs pretraining step)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from repro.load import curves, llid, load_sweep, seed_dirs
from repro.plots import dim_text, finish, save


def grok_settings(root: Path) -> list[Path]:
    """Setting folders of result 4 (frac…_wd…) that hold at least one seed run."""
    base = root / "grokking_id"
    found = [d for d in sorted(base.glob("frac*")) if seed_dirs(d)] if base.is_dir() else []
    return sorted(found, key=lambda d: (-("wd1" in d.name), d.name))


def grokking(root: Path, out: Path) -> list[Path]:
    """Per setting: train/val accuracy and last-layer ID (val solid, train dashed) against step, per seed."""
    settings = grok_settings(root)
    if not settings:
        return []
    fig, axes = plt.subplots(len(settings), 2, figsize=(11, 3.2 * len(settings)), squeeze=False)
    for row, setting in zip(axes, settings):
        for seed_dir in seed_dirs(setting):
            color = f"C{int(seed_dir.name[4:]) % 10}"
            tags = curves(seed_dir)
            for tag, style in (("train/acc", "--"), ("val/acc", "-")):
                if tag in tags:
                    row[0].plot(*tags[tag], style, marker="." if tags[tag][0].size < 30 else None, color=color,
                                linewidth=1, label=f"{tag} seed {seed_dir.name[4:]}")
            for split, style in (("val", "-"), ("train", "--")):
                steps, values = llid(seed_dir, split)
                if steps.size:
                    row[1].plot(steps, values, style, marker=".", color=color, linewidth=1,
                                label=f"{split} LLID seed {seed_dir.name[4:]}")
        finish(row[0], "step", "accuracy (train dashed, val solid)", f"{setting.name}: accuracy", logx=False)
        row[0].set_ylim(-0.02, 1.02)
        finish(row[1], "step", "last-layer ID (TwoNN)", f"{setting.name}: LLID (val solid, train dashed)", logx=False)
    fig.tight_layout()
    return [save(fig, out / "grokking_id.png")]


def finetune_sweeps(root: Path) -> list[tuple[int, object]]:
    """(pretraining step, sweep) for every from_step<k> folder with results, by step."""
    base = root / "finetune_id"
    folders = sorted(base.glob("from_step*"), key=lambda d: int(d.name[9:])) if base.is_dir() else []
    return [(int(d.name[9:]), s) for d in folders if (s := load_sweep(d)) is not None]


def finetune(root: Path, out: Path) -> list[Path]:
    """Pretraining curve with snapshots, fine-tuning accuracy vs d per snapshot, d_int90 vs pretraining step."""
    sweeps = finetune_sweeps(root)
    pretrain = next(iter(sorted((root / "finetune_id").glob("pretrain_*"))), None) \
        if (root / "finetune_id").is_dir() else None
    if not sweeps and pretrain is None:
        return []
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if pretrain is not None:
        tags = curves(pretrain)
        for tag, style in (("train/acc", "--"), ("val/acc", "-")):
            if tag in tags:
                axes[0].plot(*tags[tag], style, marker="." if tags[tag][0].size < 30 else None, label=tag)
        for step, _ in sweeps:
            axes[0].axvline(step, color="0.6", linewidth=0.8, linestyle=":")
    finish(axes[0], "pretraining step", "accuracy", f"pretraining ({pretrain.name if pretrain else 'missing'})",
           logx=False)
    top = 1.0
    for index, (step, sweep) in enumerate(sweeps):
        values, means, stds = sweep.curve()
        if values.size:
            axes[1].errorbar(values, means, yerr=stds, marker="o", ms=4, capsize=2, color=f"C{index}",
                             label=f"from step {step}: d_int90 {dim_text(sweep)}")
            top = max(top, values.max())
    if sweeps and sweeps[0][1].baseline is not None:
        axes[1].axhline(0.9 * sweeps[0][1].baseline, color="k", linestyle=":", linewidth=1)
    finish(axes[1], "subspace dimension d", "held-out accuracy (a ÷ b)", "fine-tuning in a random subspace")
    reached = [(s, sw.dim()["value"]) for s, sw in sweeps if sw.dim().get("value") is not None]
    missed = [s for s, sw in sweeps if sw.dim().get("value") is None and sw.curve()[0].size]
    if reached:
        axes[2].plot(*zip(*reached), marker="o", color="C0", label="d_int90")
    if missed:
        axes[2].scatter(missed, [top * 1.5] * len(missed), marker="^", color="C3", label="not reached (> largest d)")
    finish(axes[2], "pretraining step of θ0", "d_int90", "fine-tuning d_int90 vs pretraining", logx=False)
    axes[2].set_yscale("log")
    fig.tight_layout()
    return [save(fig, out / "finetune_id.png")]


def grok_times(seed_dir: Path, level: float = 0.99) -> dict[str, int | None]:
    """First steps at which train/val accuracy reach `level`, and the final step logged."""
    tags = curves(seed_dir)
    out: dict[str, int | None] = {}
    for tag in ("train/acc", "val/acc"):
        steps, values = tags.get(tag, (np.array([]), np.array([])))
        hits = np.nonzero(values >= level)[0]
        out[tag] = int(steps[hits[0]]) if hits.size else None
    out["last_step"] = int(max((s.max() for s, _ in tags.values() if s.size), default=0)) if tags else None
    return out
