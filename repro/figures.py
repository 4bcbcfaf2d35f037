"""docs/figures/*.png from the run folders (repro/results.py draws them); a figure is drawn only where it has data."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from repro.results import LI_NETS, Root, Sweep, grid_nets, llid, llid_scales, memorisation_scales, scalars, \
    seed_dirs, step_text  # noqa: E402

SCALES = (("full", "full MNIST"), ("mini", "mnist_mini"))


def save(fig: plt.Figure, path: Path) -> Path:
    """Save a PNG atomically and close the figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def curve(ax: plt.Axes, sweep: Sweep, label: str, color: str, x: dict[float, float] | None = None) -> None:
    """Seeds (dots) and seed-mean ± std (line) of the metric against the swept value (or a mapped x)."""
    values = [v for v in sweep.values() if sweep.points.get(v)]
    if not values:
        return
    xs = [x.get(v, np.nan) if x else v for v in values]
    for xv, v in zip(xs, values):
        ax.scatter([xv] * len(sweep.points[v]), list(sweep.points[v].values()), s=8, color=color, alpha=0.35)
    stds = [np.std(list(sweep.points[v].values()), ddof=1) if len(sweep.points[v]) > 1 else 0.0 for v in values]
    ax.errorbar(xs, [sweep.mean(v) for v in values], yerr=stds, marker="o", ms=4, capsize=2, color=color, label=label)
    if sweep.baseline.get("value") is not None and sweep.baseline.get("kind") == "full":
        ax.axhline(sweep.threshold * sweep.baseline["value"], color=color, linestyle=":", linewidth=1)


def finish(ax: plt.Axes, xlabel: str, ylabel: str, title: str, logx: bool = True, target: float | None = None) -> None:
    """Labels, log x, grid, legend, and the global target (dashed) when given."""
    if target is not None:
        ax.axhline(target, color="k", linestyle="--", linewidth=0.8, label=f"global target {target:g}")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def panels(root: Root, has_data, n: int = 1, height: float = 4.0):
    """One row of panels per scale that has data: [(scale, label, axes row)]."""
    scales = [(s, label) for s, label in SCALES if has_data(s)]
    if not scales:
        return None, []
    fig, axes = plt.subplots(len(scales), n, figsize=(6 * n, height * len(scales)), squeeze=False)
    return fig, [(s, label, row) for (s, label), row in zip(scales, axes)]


def li_mnist(root: Root, out: Path) -> list[Path]:
    """Result 1: test accuracy vs d of the four nets, per scale (dotted: 0.9 × each net's own baseline)."""
    fig, rows = panels(root, lambda s: any(root.sweep(s, f"li_mnist/{k}") for k, _ in LI_NETS))
    for scale, label, (ax,) in rows:
        for index, (key, name) in enumerate(LI_NETS):
            if sweep := root.sweep(scale, f"li_mnist/{key}"):
                curve(ax, sweep, name, f"C{index}")
        finish(ax, "subspace dimension d", "test accuracy", f"{label}: Li et al. 2018, result 1", target=0.9)
    return [save(fig, out / "li_mnist.png")] if rows else []


def li_mnist_grid(root: Root, out: Path) -> list[Path]:
    """Result 1b: d_int90 against D over the width × depth grid (▲: not reached, at the largest d)."""
    fig, rows = panels(root, lambda s: bool(grid_nets(root, s)))
    for scale, label, (ax,) in rows:
        for base, marker, color in (("individual", "o", "C0"), ("global", "s", "C1")):
            for net, rel in grid_nets(root, scale):
                sweep = root.sweep(scale, rel)
                dim, total = sweep.dim(base), sweep.baseline_metric("params/total")
                if dim is None or total is None:
                    continue
                y = dim.value if dim.value is not None else dim.top
                ax.scatter([total], [y], marker=marker if dim.value is not None else "^", color=color,
                           label=f"{base} baseline" if net == "200×2" else None)
                ax.annotate(net, (total, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        finish(ax, "number of parameters D", "d_int90", f"{label}: FC width × depth grid")
        ax.set_yscale("log")
    return [save(fig, out / "li_mnist_grid.png")] if rows else []


def memorisation(root: Root, out: Path) -> list[Path]:
    """Result 2: training accuracy vs d, real vs shuffled labels, one panel per scale and label count."""
    cells = [(s, label, n, lr, real, shuf) for s, label in SCALES for n, lr, real, shuf in memorisation_scales(root, s)]
    if not cells:
        return []
    fig, axes = plt.subplots(1, len(cells), figsize=(6 * len(cells), 4), squeeze=False)
    for ax, (scale, label, n, lr, real, shuffled) in zip(axes[0], cells):
        for rel, name, color in ((real, "real labels", "C0"), (shuffled, "shuffled labels", "C3")):
            if sweep := root.sweep(scale, rel):
                curve(ax, sweep, name, color)
        finish(ax, "subspace dimension d", "training accuracy", f"{label}: FC 5×400 on {n:,} labels, {step_text(lr)}",
               target=0.89)
    return [save(fig, out / "memorisation.png")]


def lora_vs_subspace(root: Root, out: Path) -> list[Path]:
    """Result 3: test accuracy against trainable parameters, LoRA ranks and subspace d."""
    fig, rows = panels(root, lambda s: root.sweep(s, "lora_vs_subspace/lora") is not None)
    for scale, label, (ax,) in rows:
        lora = root.sweep(scale, "lora_vs_subspace/lora")
        curve(ax, lora, "LoRA, r = 1…32", "C2", x=lora.metric_of_runs("params/trainable"))
        if sub := root.sweep(scale, "li_mnist/lenet"):
            curve(ax, sub, "random subspace, d", "C1")
        finish(ax, "trainable parameters", "test accuracy", f"{label}: LeNet, LoRA vs subspace", target=0.9)
    return [save(fig, out / "lora_vs_subspace.png")] if rows else []


def reproject(root: Root, out: Path) -> list[Path]:
    """Result 6: accuracy vs the fresh subspace's d_B from each θ_A, against the from-init sweep."""
    fig, rows = panels(root, lambda s: bool(root.folders(s, "reproject/from_d*")))
    for scale, label, (ax,) in rows:
        if scratch := root.sweep(scale, "li_mnist/lenet"):
            curve(ax, scratch, "from the init", "k")
        for index, folder in enumerate(sorted(root.folders(scale, "reproject/from_d*"), key=lambda p: int(p.name[6:]))):
            if sweep := root.sweep(scale, f"reproject/{folder.name}"):
                curve(ax, sweep, f"from θ_A, d_A = {folder.name[6:]}", f"C{index}")
        finish(ax, "d of the fresh subspace (d_B)", "test accuracy", f"{label}: re-projection", target=0.9)
    return [save(fig, out / "reproject.png")] if rows else []


def grokking(root: Root, out: Path) -> list[Path]:
    """Result 4: per setting, accuracy and last-layer ID (val solid, train dashed) against step, per seed."""
    settings = [p for p in root.folders("mini", "grokking_id/frac*") if seed_dirs(p)]
    if not settings:
        return []
    fig, axes = plt.subplots(len(settings), 2, figsize=(11, 3.2 * len(settings)), squeeze=False)
    for row, setting in zip(axes, settings):
        for run in seed_dirs(setting):
            color, tags = f"C{int(run.name[4:]) % 10}", scalars(run)
            for tag, style in (("train/acc", "--"), ("val/acc", "-")):
                if tag in tags:
                    row[0].plot(*tags[tag], style, color=color, linewidth=1, label=f"{tag} {run.name}")
            for split, style in (("val", "-"), ("train", "--")):
                steps, values = llid(run, split)
                if steps.size:
                    row[1].plot(steps, values, style, marker=".", color=color, linewidth=1, label=f"{split} {run.name}")
        finish(row[0], "step", "accuracy", f"{setting.name}: accuracy (train dashed, val solid)", logx=False)
        finish(row[1], "step", "last-layer ID (TwoNN)", f"{setting.name}: LLID (val solid, train dashed)", logx=False)
    return [save(fig, out / "grokking_id.png")]


def grokking_scale(root: Root, out: Path) -> list[Path]:
    """Result 4 across scales: the val LLID against scale (GRIDE, n2 = 2 … 64) of each setting's first seed, at the
    init, at the step of its TwoNN peak and at its last measurement."""
    panels_ = []
    for setting in root.folders("mini", "grokking_id/frac*"):
        runs = seed_dirs(setting)
        if runs and llid_scales(runs[0], "val")[1]:
            panels_.append((setting.name, runs[0]))
    if not panels_:
        return []
    fig, axes = plt.subplots(1, len(panels_), figsize=(4.2 * len(panels_), 3.6), squeeze=False)
    for ax, (name, run) in zip(axes[0], panels_):
        steps, ranks, ids, scales = llid_scales(run, "val")
        twonn_steps, twonn = llid(run, "val")
        peak = int(twonn_steps[np.argmax(twonn)]) if twonn.size else None
        for label, step in (("init", int(steps[0])), ("TwoNN peak", peak), ("last", int(steps[-1]))):
            if step in steps:
                i = list(steps).index(step)
                ax.plot(scales[i], ids[i], marker="o", ms=3, label=f"{label} (step {step:,})")
        finish(ax, "scale: mean neighbour distance", "val LLID (GRIDE)", f"{name} {run.name}: ID vs scale", logx=True)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # log minor labels collide on a short range
    return [save(fig, out / "grokking_id_scale.png")]


def finetune(root: Root, out: Path) -> list[Path]:
    """Result 5: pretraining curve with snapshots, fine-tuning accuracy vs d per snapshot."""
    folders = sorted(root.folders("mini", "finetune_id/from_step*"), key=lambda p: int(p.name[9:]))
    sweeps = [(int(p.name[9:]), s) for p in folders if (s := root.sweep("mini", f"finetune_id/{p.name}"))]
    tags = scalars(root.root / "mini" / "finetune_id" / "pretrain_mul")
    if not sweeps and not tags:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for tag, style in (("train/acc", "--"), ("val/acc", "-")):
        if tag in tags:
            axes[0].plot(*tags[tag], style, label=f"a·b {tag}")
    for step, _ in sweeps:
        axes[0].axvline(step, color="0.6", linewidth=0.8, linestyle=":")
    finish(axes[0], "pretraining step", "accuracy", "pretraining on a·b (dotted: snapshots)", logx=False)
    for index, (step, sweep) in enumerate(sweeps):
        curve(axes[1], sweep, f"from step {step}", f"C{index}")
    finish(axes[1], "subspace dimension d", "held-out accuracy (a÷b)", "fine-tuning in a random subspace", target=0.9)
    return [save(fig, out / "finetune_id.png")]


def draw_all(root: Root, out: Path) -> list[Path]:
    """Every figure that has data; returns the written paths."""
    return [p for draw in (li_mnist, li_mnist_grid, memorisation, lora_vs_subspace, reproject, grokking,
                                 grokking_scale, finetune)
            for p in draw(root, out)]
