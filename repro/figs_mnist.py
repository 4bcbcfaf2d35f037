"""Figures of results 1, 2, 3 and 6 (mnist_mini sweeps), each drawn only when its folders exist."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from repro.load import Sweep, load_sweep, read_json
from repro.plots import dim_text, finish, save, sweep_curve, threshold_marks


def fc_vs_lenet(root: Path, out: Path) -> list[Path]:
    """Accuracy ÷ baseline vs d for FC and LeNet (result 1)."""
    fc, lenet = load_sweep(root / "li_mnist" / "fc"), load_sweep(root / "li_mnist" / "lenet")
    if fc is None and lenet is None:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    for sweep, name, color in ((fc, "FC 784-200-200-10", "C0"), (lenet, "LeNet", "C1")):
        if sweep is not None:
            sweep_curve(ax, sweep, f"{name}: d_int90 {dim_text(sweep)}", color, relative=True)
            threshold_marks(ax, sweep, color, relative=True)
    finish(ax, "subspace dimension d", "test accuracy / baseline", "MNIST (mnist_mini): FC vs LeNet")
    return [save(fig, out / "li_mnist_fc_vs_lenet.png")]


def shuffled_pixels(root: Path, out: Path) -> list[Path]:
    """FC and LeNet on plain vs pixel-shuffled MNIST (result 1)."""
    pairs = (("fc", "fc_shuffled_pixels", "FC"), ("lenet", "lenet_shuffled_pixels", "LeNet"))
    sweeps = {n: load_sweep(root / "li_mnist" / n) for pair in pairs for n in pair[:2]}
    if not any(s is not None for n, s in sweeps.items() if "shuffled" in n):
        return []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (plain, shuffled, name) in zip(axes, pairs):
        for key, label, color in ((plain, "plain", "C0"), (shuffled, "shuffled pixels", "C3")):
            if sweeps[key] is not None:
                sweep_curve(ax, sweeps[key], f"{label}: d_int90 {dim_text(sweeps[key])}", color, relative=True)
                threshold_marks(ax, sweeps[key], color, relative=True)
        finish(ax, "subspace dimension d", "test accuracy / baseline", f"{name}: plain vs shuffled pixels")
    return [save(fig, out / "li_mnist_shuffled_pixels.png")]


def grid_points(root: Path) -> list[tuple[str, float, Sweep]]:
    """(label, D, sweep) for every FC of the width × depth grid that has a finished baseline."""
    folders = [("200×2", root / "li_mnist" / "fc")]
    folders += [(f"{d.name[1:].replace('_l', '×')}", d) for d in sorted((root / "li_mnist_grid").glob("w*_l*"))]
    points = []
    for label, folder in folders:
        sweep = load_sweep(folder)
        total = sweep.baseline_metric("params/total") if sweep else None
        if sweep is not None and total is not None:
            points.append((label, total, sweep))
    return sorted(points, key=lambda p: p[1])


def width_depth_grid(root: Path, out: Path) -> list[Path]:
    """d_int90 against D over the FC width × depth grid (result 1)."""
    points = grid_points(root)
    if not points:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, total, sweep in points:
        block = sweep.dim()
        values, _, _ = sweep.curve()
        if block.get("value") is not None:
            low, high = block.get("ci95") or (None, None)
            yerr = [[block["value"] - (low or block["value"])], [(high or block["value"]) - block["value"]]]
            ax.errorbar([total], [block["value"]], yerr=yerr, marker="o", color="C0", capsize=3)
        elif values.size:
            ax.scatter([total], [values.max()], marker="^", color="C3")  # not reached: above the largest d
        ax.annotate(label, (total, block.get("value") or (values.max() if values.size else 1)), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    finish(ax, "number of parameters D", "d_int90 (▲: not reached, above the largest d)",
           "FC width × depth grid: d_int90 vs D")
    ax.set_yscale("log")
    return [save(fig, out / "li_mnist_grid.png")]


def memorisation_scales(root: Path) -> list[tuple[str, Sweep | None, Sweep | None]]:
    """(folder suffix, real-label sweep, shuffled-label sweep) for every label count that has a folder."""
    base = root / "memorisation"
    suffixes = sorted({d.name.removeprefix("real_labels").removeprefix("shuffled_labels")
                       for d in base.glob("*_labels*")}, key=len) if base.is_dir() else []
    return [(x, load_sweep(base / f"real_labels{x}"), load_sweep(base / f"shuffled_labels{x}")) for x in suffixes]


def memorisation(root: Path, out: Path) -> list[Path]:
    """Training accuracy vs d with real and shuffled labels, one panel per label count (result 2)."""
    scales = [s for s in memorisation_scales(root) if s[1] is not None or s[2] is not None]
    if not scales:
        return []
    fig, axes = plt.subplots(1, len(scales), figsize=(6 * len(scales), 4), sharey=True, squeeze=False)
    for ax, (_, real, shuffled) in zip(axes[0], scales):
        for sweep, name, color in ((real, "real labels", "C0"), (shuffled, "100 % shuffled labels", "C3")):
            if sweep is not None:
                sweep_curve(ax, sweep, f"{name}: d_int90 {dim_text(sweep)}", color)
                threshold_marks(ax, sweep, color)
        labels = training_labels(shuffled or real)
        finish(ax, "subspace dimension d", "training accuracy",
               f"Memorisation: FC 5×400 on {labels:,.0f} digits" if labels else "Memorisation: FC 5×400")
    return [save(fig, out / "memorisation.png")]


def training_labels(sweep: Sweep | None) -> float | None:
    """Training-set size of the runs (mnist_mini: 5,000 − val − test) from a run's .hydra/config.yaml."""
    if sweep is None:
        return None
    from omegaconf import OmegaConf

    for config in sorted(sweep.folder.glob("runs/*/.hydra/config.yaml"))[:1]:
        data = OmegaConf.load(config).data
        return float(5000 - data.val_size - data.test_size)
    return None


def lora_vs_subspace(root: Path, out: Path) -> list[Path]:
    """Test accuracy against trainable parameters: LoRA ranks and subspace d (result 3)."""
    lora, sub = load_sweep(root / "lora_vs_subspace" / "lora"), load_sweep(root / "li_mnist" / "lenet")
    if lora is None:
        return []
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sweep_curve(ax, lora, f"LoRA, r = 1…32: r90 {dim_text(lora)}", "C2", x_key="params/trainable")
    threshold_marks(ax, lora, "C2", x_key="params/trainable")
    for r, n in sorted(lora.per_value("params/trainable").items()):
        mean = dict(zip(*lora.curve()[:2])).get(r)
        if mean is not None:
            ax.annotate(f"r={r:g}", (n, mean), fontsize=7, xytext=(3, -10), textcoords="offset points")
    if sub is not None:
        sweep_curve(ax, sub, f"random subspace: d90 {dim_text(sub)}", "C1", x_key="params/trainable")
        threshold_marks(ax, sub, "C1", x_key="params/trainable")
    finish(ax, "trainable parameters (params/trainable)", "test accuracy", "LeNet on mnist_mini: LoRA vs subspace")
    return [save(fig, out / "lora_vs_subspace.png")]


def reproject(root: Path, out: Path) -> list[Path]:
    """Accuracy vs the second subspace's d from θ_A, against scratch, plain and cumulative (result 6)."""
    scratch = load_sweep(root / "li_mnist" / "lenet")
    firsts = sorted((root / "reproject").glob("from_d*"), key=lambda d: int(d.name[6:])) \
        if (root / "reproject").is_dir() else []
    again = [(int(d.name[6:]), load_sweep(d)) for d in firsts]
    again = [(d_a, s) for d_a, s in again if s is not None]
    if not again:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, cumulative in zip(axes, (False, True)):
        if scratch is not None:
            sweep_curve(ax, scratch, f"from init: d_int90 {dim_text(scratch)}", "k", seeds=False)
        for index, (d_a, sweep) in enumerate(again):
            color = f"C{index}"
            values, means, stds = sweep.curve()
            shift = d_a if cumulative else 0
            ax.errorbar(values + shift, means, yerr=stds, marker="o", ms=4, capsize=2, color=color,
                        label=f"from θ_A (d_A={d_a}): d_int90 {dim_text(sweep)}")
            first = first_accuracy(root / "reproject" / f"first_d{d_a}")
            if first is not None:
                ax.axhline(first, color=color, linestyle="--", linewidth=0.8)
        finish(ax, "d_A + d_B" if cumulative else "d of the fresh subspace (d_B)", "test accuracy",
               "cumulative dimension" if cumulative else "re-projected from θ_A = θ0 + P·θ_d")
    return [save(fig, out / "reproject.png")]


def first_accuracy(folder: Path) -> float | None:
    """Mean test accuracy of the first-subspace runs (seed<k>/metrics.json)."""
    values = [m["test/acc"] for d in sorted(folder.glob("seed*")) if (m := read_json(d / "metrics.json"))
              and isinstance(m.get("test/acc"), (int, float))]
    return float(np.mean(values)) if values else None
