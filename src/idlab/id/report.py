"""Turning per-layer measurements into logged scalars, an id.csv, ID/overlap-vs-depth and ID-vs-scale figures."""
from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from matplotlib.figure import Figure


@dataclass(frozen=True)
class Measurement:
    """One estimator's value on one layer's activations of one probe split at one training step.

    A per-scale estimator writes one row per scale: `estimator` is `<tag>/n<rank>` and `scale` the mean neighbour
    distance of that step (empty otherwise).
    """

    step: int
    split: str
    layer: str
    estimator: str
    value: float
    std: float | None = None
    scale: float | None = None


CSV_COLUMNS = tuple(f.name for f in fields(Measurement))


def metric_key(prefix: str, split: str, name: str) -> str:
    """Logged key: `<prefix>/<split>/<layer or summary>`, e.g. id/val/layer3 or id/val/llid."""
    return f"{prefix}/{split}/{name}"


def summaries(values: Sequence[float], llid: float | None = None) -> dict[str, float]:
    """Brown et al.'s summaries of a depth-ordered ID profile: LLID = the last hidden layer (`llid`, the layer
    the classifier reads; default the profile's last entry), PID = peak over layers."""
    return {"llid": float(values[-1] if llid is None else llid), "pid": float(max(values))}


def metrics_dict(rows: Sequence[Measurement], prefixes: dict[str, str], id_estimators: Sequence[str],
                 layers: Sequence[str], llid_layer: str | None = None) -> dict[str, float]:
    """Scalars to log: every (split, layer) value and std, plus llid (the ID of `llid_layer`, default the last
    layer) and pid per split for ID estimators."""
    metrics: dict[str, float] = {}
    for row in rows:
        tag, _, at = row.estimator.partition("/")
        key = metric_key(prefixes[tag], row.split, f"{row.layer}/{at}" if at else row.layer)
        metrics[key] = row.value
        if row.std is not None:
            metrics[key + "_std"] = row.std
    for estimator in id_estimators:
        for split in dict.fromkeys(r.split for r in rows):
            by_layer = {r.layer: r.value for r in rows if r.estimator == estimator and r.split == split}
            profile = [by_layer[layer] for layer in layers if layer in by_layer]
            if profile:
                for name, value in summaries(profile, by_layer.get(llid_layer)).items():
                    metrics[metric_key(prefixes[estimator], split, name)] = value
    return metrics


def append_csv(path: str | os.PathLike, rows: Sequence[Measurement]) -> None:
    """Append rows to a CSV (header written once), flushed and fsynced so a crash loses at most this call."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow(["" if v is None else v for v in astuple(row)])
        handle.flush()
        os.fsync(handle.fileno())


def read_csv(path: str | os.PathLike) -> list[Measurement]:
    """The rows of an id.csv as Measurements (empty std/scale cells read as None), to redraw figures offline."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))

    def number(text: str | None) -> float | None:
        return None if text in (None, "") else float(text)

    return [Measurement(int(r["step"]), r["split"], r["layer"], r["estimator"], float(r["value"]), number(r["std"]),
                        number(r.get("scale"))) for r in rows]


def drop_rows_after(path: str | os.PathLike, step: int) -> None:
    """Remove the rows measured after optimiser step `step` (atomic rewrite): a run resumed from a checkpoint
    whose last measurement was at `step` measures those steps again, so they would otherwise appear twice."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2:
        return
    column = rows[0].index("step")
    kept = [rows[0]] + [row for row in rows[1:] if int(row[column]) <= step]
    if len(kept) == len(rows):
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as handle:
        csv.writer(handle).writerows(kept)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def profile_figure(profiles: dict[str, Sequence[Measurement]], title: str,
                   ylabel: str = "intrinsic dimension") -> Figure:
    """A measure against layer depth, one line per probe split (error bars = std), layers named on the x axis."""
    layers = list(dict.fromkeys(r.layer for rows in profiles.values() for r in rows))
    figure = Figure(figsize=(max(4.0, 0.6 * len(layers) + 2), 3.5))
    figure.subplots_adjust(bottom=0.35, left=0.12, right=0.97)
    axes = figure.add_subplot()
    for split, rows in profiles.items():
        depth = [layers.index(r.layer) for r in rows]
        errors = [0.0 if r.std is None else r.std for r in rows]
        axes.errorbar(depth, [r.value for r in rows], yerr=errors, marker="o", capsize=3, label=split)
    axes.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=8)
    axes.set_xlabel("layer (forward order)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(fontsize=8)
    return figure


def scale_figure(curves: dict[str, Sequence[Measurement]], title: str) -> Figure:
    """ID against scale (mean neighbour distance, log axis), one line per probe split, error bars = standard error."""
    figure = Figure(figsize=(4.5, 3.5))
    figure.subplots_adjust(bottom=0.15, left=0.14, right=0.97)
    axes = figure.add_subplot()
    for split, rows in curves.items():
        errors = [0.0 if r.std is None else r.std for r in rows]
        axes.errorbar([r.scale for r in rows], [r.value for r in rows], yerr=errors, marker="o", capsize=3,
                      label=split)
    axes.set_xscale("log")
    axes.set_xlabel("scale: mean neighbour distance")
    axes.set_ylabel("intrinsic dimension")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    return figure
