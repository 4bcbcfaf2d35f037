"""Regenerate every figure in docs/figures/ and docs/results.md from the reproduction run folders.

    python repro/figures.py [--root outputs/repro] [--figures docs/figures] [--doc docs/results.md]
    for t in $OUT/*.tar.gz; do tar xzf "$t" -C outputs/repro; done    # first, with tarballs from the GPU machine
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro import figs_mnist, figs_modular  # noqa: E402
from repro.load import load_sweep  # noqa: E402
from repro.plots import dim_text, finish, save, sweep_curve, threshold_marks  # noqa: E402
from repro.results_md import render  # noqa: E402

FIGURES = (figs_mnist.fc_vs_lenet, figs_mnist.shuffled_pixels, figs_mnist.width_depth_grid, figs_mnist.memorisation,
           figs_mnist.lora_vs_subspace, figs_mnist.reproject, figs_modular.grokking, figs_modular.finetune)


def sweep_figures(root: Path, out: Path) -> list[Path]:
    """One accuracy-vs-value plot per sweep folder (seeds, mean ± std, baseline, threshold, d_int90)."""
    import matplotlib.pyplot as plt

    written = []
    for plan in sorted(root.rglob("plan.json")):
        sweep = load_sweep(plan.parent)
        if sweep is None or "runs" in plan.parent.relative_to(root).parts:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        sweep_curve(ax, sweep, f"d_int90 {dim_text(sweep)}", "C0")
        threshold_marks(ax, sweep, "C0")
        name = "_".join(plan.parent.relative_to(root).parts)
        finish(ax, sweep.summary["param"], sweep.summary["metric"], name)
        written.append(save(fig, out / "sweeps" / f"{name}.png"))
    return written


def regenerate(root: Path, figures: Path, doc: Path) -> list[Path]:
    """Draw every figure whose data exists, then write the results document atomically; returns written paths."""
    written = sweep_figures(root, figures) if root.is_dir() else []
    for draw in FIGURES:
        written += draw(root, figures)
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_name(f".{doc.name}.{os.getpid()}.tmp")
    tmp.write_text(render(root, figures, doc))
    os.replace(tmp, doc)
    return [*written, doc]


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("outputs/repro"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    parser.add_argument("--doc", type=Path, default=Path("docs/results.md"))
    args = parser.parse_args(argv)
    for path in regenerate(args.root, args.figures, args.doc):
        print(path)


if __name__ == "__main__":
    main()
