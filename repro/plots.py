"""Matplotlib building blocks shared by the reproduction figures."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from repro.load import Sweep  # noqa: E402


def save(fig: plt.Figure, path: Path) -> Path:
    """Save a PNG atomically and close the figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def sweep_curve(ax: plt.Axes, sweep: Sweep, label: str, color: str, relative: bool = False,
                x_key: str | None = None, seeds: bool = True) -> None:
    """Seed-mean ± std of the metric against the swept value (or a metrics key), optionally ÷ baseline."""
    values, means, stds = sweep.curve()
    if values.size == 0:
        return
    scale = sweep.baseline if relative and sweep.baseline else 1.0
    xs = values
    if x_key is not None:
        lookup = sweep.per_value(x_key)
        xs = np.array([lookup.get(v, np.nan) for v in values])
    if seeds and sweep.runs:
        points = sweep.seeds()
        px = [sweep.per_value(x_key).get(v, np.nan) if x_key else v for v, _ in points]
        ax.scatter(px, [m / scale for _, m in points], s=8, color=color, alpha=0.35, zorder=2)
    ax.errorbar(xs, means / scale, yerr=stds / scale, marker="o", ms=4, color=color, capsize=2, label=label, zorder=3)


def threshold_marks(ax: plt.Axes, sweep: Sweep, color: str, relative: bool = False, x_key: str | None = None) -> None:
    """The 0.9 × baseline line and a vertical line at d_int90 (dotted when not reached)."""
    block = sweep.dim()
    base = sweep.baseline
    if base is None:
        return
    fraction = block.get("fraction", sweep.summary.get("threshold", 0.9))
    ax.axhline(fraction if relative else fraction * base, color=color, linestyle=":", linewidth=1)
    if not relative:
        ax.axhline(base, color=color, linestyle="--", linewidth=0.8, alpha=0.6)
    value = block.get("value")
    if value is not None:
        x = sweep.per_value(x_key).get(value, value) if x_key else value
        ax.axvline(x, color=color, linewidth=1, alpha=0.7)


def dim_text(sweep: Sweep | None, name: str = "d_int90") -> str:
    """'= 750' / '> 4000' / 'n/a' for legends ("d_int90 = 750")."""
    if sweep is None:
        return "n/a"
    block = sweep.dim(name)
    if block.get("value") is not None:
        return f"= {block['value']:g}"
    values, _, _ = sweep.curve()
    return f"> {values.max():g}" if values.size else "n/a"


def finish(ax: plt.Axes, xlabel: str, ylabel: str, title: str, logx: bool = True) -> None:
    """Axis labels, log x, grid and legend."""
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
